"""Reading the voice relative to its speaker: the calibrated regression (training, loading, export),
an analysis's calibration over its own voiced windows, and `emofusion evaluate --calibrate speaker`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tiny_voice_recipe
from support import ravdess_grid, write_ravdess_wavs
from typer.testing import CliRunner

from emofusion.analysis import Analyzer
from emofusion.analysis.voice import MIN_CALIBRATION_WINDOWS
from emofusion.cli import app
from emofusion.errors import AnalysisError, InvalidOptions
from emofusion.features import acoustic_functionals, log_mel, spectral_band_level_columns
from emofusion.media import read_audio
from emofusion.models import load_model
from emofusion.models.voice import SpeakerBaseline, combine_voice, standardise_per_speaker
from emofusion.options import AnalysisOptions

runner = CliRunner()
CALIBRATED = ('{ feature_set = "spectral_v1", c = 0.5, weight = 0.5, '
              'calibrated = { c = [0.1, 1.0], weight = 1.0, band_levels = false } }')
UNCALIBRATED = '{ feature_set = "spectral_v1", c = 0.5, weight = 0.5 }'


def _voice(seconds: float, f0: float, seed: int, rate: float = 4.0) -> np.ndarray:
    """A harmonic tone with a syllable-like envelope (speech_fraction counts it as speech)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    wav = sum(np.sin(2 * np.pi * f0 * k * t * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / k for k in (1, 2, 3))
    return (0.2 * wav * (0.6 + 0.4 * np.sin(2 * np.pi * rate * t) ** 2) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Fold 1 of the tiny voice recipe with the calibrated regression, and without it. Each actor
    speaks at their own pitch (1.0-1.6x); each emotion moves it relative to the actor."""
    tmp = tmp_path_factory.mktemp("voice-calibration")
    pitch = {"01": 1.0, "03": 1.3, "05": 1.7}
    data = write_ravdess_wavs(tmp / "ravdess", ravdess_grid(emotions=pitch),
                              lambda actor, emotion, rep: _voice(1.0, 110.0 * (1 + 0.2 * actor) * pitch[emotion],
                                                                 seed=actor * 10 + rep))
    out = {"data": data}
    for name, functionals in (("calibrated", CALIBRATED), ("plain", UNCALIBRATED)):
        recipe = tiny_voice_recipe(tmp / f"{name}.toml", data, model_lines=f"functionals = {functionals}")
        result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp / name), "--fold", "1",
                                     "--cache-dir", str(tmp / "cache")])
        assert result.exit_code == 0, result.output
        out[name] = tmp / name / "last"
    return out


def test_a_speaker_baseline_standardises_over_that_speakers_rows():
    rng = np.random.default_rng(0)
    feats = rng.normal(5.0, 3.0, size=(10, 4))
    feats[:, 2] = 7.0  # a feature that never varies for this speaker
    base = SpeakerBaseline.of(feats)
    z = base.standardise(feats)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z[:, [0, 1, 3]].std(axis=0), 1.0)
    assert (z[:, 2] == 0).all() and base.count == 10
    both = standardise_per_speaker(np.concatenate([feats, feats * 2 + 1]), ["a"] * 10 + ["b"] * 10)
    np.testing.assert_allclose(both[:10], z)
    np.testing.assert_allclose(both[10:], z, atol=1e-12)  # each speaker against their own range
    with pytest.raises(ValueError):
        SpeakerBaseline.of(np.zeros((0, 4)))


def test_training_fits_the_calibrated_regression_and_the_one_loader_reads_it(trained):
    model = load_model(trained["calibrated"])
    cfg = model.config.voice["functionals"]["calibrated"]
    assert cfg["c"] in (0.1, 1.0) and cfg["c_grid"] == [0.1, 1.0] and cfg["weight"] == 1.0 and cfg["band_levels"] is False
    assert model.can_calibrate_voice and not load_model(trained["plain"]).can_calibrate_voice
    head = model.voice_functionals.calibrated
    # the band levels are not read
    assert (head.weight.numpy()[:, spectral_band_level_columns()] == 0).all()
    assert np.abs(head.weight.numpy()[:, ~spectral_band_level_columns()]).sum() > 0
    # clips of one speaker, read relative to that speaker: the calibrated regression alone (weight 1)
    wavs = [read_audio(p) for p in sorted((trained["data"] / "Actor_01").glob("*.wav"))]
    feats = acoustic_functionals(wavs, "spectral_v1")
    want = head.probs(SpeakerBaseline.of(feats).standardise(feats))
    np.testing.assert_allclose(model.clip_voice_probs(wavs, speakers=["a"] * len(wavs)), want, atol=1e-6)
    # without speakers, the model reads each clip alone, as before
    cnn = model.voice_probs(log_mel(np.stack(wavs), model.config.mel))
    np.testing.assert_allclose(model.clip_voice_probs(wavs), combine_voice(cnn, model.voice_functionals.probs(feats), 0.5),
                               atol=1e-6)
    with pytest.raises(ValueError, match="no calibrated voice regression"):
        load_model(trained["plain"]).clip_voice_probs(wavs, speakers=["a"] * len(wavs))


def test_onnx_export_carries_the_calibrated_regression(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from emofusion.export import export_onnx
    from emofusion.models.onnx_backend import OnnxModel

    export_onnx(trained["calibrated"], tmp_path / "onnx")
    onnx_model = OnnxModel(tmp_path / "onnx", precision="fp32", threads=1)
    wavs = [_voice(1.2, 200.0, 5), _voice(1.0, 150.0, 6), _voice(1.5, 120.0, 7)]
    assert onnx_model.can_calibrate_voice
    np.testing.assert_allclose(onnx_model.clip_voice_probs(wavs, speakers=["x"] * 3),
                               load_model(trained["calibrated"]).clip_voice_probs(wavs, speakers=["x"] * 3), atol=1e-5)


def _recording(path: Path, pieces: list[np.ndarray]) -> Path:
    sf.write(path, np.concatenate(pieces), 16000)
    return path


def _analyze(model_dir: Path, source: Path, calibrate: str) -> dict:
    return Analyzer(load_model(model_dir), window=1.0, hop=1.0, modalities=["voice"], calibrate=calibrate,
                    transcribe="off").analyze(str(source)).to_dict()


def _voice_probs(result: dict) -> dict[float, np.ndarray]:
    return {s["start"]: np.array([s["voice"]["probs"][k] for k in result["labels"]])
            for s in result["segments"] if s["voice"] is not None}


def _assert_same_readings(a: dict[float, np.ndarray], b: dict[float, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for start in a:
        np.testing.assert_allclose(a[start], b[start], atol=1e-6)


def test_an_analysis_calibrates_over_its_own_voiced_windows(trained, tmp_path):
    n = MIN_CALIBRATION_WINDOWS + 4
    pieces = [_voice(1.0, 150.0 * (1.3 if k % 3 == 0 else 1.0), seed=k) for k in range(n)]
    clip = _recording(tmp_path / "talk.wav", pieces)
    on, off, auto = (_analyze(trained["calibrated"], clip, mode) for mode in ("on", "off", "auto"))
    assert on["media"]["voice_calibration"] == {"mode": "on", "used": True, "voiced_windows": n}
    assert auto["media"]["voice_calibration"] == {"mode": "auto", "used": True, "voiced_windows": n}
    assert off["media"]["voice_calibration"] == {"mode": "off", "used": False, "voiced_windows": None,
                                                 "reason": "calibration is off"}
    model = load_model(trained["calibrated"])
    wavs = [read_audio(str(clip), start=float(k), end=float(k + 1)) for k in range(n)]
    feats = acoustic_functionals(wavs, "spectral_v1")
    calibrated = model.voice_functionals.calibrated.probs(SpeakerBaseline.of(feats).standardise(feats))
    got_on, got_off = _voice_probs(on), _voice_probs(off)
    assert len(got_on) == n
    for k in range(n):
        np.testing.assert_allclose(got_on[float(k)], calibrated[k], atol=2e-3)
        np.testing.assert_allclose(got_off[float(k)], model.clip_voice_probs([wavs[k]])[0], atol=2e-3)
    _assert_same_readings(_voice_probs(auto), got_on)


def test_a_recording_that_sounds_the_same_throughout_reads_as_its_own_baseline(trained, tmp_path):
    """The documented limit: calibration reads each window against the recording's average, so a
    voice that never changes (one emotion throughout) gets the regression's answer for an average
    window of that speaker in every window, whatever the emotion."""
    one = _voice(1.0, 180.0, seed=3)
    clip = _recording(tmp_path / "same.wav", [one] * (MIN_CALIBRATION_WINDOWS + 2))
    result = _analyze(trained["calibrated"], clip, "on")
    assert result["media"]["voice_calibration"]["used"] is True
    head = load_model(trained["calibrated"]).voice_functionals.calibrated
    average = head.probs(np.zeros((1, head.dim)))[0]
    probs = _voice_probs(result)
    assert len(probs) == MIN_CALIBRATION_WINDOWS + 2
    for p in probs.values():
        np.testing.assert_allclose(p, average, atol=2e-3)


def test_too_few_voiced_windows_skip_calibration_in_auto_and_fail_when_on(trained, tmp_path):
    few = MIN_CALIBRATION_WINDOWS - 1
    clip = _recording(tmp_path / "short.wav", [_voice(1.0, 160.0, seed=k) for k in range(few)]
                      + [np.zeros(16000 * 5, np.float32)])  # silence adds windows, not voiced ones
    auto, off = _analyze(trained["calibrated"], clip, "auto"), _analyze(trained["calibrated"], clip, "off")
    assert auto["media"]["voice_calibration"] == {
        "mode": "auto", "used": False, "voiced_windows": few,
        "reason": f"the input has {few} voiced windows; calibration needs at least {MIN_CALIBRATION_WINDOWS}"}
    _assert_same_readings(_voice_probs(auto), _voice_probs(off))  # read as uncalibrated, and said so
    with pytest.raises(AnalysisError, match=f"calibrate is 'on' but the input has {few} voiced windows"):
        _analyze(trained["calibrated"], clip, "on")
    result = runner.invoke(app, ["analyze", str(clip), "--model", str(trained["calibrated"]), "--calibrate", "on",
                                 "--transcribe", "off", "--window", "1", "--hop", "1"])
    assert result.exit_code == 2 and "calibration needs at least" in result.output
    assert "Traceback" not in result.output
    # an input with fewer windows than that is not even read for calibration
    short = _recording(tmp_path / "shorter.wav", [_voice(1.0, 160.0, seed=k) for k in range(5)])
    assert _analyze(trained["calibrated"], short, "auto")["media"]["voice_calibration"] == {
        "mode": "auto", "used": False, "voiced_windows": None,
        "reason": f"the input has 5 windows; calibration needs at least {MIN_CALIBRATION_WINDOWS} voiced windows"}


def test_a_voice_part_without_the_calibrated_regression(trained, tmp_path):
    clip = _recording(tmp_path / "talk.wav", [_voice(1.0, 150.0, seed=k) for k in range(MIN_CALIBRATION_WINDOWS + 1)])
    auto = _analyze(trained["plain"], clip, "auto")
    assert auto["media"]["voice_calibration"]["used"] is False
    assert "has no calibrated voice regression" in auto["media"]["voice_calibration"]["reason"]
    with pytest.raises(AnalysisError, match="has no calibrated voice regression"):
        Analyzer(load_model(trained["plain"]), calibrate="on")
    with pytest.raises(AnalysisError, match="voice modality is not analysed"):
        Analyzer("default", modalities=["face"], calibrate="on")


def test_calibrate_is_a_checked_option():
    assert AnalysisOptions().calibrate == "auto"
    assert AnalysisOptions.from_mapping({"calibrate": "off"}).calibrate == "off"
    for bad in ("speaker", True, None, 1):
        with pytest.raises(InvalidOptions, match="calibrate must be one of auto, on, off"):
            AnalysisOptions(calibrate=bad)


def test_evaluate_calibrate_speaker(trained, tmp_path):
    data = str(trained["data"])
    base = ["evaluate", "--dataset", "ravdess", "--root", data, "--speakers", "ravdess_01,ravdess_02"]
    out = tmp_path / "cal.json"
    result = runner.invoke(app, [*base, "--model", str(trained["calibrated"]), "--calibrate", "speaker", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["calibrate"] == "speaker" and report["n"] == 12
    # the same clips read relative to each actor's own clips
    model = load_model(trained["calibrated"])
    wavs, speakers, truth = [], [], []
    for actor in ("01", "02"):
        for p in sorted((trained["data"] / f"Actor_{actor}").glob("*.wav")):
            wavs.append(read_audio(p))
            speakers.append(actor)
    probs = model.clip_voice_probs(wavs, speakers=speakers)
    emotion = {"01": "neutral", "03": "happy", "05": "angry"}
    for actor in ("01", "02"):
        for p in sorted((trained["data"] / f"Actor_{actor}").glob("*.wav")):
            truth.append(model.labels.index(emotion[p.name.split("-")[2]]))
    assert report["accuracy"] == pytest.approx(float((probs.argmax(axis=1) == np.array(truth)).mean()))
    off = runner.invoke(app, [*base, "--model", str(trained["calibrated"]), "--json", "-"])
    assert off.exit_code == 0 and json.loads(off.output)["calibrate"] == "off"
    for args, message in (
        (["--model", str(trained["plain"]), "--calibrate", "speaker"], "no calibrated voice regression"),
        (["--model", str(trained["calibrated"]), "--calibrate", "recording"], "must be off or speaker"),
    ):
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output


def test_a_calibrated_part_reproduces_through_the_attach_command(trained, tmp_path):
    """`python -m emofusion.train.voice_functionals` gives a trained net the recipe's heads, the
    calibrated one included (how 0.7.0's voice part got it: see MODEL_CARD.md)."""
    from emofusion.train.voice_functionals import attach

    target = tmp_path / "net"
    shutil.copytree(trained["plain"], target)
    recipe = tiny_voice_recipe(tmp_path / "cal.toml", trained["data"], model_lines=f"functionals = {CALIBRATED}")
    attach(recipe, target, fold=1, cache_dir=tmp_path / "cache")
    got, want = load_model(target).voice_functionals.state_dict(), load_model(trained["calibrated"]).voice_functionals.state_dict()
    assert set(got) == set(want) and any(k.startswith("calibrated.") for k in got)
    for key in want:
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-5, err_msg=key)


def test_random_recording_conditions_keep_the_speech_and_are_seeded():
    """`train.channel` (what issue 18 tried as augmentation): every condition gives finite 16 kHz
    audio of the clip's length (pitch shifts change it by at most 3 semitones), reproducibly."""
    from emofusion.train.channel import CONDITIONS, random_recording

    wav = _voice(1.0, 150.0, seed=1)
    for name in CONDITIONS:
        out = random_recording(wav, np.random.default_rng(0), p=1.0, conditions=(name,))
        assert out.dtype == np.float32 and np.isfinite(out).all() and 0.09 < np.abs(out).max() <= 0.9
        if name == "pitch":
            assert 16000 / 2 ** (3 / 12) - 1 <= len(out) <= 16000 * 2 ** (3 / 12) + 1
        else:
            assert len(out) == len(wav)
            assert not np.allclose(out / np.abs(out).max(), wav / np.abs(wav).max(), atol=1e-3)
    a = random_recording(wav, np.random.default_rng(7))
    np.testing.assert_array_equal(a, random_recording(wav, np.random.default_rng(7)))
