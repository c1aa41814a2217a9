"""Files whose headers claim far more than they hold: probe, decoding and the Analyzer follow the
media that is really there (its packets and decoded frames), never the claim."""

from __future__ import annotations

import dataclasses
import importlib

import av
import pytest
from media_factory import make_clip, make_long_claim_mp4

from emofusion.analysis import analyzer as pipeline
from emofusion.media import AudioWindowReader, FrameStats, MediaError, iter_frames, probe
from emofusion.media._container import MAX_FRAME_SECONDS
from emofusion.analysis import Analyzer

probe_module = importlib.import_module("emofusion.media.probe")  # the package's `probe` is the function

REAL, CLAIMED = 2.0, 36000.0


@pytest.fixture(scope="module")
def claim(tmp_path_factory):
    """2 s of video and audio whose headers (mvhd, tkhd, mdhd, edit lists, last samples) claim 10 hours."""
    return make_long_claim_mp4(tmp_path_factory.mktemp("claims") / "claim.mp4", REAL, CLAIMED)


@pytest.fixture(scope="module")
def analyzer(tiny_model_dir):
    return Analyzer(model=tiny_model_dir)


def test_the_fixture_claims_ten_hours(claim):
    # what FFmpeg itself believes: the file is honest about its lie
    with av.open(str(claim)) as c:
        assert c.duration / av.time_base == pytest.approx(CLAIMED, abs=1)
        assert len(c.streams) == 2
        for s in c.streams:
            assert float(s.duration * s.time_base) == pytest.approx(CLAIMED, abs=1)
        last = max(float(p.pts * p.time_base) for p in c.demux() if p.pts is not None)
    assert last < REAL
    assert claim.stat().st_size < 64_000


def test_probe_reports_the_real_duration(claim):
    info = probe(claim)
    assert info.duration == pytest.approx(REAL, abs=0.1)
    assert info.has_video and info.has_audio
    assert probe(claim.read_bytes()) == info


@pytest.mark.parametrize("streams", [{"with_audio": False}, {"with_video": False}])
def test_probe_of_one_stretched_stream_is_short(tmp_path, streams):
    # a stream whose tail is one stretched packet: that packet counts for MAX_FRAME_SECONDS at most
    info = probe(make_long_claim_mp4(tmp_path / "one.mp4", REAL, CLAIMED, **streams))
    assert REAL - 0.1 <= info.duration <= REAL + MAX_FRAME_SECONDS


def test_almost_nothing_is_a_media_error(tmp_path):
    with pytest.raises(MediaError, match=r"only 0\.0\d+ s of audio and video, under 0\.1 s"):
        probe(make_clip(tmp_path / "blip.mp4", duration=0.05))


def test_long_files_keep_their_duration_and_probe_reads_only_their_tail(tmp_path, monkeypatch):
    # 60 s of video and audio (tiny frames, cheap to encode) and 60 s of audio alone
    files = {
        "mp4": make_clip(tmp_path / "long.mp4", duration=60.0, width=32, height=24, fps=5, gop_size=10),
        "m4a": make_clip(tmp_path / "long.m4a", container="m4a", duration=60.0),
        "wav": make_clip(tmp_path / "long.wav", container="wav", duration=60.0),
    }
    read: list[int] = []
    scan = probe_module._packets_end

    def counting(container, streams, origin, limit):
        class Counted:  # the container, counting the packets the scan reads
            def demux(self, *which):
                for pkt in container.demux(*which):
                    read.append(1)
                    yield pkt

        return scan(Counted(), streams, origin, limit)

    monkeypatch.setattr(probe_module, "_packets_end", counting)
    for name, path in files.items():
        read.clear()
        assert probe(path).duration == pytest.approx(60.0, abs=0.1), name
        with av.open(str(path)) as c:
            total = sum(1 for _ in c.demux())
        assert len(read) < total / 10, (name, len(read), total)


def test_probe_of_late_audio_and_of_webm_without_duration(tmp_path):
    # a track that starts late (an empty edit before it) ends where it says
    late = make_clip(tmp_path / "late.mp4", duration=3.0, audio_start=1.5)
    assert probe(late).duration == pytest.approx(3.0, abs=0.1)
    live = make_clip(tmp_path / "live.webm", container="webm", duration=2.0, options={"live": "1"})
    assert probe(live).duration == pytest.approx(2.0, abs=0.1)


def test_iter_frames_does_not_hold_a_stretched_last_frame_for_hours(claim):
    stats = FrameStats()
    times = [0.5, 1.0, 1.9, 5.0, 20.0, 600.0, 30000.0]
    got = [t for t, _ in iter_frames(claim, times, stats=stats)]
    assert got == [t for t in times if t < REAL + MAX_FRAME_SECONDS]
    assert stats.decoded <= REAL * 15  # the clip's frames, once each


def test_audio_window_reader_end(claim, tmp_path):
    for path in (claim, make_clip(tmp_path / "a.wav", container="wav", duration=REAL)):
        with AudioWindowReader(path) as r:
            assert r.end is None
            r.read(0.0, 1.0)
            assert r.end is None
            assert len(r.read(1.5, 3.5)) > 0
            assert r.end == pytest.approx(REAL, abs=0.07)


def test_analyze_follows_the_real_media(analyzer, claim):
    calls: list[tuple[int, int]] = []
    result = analyzer.analyze(claim, progress=lambda done, total: calls.append((done, total))).to_dict()
    assert result["media"]["duration"] == pytest.approx(REAL, abs=0.1)
    assert len(result["segments"]) <= 2
    assert all(total <= 2 for _, total in calls)


def test_analysis_stops_where_the_streams_end_when_probe_is_fooled(analyzer, claim, tmp_path, monkeypatch):
    # probe believing a claim (as it would for a claim made some other way): the decoders' ends stop the walk
    real_probe = pipeline.probe
    monkeypatch.setattr(pipeline, "probe", lambda source: dataclasses.replace(real_probe(source), duration=3000.0))
    clip = make_clip(tmp_path / "clip.mp4", duration=3.0)
    for path, real in ((clip, 3.0), (claim, REAL + MAX_FRAME_SECONDS)):
        calls: list[tuple[int, int]] = []
        result = analyzer.analyze(path, progress=lambda done, total: calls.append((done, total)))
        assert len(result.segments) <= real + 1, path
        assert result.segments[-1].start < real
        assert calls[-1] == (len(result.segments), len(result.segments))
        assert result.to_dict()["media"]["duration"] <= real + analyzer.window
    # the face path alone (observe_faces) samples no more than the frames' real span either
    assert len(analyzer.observe_faces(claim)) <= (REAL + MAX_FRAME_SECONDS) * analyzer.frames_per_second
