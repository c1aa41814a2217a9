"""The Analyzer on tiny generated clips: windows, JSON contract v1, fusion, text, partial results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_contract_v1, assert_distribution
from media_factory import make_clip, make_face_image

from emofusion.media.faces import FaceDetector
from emofusion.features import align_face, log_mel, normalize_faces, speech_fraction
from emofusion.labels import EMOTION_TO_SENTIMENT
from emofusion.media import iter_frames, read_audio
from emofusion.models import fuse, load_model
from emofusion.analysis import Analyzer, Window, frame_times, make_windows
from emofusion.errors import AnalysisError
from emofusion.options import window_count

W, H = 160, 120
FACE_SIZE = 90  # the synthetic face Haar finds in a 160x120 frame


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline_clips")
    face = make_face_image(FACE_SIZE)
    return {
        # 5 s, face + speech-like tone
        "face": make_clip(d / "face.mp4", duration=5.0, width=W, height=H, face=face, modulate=True),
        # 3 s, no face, tone
        "noface": make_clip(d / "noface.mp4", duration=3.0, width=W, height=H, modulate=True),
        # 3 s, face, no audio track
        "mute": make_clip(d / "mute.mp4", duration=3.0, width=W, height=H, face=face, with_audio=False),
        # 3 s, face, digital silence
        "silent": make_clip(d / "silent.mp4", duration=3.0, width=W, height=H, face=face, silent=True),
        # 3 s audio only
        "wav": make_clip(d / "speech.wav", container="wav", duration=3.0, modulate=True),
    }


@pytest.fixture(scope="module")
def analyzer(tiny_model_dir):
    return Analyzer(model=tiny_model_dir)


@pytest.fixture(scope="module")
def face_result(analyzer, clips):
    return analyzer.analyze(clips["face"], text="i am so happy today").to_dict()


def vec(probs: dict, labels: list[str]) -> np.ndarray:
    return np.array([probs[k] for k in labels])


# ------------------------------------------------------------------------------ windows


def test_make_windows():
    assert make_windows(5.0, 2.0, 1.0) == [Window(0, 2), Window(1, 3), Window(2, 4), Window(3, 5)]
    assert make_windows(5.5, 2.0, 1.0)[-1] == Window(4.0, 5.5)  # the last is cut at the end
    assert make_windows(1.0, 2.0, 1.0) == [Window(0.0, 1.0)]  # shorter than one window
    assert make_windows(4.0, 1.0, 1.0) == [Window(k, k + 1) for k in range(4)]
    assert make_windows(0.0, 2.0, 1.0) == []
    with pytest.raises(AnalysisError):
        make_windows(5.0, 0.0, 1.0)


def test_a_sliver_at_the_end_gets_no_window():
    """A last window cut at the end is made only for at least max(0.5 s, min(window, hop)/2) of
    time no other window covers; a sliver (a few ms) makes none, and the window count agrees."""
    eight = [Window(k, k + 2) for k in range(7)]
    for seconds in (7.99, 8.0, 8.001, 8.008, 8.02, 8.4):
        assert make_windows(seconds, 2.0, 1.0) == eight, seconds
        assert window_count(seconds, 2.0, 1.0) == 7, seconds
    assert make_windows(8.5, 2.0, 1.0) == [*eight, Window(7.0, 8.5)]
    assert make_windows(8.51, 2.0, 1.0) == [*eight, Window(7.0, 8.5)]  # on the 50 ms grid
    assert make_windows(2.008, 2.0, 1.0) == [Window(0, 2)]
    assert make_windows(1.99, 2.0, 1.0) == [Window(0, 2)]
    assert make_windows(0.02, 2.0, 1.0) == [Window(0, 0.02)]  # shorter than one window: still one
    # hops leaving gaps: no window starting past the end (the old count made Window(9, 8))
    assert make_windows(8.0, 1.0, 3.0) == [Window(0, 1), Window(3, 4), Window(6, 7)]
    assert make_windows(9.7, 1.0, 3.0)[-1] == Window(9.0, 9.7)
    for seconds in (0.0, 0.3, 1.0, 2.0, 5.49, 8.001, 8.5, 59.97, 61.26):
        for window, hop in ((2.0, 1.0), (0.5, 0.1), (1.0, 3.0), (3.0, 0.25), (60.0, 60.0)):
            assert len(make_windows(seconds, window, hop)) == window_count(seconds, window, hop)


# the same content (8 s, 30 fps, with audio) in each container: (container, make_clip arguments)
_SAME_CONTENT = [
    ("mp4", {}),
    ("webm", {}),  # VP8 + Opus
    ("webm", {"video_codec": "libvpx-vp9", "audio_codec": "libopus"}),
    ("webm", {"options": {"live": "1"}}),  # as a browser records it: no stated duration
    ("mkv", {}),  # H.264 + Opus
    ("wav", {}),  # audio only
]


@pytest.mark.parametrize("seconds", [8.0, 8.001, 8.5])
def test_every_container_gives_the_same_windows(tmp_path, seconds):
    """Containers disagree by a few ms on the same content (Opus pre-skip and packets): the
    windows must not (issue 16 item 8: an 8.001 s WebM got a 7.0-8.0 stub, the MP4 none)."""
    from emofusion.media import probe

    expected = make_windows(seconds, 2.0, 1.0)
    assert len(expected) == (8 if seconds == 8.5 else 7)
    for n, (container, extra) in enumerate(_SAME_CONTENT):
        path = make_clip(tmp_path / f"c{n}.{container}", container=container, duration=seconds, fps=30,
                         width=W, height=H, **extra)
        duration = probe(path).duration
        assert make_windows(duration, 2.0, 1.0) == expected, (container, extra, duration)
        assert window_count(duration, 2.0, 1.0) == len(expected)


def test_a_webm_sliver_is_analysed_as_the_mp4(tmp_path, analyzer):
    webm = make_clip(tmp_path / "sliver.webm", container="webm", duration=8.001, fps=30, width=W, height=H)
    result = analyzer.analyze(webm)
    assert [(s.start, s.end) for s in result.segments] == [(k, k + 2) for k in range(7)]


def test_frame_times_are_a_grid_of_midpoints():
    assert frame_times(2.0, 2.0) == [0.25, 0.75, 1.25, 1.75]
    assert frame_times(0.1, 2.0) == [0.25]


def test_five_second_clip_windows(face_result):
    bounds = [(s["start"], s["end"]) for s in face_result["segments"]]
    assert bounds == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0)]
    assert face_result["media"]["duration"] == pytest.approx(5.0, abs=0.05)


def test_other_window_and_hop(tiny_model_dir, clips):
    result = Analyzer(tiny_model_dir, window=1.0, hop=0.5, modalities=["voice"]).analyze(clips["face"]).to_dict()
    bounds = [(s["start"], s["end"]) for s in result["segments"]]
    assert bounds == [(k * 0.5, k * 0.5 + 1.0) for k in range(9)]
    assert result["options"]["window"] == 1.0 and result["options"]["hop"] == 0.5


# ------------------------------------------------------------------------ JSON contract


def test_json_contract_v1(face_result):
    assert_contract_v1(face_result)
    assert face_result["model"]["name"] == "tiny" and face_result["model"]["trained"] is True
    assert face_result["media"]["has_video"] is True and face_result["media"]["has_audio"] is True
    assert face_result["labels"] == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    for s in face_result["segments"]:
        assert s["face"] is not None and s["voice"] is not None and s["text"] is not None
    assert face_result["summary"]["windows"] == {"face": 4, "voice": 4, "text": 4, "fused": 4}


def test_face_found_with_box_inside_the_frame(face_result):
    for s in face_result["segments"]:
        face = s["face"]
        assert face["faces"] >= 1 and face["frames"] >= 1
        x, y, w, h = face["box"]
        assert x >= 0 and y >= 0 and w > 0 and h > 0
        assert x + w <= W and y + h <= H
        # the face was pasted in the middle below the code band: the box is around it
        cx, cy = x + w / 2, y + h / 2
        assert abs(cx - W / 2) < 15 and abs(cy - (24 + (H - 24) / 2)) < 15


def test_fusion_over_present_modalities_by_hand(face_result, tiny_model_dir):
    labels = face_result["labels"]
    weights = load_model(tiny_model_dir, load_text_encoder=False).config.fusion.get("weights", {})
    for s in face_result["segments"]:
        f, v, t = (vec(s[m]["probs"], labels) for m in ("face", "voice", "text"))
        expected = np.cbrt(f * v * t)  # equal weights: the normalised geometric mean
        expected /= expected.sum()
        np.testing.assert_allclose(vec(s["fused"]["probs"], labels), expected, atol=2e-6)
        via_fuse = fuse({"face": f, "voice": v, "text": t}, weights)
        np.testing.assert_allclose(vec(s["fused"]["probs"], labels), via_fuse, atol=2e-6)


def test_summary_is_the_mean_over_windows(face_result):
    labels = face_result["labels"]
    fused = np.array([vec(s["fused"]["probs"], labels) for s in face_result["segments"]])
    mean = fused.mean(axis=0)
    mean /= mean.sum()
    summary = face_result["summary"]
    np.testing.assert_allclose(vec(summary["probs"], labels), mean, atol=2e-6)
    assert summary["top"] == labels[int(np.argmax(mean))]
    # with text, the sentiment is the mean of the text net's sentiments
    sent = np.mean([list(s["text"]["sentiment"].values()) for s in face_result["segments"]], axis=0)
    np.testing.assert_allclose(list(summary["sentiment"].values()), sent / sent.sum(), atol=2e-6)
    assert summary["sentiment_source"] == "text"


def test_summary_sentiment_without_text_comes_from_emotions(analyzer, clips):
    result = analyzer.analyze(clips["noface"]).to_dict()
    summary = result["summary"]
    assert summary["sentiment_source"] == "emotion"
    expected = {"negative": 0.0, "neutral": 0.0, "positive": 0.0}
    for label, p in summary["probs"].items():
        expected[EMOTION_TO_SENTIMENT[label]] += p
    for k, v in expected.items():
        assert summary["sentiment"][k] == pytest.approx(v, abs=1e-5)


# --------------------------------------------------------------------- absent is absent


def test_voice_only_window_fuses_to_the_voice(analyzer, clips):
    result = analyzer.analyze(clips["wav"]).to_dict()  # audio only, no text
    assert_contract_v1(result)
    assert result["media"]["has_video"] is False and result["media"]["has_audio"] is True
    assert len(result["segments"]) == 2
    for s in result["segments"]:
        assert s["face"] is None and s["text"] is None and s["voice"] is not None
        np.testing.assert_allclose(
            vec(s["fused"]["probs"], result["labels"]), vec(s["voice"]["probs"], result["labels"]), atol=2e-6
        )


def test_selected_modalities_only(tiny_model_dir, clips, face_result):
    result = Analyzer(tiny_model_dir, modalities=["voice"]).analyze(clips["face"], text="i am so happy today").to_dict()
    assert result["options"]["modalities"] == ["voice"]
    for s, full in zip(result["segments"], face_result["segments"]):
        assert s["face"] is None and s["text"] is None
        assert s["voice"]["probs"] == full["voice"]["probs"]
        np.testing.assert_allclose(vec(s["fused"]["probs"], result["labels"]),
                                   vec(s["voice"]["probs"], result["labels"]), atol=2e-6)


def test_video_without_audio_track(analyzer, clips):
    result = analyzer.analyze(clips["mute"]).to_dict()
    assert_contract_v1(result)
    assert result["media"]["has_audio"] is False and result["media"]["has_video"] is True
    assert result["segments"] and all(s["voice"] is None for s in result["segments"])
    assert all(s["face"] is not None for s in result["segments"])
    for s in result["segments"]:
        assert s["fused"]["probs"] == pytest.approx(s["face"]["probs"], abs=2e-6)


def test_video_without_a_face(analyzer, clips):
    result = analyzer.analyze(clips["noface"]).to_dict()
    assert_contract_v1(result)
    assert result["media"]["has_video"] is True
    assert all(s["face"] is None for s in result["segments"])
    assert all(s["voice"] is not None for s in result["segments"])
    assert result["summary"]["windows"]["face"] == 0


def test_silence_gives_no_voice(analyzer, clips):
    result = analyzer.analyze(clips["silent"]).to_dict()
    assert_contract_v1(result)
    assert result["media"]["has_audio"] is True
    assert all(s["voice"] is None for s in result["segments"])
    assert all(s["face"] is not None for s in result["segments"])


def test_nothing_present_gives_null_fused_and_summary(tiny_model_dir, clips):
    result = Analyzer(tiny_model_dir, modalities=["face"]).analyze(clips["wav"]).to_dict()
    assert_contract_v1(result)
    assert all(s["fused"] is None for s in result["segments"])
    assert result["summary"]["probs"] is None and result["summary"]["top"] is None


def test_separate_audio_file_beside_a_silent_or_mute_video(analyzer, clips):
    for video in ("mute", "silent"):
        result = analyzer.analyze(clips[video], audio=clips["wav"]).to_dict()
        assert_contract_v1(result)
        assert result["media"]["has_audio"] is True and result["media"]["external_audio"] is True
        assert all(s["voice"] is not None for s in result["segments"]), video
        assert all(s["face"] is not None for s in result["segments"]), video
    with pytest.raises(Exception, match="no audio"):
        analyzer.analyze(clips["face"], audio=clips["mute"])


# --------------------------------------------------------------------------------- text


def test_text_from_a_string_and_a_txt_file(analyzer, clips, tmp_path, face_result):
    txt = tmp_path / "t.txt"
    txt.write_text("i am so\nhappy today\n")
    from_file = analyzer.analyze(clips["face"], transcript=txt).to_dict()
    assert from_file["segments"] == face_result["segments"]
    assert all(s["text"]["text"] == "i am so happy today" for s in from_file["segments"])
    assert from_file["media"]["has_transcript"] is True


def test_text_probs_match_the_model(analyzer, face_result, tiny_model_dir):
    model = load_model(tiny_model_dir)
    emo, sent = model.text_probs(["i am so happy today"], [""])
    s = face_result["segments"][0]
    np.testing.assert_allclose(vec(s["text"]["probs"], face_result["labels"]), emo[0], atol=2e-6)
    np.testing.assert_allclose(list(s["text"]["sentiment"].values()), sent[0], atol=2e-6)


@pytest.mark.parametrize("suffix", [".srt", ".vtt"])
def test_subtitles_are_aligned_to_windows(analyzer, clips, tmp_path, suffix):
    if suffix == ".srt":
        content = "1\n00:00:02,500 --> 00:00:03,500\nthis is terrible\n"
    else:
        content = "WEBVTT\n\n00:00:02.500 --> 00:00:03.500\nthis is terrible\n"
    subs = tmp_path / f"subs{suffix}"
    subs.write_text(content)
    result = analyzer.analyze(clips["face"], transcript=subs).to_dict()
    assert_contract_v1(result)
    got = [(s["start"], s["text"]["text"] if s["text"] else None) for s in result["segments"]]
    assert got == [(0.0, None), (1.0, "this is terrible"), (2.0, "this is terrible"), (3.0, "this is terrible")]
    assert result["summary"]["windows"]["text"] == 3
    # the first window fuses face and voice only
    s0 = result["segments"][0]
    labels = result["labels"]
    expected = fuse({"face": vec(s0["face"]["probs"], labels), "voice": vec(s0["voice"]["probs"], labels)}, {})
    np.testing.assert_allclose(vec(s0["fused"]["probs"], labels), expected, atol=2e-6)


def test_subtitle_context_is_the_preceding_cues(analyzer, clips, tiny_model_dir):
    from emofusion.transcript import parse_subtitles

    cues = parse_subtitles(
        "1\n00:00:00,200 --> 00:00:01,500\ni am so happy\n\n2\n00:00:02,500 --> 00:00:03,500\nthis is terrible\n"
    )
    result = analyzer.analyze(clips["face"], transcript=cues).to_dict()
    texts = [s["text"]["text"] for s in result["segments"]]
    assert texts == ["i am so happy", "i am so happy this is terrible", "this is terrible", "this is terrible"]
    model = load_model(tiny_model_dir)
    emo, _ = model.text_probs(["this is terrible"], ["i am so happy"])  # context_turns = 2
    np.testing.assert_allclose(vec(result["segments"][2]["text"]["probs"], result["labels"]), emo[0], atol=2e-6)


def test_transcript_and_text_together_is_an_error(analyzer, clips, tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("hello")
    with pytest.raises(AnalysisError, match="not both"):
        analyzer.analyze(clips["wav"], transcript=txt, text="hello")


# ------------------------------------------------------------------------ same results


def test_bytes_input_gives_the_same_result(analyzer, clips, face_result):
    from_bytes = analyzer.analyze(clips["face"].read_bytes(), text="i am so happy today").to_dict()
    assert from_bytes["segments"] == face_result["segments"]
    assert from_bytes["summary"] == face_result["summary"]
    for key in ("duration", "has_video", "has_audio", "width", "height"):
        assert from_bytes["media"][key] == face_result["media"][key]


def test_voice_batching_equals_one_window_at_a_time(face_result, clips, tiny_model_dir):
    model = load_model(tiny_model_dir, load_text_encoder=False)
    for s in face_result["segments"]:
        wav = read_audio(clips["face"], s["start"], s["end"])
        assert len(wav) == 32000
        probs = model.voice_probs(log_mel(torch.from_numpy(wav), model.config.mel).unsqueeze(0))[0]
        np.testing.assert_allclose(vec(s["voice"]["probs"], face_result["labels"]), probs, atol=2e-6)
        assert s["voice"]["speech_fraction"] == pytest.approx(speech_fraction(wav), abs=1e-4)


def test_face_batching_equals_one_frame_at_a_time(clips, tiny_model_dir, face_result, monkeypatch):
    analyzer = Analyzer(tiny_model_dir)
    model = analyzer.model
    cfg = model.config.face_preprocess
    batches: list[torch.Tensor] = []
    batched_probs = model.face_probs

    def spy(faces: torch.Tensor):
        batches.append(faces.clone())
        return batched_probs(faces)

    monkeypatch.setattr(model, "face_probs", spy)
    result = analyzer.analyze(clips["face"], text="i am so happy today").to_dict()
    assert result["segments"] == face_result["segments"]  # the spy changes nothing
    crops = torch.cat(batches)
    times = frame_times(result["media"]["duration"], 2.0)
    assert len(times) == 10 and crops.shape == (10, 1, cfg.size, cfg.size)  # a face in every sampled frame
    assert any(len(b) > 1 for b in batches)  # the pipeline did batch

    # the first sampled frame, cropped and normalised by hand with emofusion.features
    _, frame = next(iter_frames(clips["face"], times[:1], fmt="gray", max_side=640))
    faces = FaceDetector().detect(frame, max_side=320)
    assert faces
    by_hand = normalize_faces(align_face(frame, faces[0].box, faces[0].landmarks, cfg)[None], cfg)
    assert torch.equal(by_hand[0], crops[0])

    # one crop at a time through the net, averaged per window, equals the batched result
    single = [batched_probs(crops[i : i + 1])[0] for i in range(len(crops))]
    for s in result["segments"]:
        inside = [p for t, p in zip(times, single) if s["start"] <= t < s["end"]]
        assert s["face"]["frames"] == len(inside) == 4
        np.testing.assert_allclose(vec(s["face"]["probs"], result["labels"]), np.mean(inside, axis=0), atol=2e-6)


def test_block_size_does_not_change_the_result(tiny_model_dir, clips, face_result):
    small_blocks = Analyzer(tiny_model_dir, block_windows=1).analyze(clips["face"], text="i am so happy today")
    assert small_blocks.to_dict()["segments"] == face_result["segments"]


def test_iter_segments_yields_the_analysis_segments_block_by_block(tiny_model_dir, clips, face_result):
    analyzer = Analyzer(tiny_model_dir, block_windows=2)
    seen: list[tuple[int, int]] = []
    stream = analyzer.iter_segments(clips["face"], text="i am so happy today",
                                    progress=lambda done, total: seen.append((done, total)))
    first = next(stream)
    assert seen == [(0, 4)]  # the first block is done, its progress not yet reported
    segments = [first, *stream]
    assert [s.to_dict() for s in segments] == face_result["segments"]
    assert seen == [(0, 4), (2, 4), (4, 4)]


def test_options_object_or_keywords_not_both(tiny_model_dir, clips):
    from emofusion.options import AnalysisOptions

    options = AnalysisOptions(window=3.0, hop=1.5, modalities=("voice",))
    by_object = Analyzer(tiny_model_dir, options=options).analyze(clips["wav"]).to_dict()
    by_keywords = Analyzer(tiny_model_dir, window=3.0, hop=1.5, modalities=["voice"]).analyze(clips["wav"]).to_dict()
    assert by_object == by_keywords and by_object["options"]["window"] == 3.0
    with pytest.raises(AnalysisError, match="not both"):
        Analyzer(tiny_model_dir, options=options, window=2.0)
    # as before the options type: no modality named means all the model has, a repeat counts once
    assert Analyzer(tiny_model_dir, modalities=[]).modalities == Analyzer(tiny_model_dir).modalities
    assert Analyzer(tiny_model_dir, modalities=["voice", "voice"]).modalities == ["voice"]


def test_results_keep_full_precision_and_round_only_in_json(face_result, tiny_model_dir, clips):
    analysis = Analyzer(tiny_model_dir).analyze(clips["face"], text="i am so happy today")
    fused = analysis.segments[0].fused
    assert isinstance(fused.probs, np.ndarray) and fused.probs.dtype in (np.float32, np.float64)
    assert any(abs(p * 1e6 - round(p * 1e6)) > 1e-3 for p in fused.probs)  # not rounded to 6 decimals
    assert analysis.to_dict()["segments"][0]["fused"]["probs"] == {k: round(float(p), 6) for k, p in zip(analysis.labels, fused.probs)}
    # the README's example reads these
    summary = analysis.to_dict()["summary"]
    assert (analysis.summary.top, round(analysis.summary.score, 6)) == (summary["top"], summary["score"])
    assert (analysis.segments[0].fused.top, analysis.segments[0].start) == (analysis.to_dict()["segments"][0]["fused"]["top"], 0.0)


def test_progress_callback(analyzer, clips):
    calls = []
    analyzer.analyze(clips["wav"], progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (2, 2)


# ------------------------------------------------------------------------ bad options


def test_bad_options(tiny_model_dir):
    with pytest.raises(AnalysisError, match=r"window must be >= 0.5 and <= 60 seconds \(got 0\)"):
        Analyzer(tiny_model_dir, window=0)
    with pytest.raises(AnalysisError, match=r"hop must be >= 0.1"):
        Analyzer(tiny_model_dir, hop=-1)
    with pytest.raises(AnalysisError, match=r"frames_per_second must be > 0"):
        Analyzer(tiny_model_dir, frames_per_second=0)
    with pytest.raises(AnalysisError, match="unknown modality 'smell'"):
        Analyzer(tiny_model_dir, modalities=["face", "smell"])


def test_modality_the_model_lacks(tmp_path):
    from conftest import save_tiny_model

    d = save_tiny_model(tmp_path / "fv")  # face + voice, no text net
    with pytest.raises(AnalysisError, match="no text net"):
        Analyzer(d, modalities=["text"])
    result = Analyzer(d).analyze(make_clip(tmp_path / "a.wav", container="wav", duration=2.0, modulate=True),
                                 text="ignored without a text net").to_dict()
    assert result["options"]["modalities"] == ["face", "voice"]
    assert all(s["text"] is None for s in result["segments"])
    assert_distribution(result["summary"]["probs"], result["labels"])


# ------------------------------------------------------------------------------ threads


def _face_workers() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name in ("emofusion-decode", "emofusion-faces")]


def test_torch_threads_and_workers_are_left_as_found(tiny_model_dir, clips, face_result):
    analyzer = Analyzer(tiny_model_dir)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = analyzer.analyze(clips["face"], text="i am so happy today").to_dict()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert result["segments"] == face_result["segments"]  # the thread count changes no output
    assert not _face_workers()


def test_face_workers_stop_when_the_analysis_fails(tiny_model_dir, clips, monkeypatch):
    # the face workers start before the voice runs; an error there must not leave them running
    analyzer = Analyzer(tiny_model_dir)

    def broken(*args, **kwargs):
        raise RuntimeError("voice failed")

    monkeypatch.setattr(analyzer.runner.voice, "results_for", broken)
    with pytest.raises(RuntimeError, match="voice failed"):
        analyzer.analyze(clips["face"])
    assert not _face_workers()


def test_face_observations_from_elsewhere_give_the_same_analysis(analyzer, clips, face_result):
    """The decode + detect stage alone (`observe_faces`), handed to `analyze` (as the Ray engine's
    decode stage does from another process), gives exactly the analysis of one call."""
    import pickle

    observations = analyzer.observe_faces(clips["face"])
    times = [o[0] for o in observations]
    assert times == sorted(times)
    assert times == pytest.approx(frame_times(5.0, analyzer.frames_per_second))
    assert any(o[1] for o in observations)
    for t, seen, faces in observations:
        assert len(seen) <= faces
        for sighting in seen:
            assert sighting.crop.dtype == np.uint8 and sighting.track >= 1 and len(sighting.box) == 4
    shipped = pickle.loads(pickle.dumps(observations))
    again = analyzer.analyze(clips["face"], text="i am so happy today", face_observations=shipped).to_dict()
    assert again == face_result
    # nothing to observe without video or without the face modality
    assert analyzer.observe_faces(clips["wav"]) == []
    assert Analyzer(analyzer.model, modalities=["voice"]).observe_faces(clips["face"]) == []


# ------------------------------------------------------------------------------ timeline plot


def test_timeline_with_the_source_shows_the_faces_read(face_result, clips, tmp_path):
    """issue 16 item 10: given the input, the plot gets a strip of the faces it read (frame at the
    window's middle, the analysed box drawn); without it (the service's timeline.png) it is as before."""
    from PIL import Image

    from emofusion.plot import face_thumbnails, save_timeline

    plain, with_faces = tmp_path / "plain.png", tmp_path / "faces.png"
    save_timeline(face_result, plain)
    save_timeline(face_result, with_faces, source=str(clips["face"]))
    plain_image = np.asarray(Image.open(plain).convert("RGB"))
    faces_image = np.asarray(Image.open(with_faces).convert("RGB"))
    assert plain_image.shape == (850, 1100, 3)  # today's plot: 11 x 8.5 in at 100 dpi
    assert faces_image.shape[1] == plain_image.shape[1] and faces_image.shape[0] > plain_image.shape[0] + 150
    strip = faces_image[plain_image.shape[0] :]  # the strip is below the panels
    assert (strip < 200).any(axis=2).mean() > 0.05  # not blank: the frames are drawn there
    assert ((strip[..., 1] > 200) & (strip[..., 0] < 60) & (strip[..., 2] < 160)).sum() > 100  # the green boxes

    thumbs = face_thumbnails(face_result, str(clips["face"]))
    assert len(thumbs) == len(face_result["segments"]) == 4
    for t, frame, (x, y, w, h), _top in thumbs:
        assert frame.shape == (H, W, 3) and 0 <= x and x + w <= W + 1 and 0 <= y and y + h <= H + 1
    assert [t for t, *_ in face_thumbnails(face_result, str(clips["face"]), count=2)] == [1.0, 4.0]  # window middles


def test_timeline_source_without_faces_keeps_the_plot(clips, analyzer, tmp_path):
    from PIL import Image

    from emofusion.plot import save_timeline

    result = analyzer.analyze(clips["wav"]).to_dict()
    save_timeline(result, tmp_path / "a.png", source=str(clips["wav"]))
    assert Image.open(tmp_path / "a.png").size == (1100, 850)
