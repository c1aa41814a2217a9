"""emofusion.media on small generated clips: probe, audio, windows, frames, bad input."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
from media_factory import CONTAINERS, FRAME_CODE_BITS, frame_index, make_clip, make_face_image, tone

from emofusion.media import (
    AudioWindowReader,
    FrameStats,
    MediaError,
    MediaInfo,
    iter_frames,
    probe,
    read_audio,
)

SR = 16000
FPS = 15
VIDEO_CONTAINERS = [c for c, (v, _) in CONTAINERS.items() if v is not None]
AUDIO_ONLY = [c for c, (v, _) in CONTAINERS.items() if v is None]


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """One 2 s clip per container (video 160x120 @ 15 fps where the container has video)."""
    d = tmp_path_factory.mktemp("clips")
    return {c: make_clip(d / f"clip.{c}", container=c, duration=2.0) for c in CONTAINERS}


@pytest.fixture(scope="session")
def gop_clip(tmp_path_factory):
    """3 s, 15 fps, a keyframe every 15 frames (1 s)."""
    d = tmp_path_factory.mktemp("gop")
    return make_clip(d / "gop.mp4", duration=3.0, gop_size=15)


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec)) * sr / len(x)


def expected_index(t: float, n_frames: int) -> int:
    return min(max(int(math.floor(t * FPS + 1e-9)), 0), n_frames - 1)


# --------------------------------------------------------------------------- probe


@pytest.mark.parametrize("container", list(CONTAINERS))
def test_probe_each_container(clips, container):
    info = probe(clips[container])
    assert isinstance(info, MediaInfo)
    assert info.duration == pytest.approx(2.0, abs=0.15)
    assert info.has_audio
    assert info.audio_codec
    assert info.audio_channels == 1
    assert info.audio_sample_rate == (48000 if "opus" in CONTAINERS[container][1] else SR)
    if container in VIDEO_CONTAINERS:
        assert info.has_video
        assert (info.width, info.height) == (160, 120)
        assert info.fps == pytest.approx(FPS)
        assert info.rotation == 0
        assert info.video_codec
    else:
        assert not info.has_video
        assert info.width is info.height is info.fps is info.video_codec is None
    d = info.to_dict()
    assert d["duration"] == info.duration and set(d) >= {"has_video", "container", "rotation"}
    json.dumps(d)


def test_probe_container_names(clips):
    assert probe(clips["mp4"]).container == "mov,mp4,m4a,3gp,3g2,mj2"
    assert probe(clips["webm"]).container == "matroska,webm"
    assert probe(clips["wav"]).container == "wav"


@pytest.mark.parametrize("container", ["mp4", "webm", "wav", "ogg"])
def test_bytes_input_equals_path_input(clips, container):
    path = clips[container]
    data = path.read_bytes()
    assert probe(data) == probe(path)
    np.testing.assert_array_equal(read_audio(data), read_audio(path))
    if container in VIDEO_CONTAINERS:
        a = [(t, f) for t, f in iter_frames(path, [0.0, 0.7, 1.9])]
        b = [(t, f) for t, f in iter_frames(data, [0.0, 0.7, 1.9])]
        assert [t for t, _ in a] == [t for t, _ in b]
        for (_, fa), (_, fb) in zip(a, b):
            np.testing.assert_array_equal(fa, fb)
    with AudioWindowReader(data) as r:
        np.testing.assert_array_equal(r.read(0.5, 1.0), read_audio(path, 0.5, 1.0))


def test_probe_webm_without_duration(tmp_path):
    # A browser's MediaRecorder writes WebM "live": no duration, no cues.
    p = make_clip(tmp_path / "live.webm", container="webm", duration=2.0, options={"live": "1"})
    import av

    with av.open(str(p)) as c:
        assert c.duration is None and all(s.duration is None for s in c.streams)
    info = probe(p)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert info.has_video and info.has_audio


def test_probe_stereo_and_late_audio(tmp_path):
    info = probe(make_clip(tmp_path / "st.mp4", channels=2))
    assert info.audio_channels == 2
    x = read_audio(tmp_path / "st.mp4")
    assert x.ndim == 1 and dominant_hz(x, SR) == pytest.approx(220, abs=3)


# --------------------------------------------------------------------------- read_audio


@pytest.mark.parametrize("container", list(CONTAINERS))
def test_read_audio_each_format(clips, container):
    x = read_audio(clips[container])
    assert x.dtype == np.float32 and x.ndim == 1
    # mp3 in AVI keeps its encoder delay and padding (AVI has no edit list)
    assert len(x) / SR == pytest.approx(2.0, abs=0.1 if container == "avi" else 0.02)
    assert np.abs(x).max() <= 1.0
    assert 0.3 < np.abs(x).max() < 0.7  # the tone's amplitude is 0.5
    assert dominant_hz(x, SR) == pytest.approx(220.0, abs=2.0)


def test_read_audio_is_aligned_and_other_rates(clips):
    x = read_audio(clips["wav"])
    np.testing.assert_allclose(x, tone(2.0, SR), atol=2e-4)  # pcm_s16le: exact but for rounding
    for rate in (8000, 22050, 44100):
        y = read_audio(clips["wav"], sample_rate=rate)
        assert len(y) == round(2.0 * rate)
        assert dominant_hz(y, rate) == pytest.approx(220, abs=2)
    # aac in mp4: priming removed (edit list), padding cut at the stated end
    m = read_audio(clips["mp4"])
    assert len(m) == 2 * SR
    ref = tone(2.0, SR)
    lag = int(np.argmax(np.correlate(m[4000:12000], ref[4000 - 50 : 12000 + 50], "valid"))) - 50
    assert abs(lag) <= 2


def test_read_audio_range(tmp_path):
    p = make_clip(tmp_path / "r.mp4", duration=3.0, modulate=True)
    full = read_audio(p)
    for start, end in [(0.0, 0.5), (0.25, 1.75), (1.5, 2.5), (2.2, 2.9), (2.5, 10.0)]:
        part = read_audio(p, start, end)
        s, e = round(start * SR), min(round(end * SR), len(full))
        assert len(part) == e - s
        np.testing.assert_allclose(part, full[s:e], atol=2e-3)
    assert len(read_audio(p, 5.0, 6.0)) == 0
    with pytest.raises(ValueError):
        read_audio(p, 2.0, 1.0)


def test_read_audio_late_start_is_preceded_by_silence(tmp_path):
    p = make_clip(tmp_path / "late.mp4", duration=2.0, audio_start=0.5)
    x = read_audio(p)
    assert len(x) == 2 * SR
    assert np.abs(x[: int(0.45 * SR)]).max() < 1e-3
    assert np.abs(x[int(0.6 * SR) :]).max() > 0.3
    with AudioWindowReader(p) as r:
        w = np.concatenate([r.read(k * 0.3, (k + 1) * 0.3) for k in range(8)])
    np.testing.assert_allclose(w, x, atol=1e-4)


# --------------------------------------------------------------------------- AudioWindowReader


@pytest.mark.parametrize("container", ["wav", "mp4", "ogg", "mp3", "webm"])
def test_windows_concatenate_to_read_audio(clips, container):
    path = clips[container]
    full = read_audio(path)
    with AudioWindowReader(path) as r:
        parts = [r.read(k * 0.25, (k + 1) * 0.25) for k in range(10)]
    assert [len(p) for p in parts[:7]] == [4000] * 7
    got = np.concatenate(parts)
    assert got.dtype == np.float32
    assert len(got) == len(full)
    np.testing.assert_allclose(got, full, atol=1e-4)


def test_windows_overlap_and_end(clips):
    path = clips["ogg"]  # 48 kHz opus -> 16 kHz through the streaming resampler
    full = read_audio(path)
    with AudioWindowReader(path) as r:
        for k in range(5):
            start, end = k * 0.5, k * 0.5 + 1.0
            w = r.read(start, end)
            s, e = round(start * SR), min(round(end * SR), len(full))
            assert len(w) == e - s
            np.testing.assert_allclose(w, full[s:e], atol=1e-4)
        assert len(r.read(2.5, 3.0)) == 0  # past the end: empty, never padded
        with pytest.raises(ValueError):
            r.read(1.0, 2.0)  # starts must not decrease
    with pytest.raises(ValueError):
        r.read(3.0, 4.0)  # closed


def test_window_reader_bounded_memory_on_long_audio(tmp_path):
    # 60 s at 44.1 kHz (resampled to 16 kHz as it streams)
    p = make_clip(tmp_path / "long.wav", container="wav", duration=60.0, sample_rate=44100, modulate=True)
    window, hop = 2.0, 1.0
    tracemalloc.start()
    try:
        with AudioWindowReader(p) as r:
            n, t, peak_buf = 0, 0.0, 0
            while True:
                w = r.read(t, t + window)
                if not len(w):
                    break
                assert len(w) <= window * SR
                peak_buf = max(peak_buf, r.buffered)
                n += 1
                t += hop
            _, peak = tracemalloc.get_traced_memory()
            max_buffered = r.max_buffered
    finally:
        tracemalloc.stop()
    assert n == 60
    assert max_buffered <= (window + 0.5) * SR  # one window plus one decoded chunk
    # the whole track would be 60 s * 16 kHz * 4 B = 3.8 MB at the output rate alone
    assert peak < 1.5e6, peak
    # and the windows are the track
    full = read_audio(p)
    with AudioWindowReader(p) as r:
        np.testing.assert_allclose(r.read(30.0, 32.0), full[30 * SR : 32 * SR], atol=1e-4)
        assert len(r.read(59.0, 61.0)) == 1 * SR


def test_window_reader_separate_audio_file_beside_video(tmp_path):
    video = make_clip(tmp_path / "v.mp4", duration=2.0, with_audio=False)
    audio = make_clip(tmp_path / "a.wav", container="wav", duration=2.0)
    vi, ai = probe(video), probe(audio)
    assert vi.has_video and not vi.has_audio and not ai.has_video
    assert vi.duration == pytest.approx(ai.duration, abs=0.05)
    times = [0.5, 1.0, 1.5]
    frames = list(iter_frames(video, times))
    with AudioWindowReader(audio) as r:
        wins = [r.read(t - 0.25, t + 0.25) for t in times]
    assert [frame_index(f) for _, f in frames] == [7, 15, 22]
    assert all(len(w) == 8000 for w in wins)


# --------------------------------------------------------------------------- iter_frames


def test_one_decoder_thread_gives_the_same_frames_as_ffmpegs_threads(gop_clip):
    times = [0.0, 0.4, 1.0, 1.7, 2.9]
    threaded = list(iter_frames(gop_clip, times, fmt="rgb"))
    single = list(iter_frames(gop_clip, times, fmt="rgb", threads=1))
    assert [t for t, _ in single] == times
    for (_, a), (_, b) in zip(threaded, single):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        list(iter_frames(gop_clip, times, threads=0))


def test_frames_are_the_frames_on_screen(gop_clip):
    n = 45
    times = [-0.5, 0.0, 0.01, 1 / 15, 0.1, 0.5, 0.99, 1.0, 1.0 + 1e-3, 1.4, 1.4, 2.0, 2.5, 2.95, 2.99]
    stats = FrameStats()
    got = list(iter_frames(gop_clip, times, stats=stats))
    assert [t for t, _ in got] == times
    assert [frame_index(f) for _, f in got] == [expected_index(t, n) for t in times]
    assert stats.converted == stats.yielded == len(times)
    for _, f in got:
        assert f.shape == (120, 160) and f.dtype == np.uint8


@pytest.mark.parametrize("container", VIDEO_CONTAINERS)
def test_frames_each_container(clips, container):
    times = [0.0, 0.3, 0.75, 1.2, 1.95, 1.999]  # 1.999: Matroska rounds the last frame's end to ms
    got = list(iter_frames(clips[container], times))
    assert [frame_index(f) for _, f in got] == [expected_index(t, 30) for t in times]


def test_past_the_end_times_are_dropped(gop_clip):
    got = list(iter_frames(gop_clip, [2.9, 2.99, 3.0, 3.5, 10.0]))
    assert [t for t, _ in got] == [2.9, 2.99]
    assert [frame_index(f) for _, f in got] == [43, 44]
    assert list(iter_frames(gop_clip, [5.0])) == []


def test_times_must_not_decrease(gop_clip):
    with pytest.raises(ValueError):
        list(iter_frames(gop_clip, [1.0, 0.5]))
    with pytest.raises(ValueError):
        list(iter_frames(gop_clip, [0.0], fmt="hsv"))


def test_seeking_decodes_less_than_a_full_decode(gop_clip):
    times = [0.1, 1.5, 2.7]
    full, sparse = FrameStats(), FrameStats()
    a = list(iter_frames(gop_clip, times, seek_threshold=math.inf, stats=full))
    b = list(iter_frames(gop_clip, times, seek_threshold=0.5, stats=sparse))
    assert full.seeks == 0 and full.decoded >= 41
    assert sparse.seeks >= 1
    assert sparse.decoded < full.decoded - 10
    assert [frame_index(f) for _, f in b] == [1, 22, 40]
    for (_, fa), (_, fb) in zip(a, b):
        np.testing.assert_array_equal(fa, fb)
    # 1.05 is a jump from the first frame past the keyframe at 1.0: seek; 1.9 has no
    # keyframe between 1.05 and it: decode on (a seek would land behind us)
    near = FrameStats()
    got = list(iter_frames(gop_clip, [1.05, 1.9], seek_threshold=0.5, stats=near))
    assert [frame_index(f) for _, f in got] == [15, 28]
    assert near.seeks == 1 and near.decoded <= 20


def test_seeking_without_an_index(tmp_path):
    p = make_clip(tmp_path / "live.webm", container="webm", duration=3.0, gop_size=15, options={"live": "1"})
    stats = FrameStats()
    got = list(iter_frames(p, [0.1, 1.5, 2.7], seek_threshold=0.5, stats=stats))
    assert [frame_index(f) for _, f in got] == [1, 22, 40]
    assert stats.seeks >= 1


def test_formats_and_max_side(tmp_path):
    p = make_clip(tmp_path / "big.mp4", duration=1.0, width=320, height=240)
    (_, g), = iter_frames(p, [0.5])
    (_, rgb), = iter_frames(p, [0.5], fmt="rgb")
    (_, bgr), = iter_frames(p, [0.5], fmt="bgr")
    assert g.shape == (240, 320) and rgb.shape == bgr.shape == (240, 320, 3)
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])
    assert frame_index(g) == frame_index(rgb) == 7
    stats = FrameStats()
    (_, small), = iter_frames(p, [0.5], max_side=80, stats=stats)
    assert small.shape == (60, 80) and frame_index(small) == 7
    (_, small_rgb), = iter_frames(p, [0.5], fmt="rgb", max_side=100)
    assert small_rgb.shape == (75, 100, 3)
    (_, same), = iter_frames(p, [0.5], max_side=1000)
    assert same.shape == (240, 320)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation(tmp_path, rotation):
    p = make_clip(tmp_path / f"rot{rotation}.mp4", duration=1.0, width=160, height=120, rotation=rotation)
    info = probe(p)
    assert info.rotation == rotation
    upright = (120, 160) if rotation in (90, 270) else (160, 120)
    assert (info.width, info.height) == upright
    (_, f), = iter_frames(p, [0.5])
    assert f.shape == (upright[1], upright[0])
    # turning it back (counter-clockwise by `rotation`) gives the coded picture
    coded = np.rot90(f, k=rotation // 90)
    assert coded.shape == (120, 160) and frame_index(coded) == 7
    (_, small), = iter_frames(p, [0.5], max_side=80, fmt="rgb")
    assert small.shape[:2] == ((80, 60) if rotation in (90, 270) else (60, 80))
    assert frame_index(np.rot90(small, k=rotation // 90)) == 7


def test_video_without_audio_and_audio_without_video(tmp_path, clips):
    p = make_clip(tmp_path / "silent_film.mp4", with_audio=False)
    info = probe(p)
    assert info.has_video and not info.has_audio and info.audio_codec is None
    with pytest.raises(MediaError, match="no audio stream"):
        read_audio(p)
    with pytest.raises(MediaError, match="no audio stream"):
        AudioWindowReader(p)
    for c in AUDIO_ONLY:
        with pytest.raises(MediaError, match="no video stream"):
            list(iter_frames(clips[c], [0.0]))


def test_truncated_mp4_with_index_first_stops_cleanly(tmp_path):
    p = make_clip(tmp_path / "fs.mp4", duration=3.0, options={"movflags": "faststart"})
    data = p.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    # The index is whole, the samples stop half way: the decoders treat the demuxer's error at
    # the cut as the end of the stream (media/video.py and media/audio.py log "ended early"), so
    # what lies before the cut comes back and nothing raises.
    times = np.arange(0, 3, 0.25)
    got = list(iter_frames(cut, times))
    assert 0 < len(got) < len(times)
    assert [t for t, _ in got] == list(times[: len(got)])  # the times before the cut, in order
    assert [frame_index(f) for _, f in got] == [expected_index(t, 45) for t, _ in got]
    assert 0 < len(read_audio(cut)) < 3 * SR


# --------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path, clips):
    import cv2

    rng = np.random.default_rng(0)
    random = rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    mp4 = clips["mp4"].read_bytes()
    png = cv2.imencode(".png", make_face_image(64))[1].tobytes()
    jpg = cv2.imencode(".jpg", make_face_image(64))[1].tobytes()
    text = b"Meeting notes\n\nhello, this is not a video\n" * 20
    subs = b"WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n"
    files = {
        "empty.mp4": b"",
        "random.bin": random,
        "random.mp4": random,
        "truncated.mp4": mp4[: len(mp4) // 2],
        "notes.txt": text,
        "subs.vtt": subs,
        "image.png": png,
        "photo.jpg": jpg,
    }
    cases = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        cases[name] = tmp_path / name
        if data:
            cases[name + " (bytes)"] = data
    cases["empty bytes"] = b""
    cases["missing"] = tmp_path / "nope" / "missing.mp4"
    cases["directory"] = tmp_path
    return cases


CALLS = {
    "probe": lambda s: probe(s),
    "read_audio": lambda s: read_audio(s),
    "AudioWindowReader": lambda s: AudioWindowReader(s).read(0, 1),
    "iter_frames": lambda s: list(iter_frames(s, [0.0, 1.0])),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_bad_input_raises_media_error(tmp_path, clips, call):
    for name, source in _bad_inputs(tmp_path, clips).items():
        with pytest.raises(MediaError) as exc:
            CALLS[call](source)
        msg = str(exc.value)
        assert msg and "\n" not in msg, (name, msg)
        assert str(tmp_path) not in msg and "Traceback" not in msg, (name, msg)


def test_bad_input_reasons(tmp_path, clips):
    cases = _bad_inputs(tmp_path, clips)

    def reason(name):
        with pytest.raises(MediaError) as exc:
            probe(cases[name])
        return str(exc.value)

    assert reason("missing") == "no such file"
    assert "directory" in reason("directory")
    assert reason("empty.mp4") == reason("empty bytes") == "empty file"
    for name in ("random.bin", "random.mp4", "random.bin (bytes)", "truncated.mp4", "truncated.mp4 (bytes)", "notes.txt"):
        assert reason(name).startswith("not a media file we can read"), name
    for name in ("image.png", "image.png (bytes)", "photo.jpg"):
        assert "image" in reason(name), name
    assert reason("subs.vtt").startswith("no audio or video stream")


def test_source_type_errors():
    with pytest.raises(TypeError):
        probe(12345)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- faces


def test_face_image_is_detected():
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    for size in (64, 96, 160, 240):
        face = make_face_image(size)
        assert face.shape == (size, size) and face.dtype == np.uint8
        assert len(cascade.detectMultiScale(face, 1.1, 5)) == 1, size
    for (w, h), size in (((320, 240), 120), ((640, 360), 160)):
        frame = np.full((h, w), 100, np.uint8)
        y0, x0 = (h - size) // 2, (w - size) // 2
        frame[y0 : y0 + size, x0 : x0 + size] = make_face_image(size)
        boxes = cascade.detectMultiScale(frame, 1.1, 5)
        assert len(boxes) == 1
        x, y, bw, bh = boxes[0]
        assert abs(x + bw / 2 - w / 2) < size / 4 and abs(y + bh / 2 - h / 2) < size / 4


def test_face_survives_a_clip(tmp_path):
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    p = make_clip(tmp_path / "face.mp4", duration=1.0, width=320, height=240, face=make_face_image(120))
    for _, f in iter_frames(p, [0.0, 0.5, 0.9], fmt="bgr"):
        gray = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        assert len(cascade.detectMultiScale(gray, 1.1, 5)) == 1
    for _, f in iter_frames(p, [0.5], max_side=160):
        assert len(cascade.detectMultiScale(f, 1.1, 5)) == 1


def test_frame_code_fits():
    assert FRAME_CODE_BITS >= 7  # 3 s at 15 fps = 45 frames, and room for more


def test_sample_rate_change_mid_stream(tmp_path):
    # Two raw AAC (ADTS) streams back to back: 16 kHz then 44.1 kHz, one "file".
    from fractions import Fraction

    import av

    def adts(rate, hz):
        p = tmp_path / f"{rate}.aac"
        with av.open(str(p), "w", format="adts") as out:
            s = out.add_stream("aac", rate=rate, layout="mono")
            x = tone(1.0, rate, hz)[None]
            f = av.AudioFrame.from_ndarray(x, format="fltp", layout="mono")
            f.sample_rate, f.pts, f.time_base = rate, 0, Fraction(1, rate)
            for pkt in s.encode(f) + s.encode():
                out.mux(pkt)
        return p.read_bytes()

    data = adts(16000, 220) + adts(44100, 440)
    x = read_audio(data)
    assert len(x) / SR == pytest.approx(2.0, abs=0.15)
    assert dominant_hz(x[2000:14000], SR) == pytest.approx(220, abs=3)
    assert dominant_hz(x[20000:30000], SR) == pytest.approx(440, abs=3)
    with AudioWindowReader(data) as r:
        w = np.concatenate([r.read(k * 0.25, (k + 1) * 0.25) for k in range(12)])
    np.testing.assert_allclose(w, x, atol=1e-4)
