"""The voice part's openSMILE-functionals head: features, fitting, training, persistence, export, analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tiny_voice_recipe
from support import ravdess_grid, write_ravdess_wavs
from typer.testing import CliRunner

from emofusion.cli import app
from emofusion.features import acoustic_functionals, log_mel
from emofusion.media import read_audio
from emofusion.media.synth import make_clip
from emofusion.models import load_model
from emofusion.models.voice import Z_LIMIT, VoiceFunctionalsHead, combine_voice
from emofusion.analysis import Analyzer
from emofusion.train.voice_functionals import attach

runner = CliRunner()
COMPARE_DIM = 6373  # ComParE 2016 functionals per clip


def _speech_like(seconds: float, f0: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    wav = sum(np.sin(2 * np.pi * f0 * k * t * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / k for k in (1, 2, 3))
    return (0.2 * wav * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _ravdess(root: Path) -> Path:
    """4 actors x 3 emotions x 2 takes; each emotion has its own pitch, so the functionals separate them."""
    pitch = {"01": 110.0, "03": 220.0, "05": 330.0}
    return write_ravdess_wavs(root, ravdess_grid(emotions=pitch),
                              lambda actor, emotion, rep: _speech_like(1.0, pitch[emotion] * (1 + 0.03 * actor),
                                                                       seed=actor * 10 + rep))


def _voice_recipe(tmp_path: Path, data: Path, functionals: str | None) -> Path:
    path = tmp_path / f"voice-{abs(hash(functionals))}.toml"
    return tiny_voice_recipe(path, data, model_lines=f"functionals = {functionals}" if functionals else "")


FUNCTIONALS = '{ feature_set = "ComParE_2016", c = 0.5, weight = 0.5 }'


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Fold 1 of the tiny voice recipe, trained with the functionals head and without it."""
    tmp = tmp_path_factory.mktemp("voice-functionals")
    data = _ravdess(tmp / "ravdess")
    cache = tmp / "cache"
    out = {"data": data, "cache": cache}
    for name, functionals in (("with", FUNCTIONALS), ("without", None)):
        recipe = _voice_recipe(tmp, data, functionals)
        result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp / name), "--fold", "1", "--cache-dir", str(cache)])
        assert result.exit_code == 0, result.output
        out[name] = tmp / name / "last"
        out[f"{name}_recipe"] = recipe
    return out


def test_functionals_are_per_clip_and_finite():
    a, b = _speech_like(1.5, 150.0, 0), _speech_like(0.8, 300.0, 1)
    both = acoustic_functionals([a, b])
    assert both.shape == (2, COMPARE_DIM) and both.dtype == np.float32
    assert np.isfinite(both).all()
    # a clip's features do not depend on the clips beside it
    np.testing.assert_array_equal(acoustic_functionals([b])[0], both[1])
    assert not np.allclose(both[0], both[1])
    with pytest.raises(ValueError, match="unknown acoustic feature set"):
        acoustic_functionals([a], "MFCC")


def _public_smile_rows(wavs: list[np.ndarray], feature_set: str) -> np.ndarray:
    """The same features through the opensmile package's public API, one process_signal per waveform."""
    import warnings

    import opensmile

    smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                            feature_level=opensmile.FeatureLevel.Functionals)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Segment too short, filling with NaN."
        rows = np.stack([smile.process_signal(w, 16000).to_numpy()[0] for w in wavs]).astype(np.float32)
    return np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0)


def _feature_test_waveforms() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    wavs = [_speech_like(2.0, 140.0, 3), _speech_like(0.7, 260.0, 4),
            (0.1 * rng.standard_normal(16000)).astype(np.float32),
            (1.5 * rng.standard_normal(8000)).astype(np.float32),  # clipped beyond full scale
            np.zeros(16000, dtype=np.float32), np.zeros(50, dtype=np.float32)]  # silence; shorter than a frame
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    for pattern in ("ravdess-speech-16k/Actor_01/*.wav", "emodb/wav/*.wav"):
        wavs += [sf.read(p, dtype="float32")[0] for p in sorted(shared.glob(pattern))[:3]]
    return wavs


@pytest.mark.parametrize("feature_set", ["ComParE_2016", "eGeMAPSv02"])
def test_functionals_equal_the_opensmile_package_public_api(feature_set):
    """The runner drives openSMILE's library directly (set up once, reset per waveform); its numbers are
    the package's own `Smile.process_signal` numbers, bit for bit, in any order."""
    wavs = _feature_test_waveforms()
    expected = _public_smile_rows(wavs, feature_set)
    got = acoustic_functionals(wavs, feature_set)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(acoustic_functionals(wavs[::-1], feature_set)[::-1], expected)
    assert not expected[5].any()  # a waveform too short for one frame: no features (NaN -> 0), as before


def test_without_the_expected_package_layout_the_public_api_gives_the_same_features(monkeypatch):
    from emofusion.features import opensmile as smile_driver

    def layout_changed(*args, **kwargs):
        raise AttributeError("no OpenSMILE here")

    monkeypatch.setattr(smile_driver, "_DirectSmile", layout_changed)
    monkeypatch.setattr(smile_driver, "_smile_local", __import__("threading").local())  # no runner made before
    wavs = _feature_test_waveforms()[:3]
    np.testing.assert_array_equal(acoustic_functionals(wavs), _public_smile_rows(wavs, "ComParE_2016"))


def modules_imported_by_functionals(feature_set: str, dim: int, modules: set[str]) -> list[str]:
    """Which of `modules` a fresh process has imported after computing one row of `feature_set`
    (checked to have `dim` values, not all zero)."""
    import ast
    import subprocess
    import sys

    code = ("import sys, numpy as np; from emofusion.features import acoustic_functionals; "
            f"x = acoustic_functionals([np.sin(np.arange(16000) / 5).astype(np.float32)], {feature_set!r}); "
            f"assert x.shape == (1, {dim}) and x.any(); print(sorted(set({sorted(modules)!r}) & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout.strip())


def test_analysing_speech_does_not_import_the_opensmile_package():
    """Importing `opensmile` costs about a second (pandas, audinterface) in every process that starts."""
    assert modules_imported_by_functionals("ComParE_2016", COMPARE_DIM, {"opensmile", "pandas"}) == []


def test_head_fits_separable_classes_and_never_predicts_an_absent_one():
    rng = np.random.default_rng(0)
    centres = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    y = np.repeat([0, 2, 3], 20)  # class 1 is absent from training
    x = np.concatenate([centres[[0, 1, 2]][k] + rng.normal(0, 0.3, (20, 4)) for k in range(3)])
    head = VoiceFunctionalsHead.fit(x, y, num_classes=5, c=1.0)
    probs = head.probs(x)
    assert probs.shape == (60, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (probs.argmax(axis=1) == y).all()
    assert probs[:, [1, 4]].max() < 1e-6
    with pytest.raises(ValueError, match="expected 4 functionals"):
        head.probs(x[:, :3])


def test_features_far_outside_the_training_range_do_not_saturate_the_head():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 30)
    x = rng.normal(0, 1, (90, 6)) + np.eye(3, 6)[y] * 2.0
    head = VoiceFunctionalsHead.fit(x, y, num_classes=3, c=1.0)
    far = np.array([[1e4, 0, 0, 0, 0, 0]])  # a tone-like input: one feature 10,000 SDs out
    at_limit = np.array([[Z_LIMIT * float(head.scale[0]) + float(head.mean[0]), 0, 0, 0, 0, 0]])
    np.testing.assert_allclose(head.probs(far), head.probs(at_limit), atol=1e-6)
    inside = np.array([[0.5 * Z_LIMIT * float(head.scale[0]) + float(head.mean[0]), 0, 0, 0, 0, 0]])
    assert not np.allclose(head.probs(inside), head.probs(at_limit), atol=1e-3)  # within the limit nothing is clipped


def test_combine_voice_is_a_weighted_geometric_mean():
    cnn = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    fun = np.array([[0.2, 0.6, 0.2], [0.3, 0.3, 0.4]], dtype=np.float32)
    np.testing.assert_allclose(combine_voice(cnn, fun, 0.0), cnn, atol=1e-6)
    np.testing.assert_allclose(combine_voice(cnn, fun, 1.0), fun, atol=1e-6)
    want = np.sqrt(cnn * fun)
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(combine_voice(cnn, fun, 0.5), want, atol=1e-6)


def test_training_fits_the_head_on_the_training_speakers_only(trained):
    model = load_model(trained["with"])
    cfg = model.config.voice["functionals"]
    assert cfg == {"feature_set": "ComParE_2016", "c": 0.5, "weight": 0.5, "dim": COMPARE_DIM}
    assert model.voice_functionals is not None and model.voice_functionals.dim == COMPARE_DIM
    assert model.config.extra["data"]["val_speakers"] == ["ravdess_01", "ravdess_02"]
    # functionals are cached once per file, shared by folds and runs
    cache = np.load(trained["cache"] / "voice-functionals-ComParE_2016.npz")
    assert len(cache["keys"]) == 12 and all("Actor_03" in k or "Actor_04" in k for k in cache["keys"])
    # the head separates the pitch-coded emotions of the held-out actors
    wavs = [read_audio(p) for p in sorted((trained["data"] / "Actor_01").glob("*.wav"))]
    truth = [model.labels.index(lab) for lab in ("neutral", "neutral", "happy", "happy", "angry", "angry")]
    head = model.voice_functionals.probs(acoustic_functionals(wavs))
    assert (head.argmax(axis=1) == np.array(truth)).mean() >= 5 / 6
    # the model's voice answer is the CNN's and the head's combined
    cnn = model.voice_probs(log_mel(np.stack(wavs), model.config.mel))
    np.testing.assert_allclose(model.clip_voice_probs(wavs), combine_voice(cnn, head, 0.5), atol=1e-6)


def test_attaching_the_head_to_a_trained_net_gives_the_head_training_fits(trained, tmp_path):
    import shutil

    target = tmp_path / "net"
    shutil.copytree(trained["without"], target)
    assert load_model(target).voice_functionals is None
    info = attach(trained["with_recipe"], target, fold=1, cache_dir=trained["cache"])
    assert info["train_speakers"] == 2 and info["dim"] == COMPARE_DIM
    # the validation record is measured again with the head: what training with the head recorded
    assert info["val"]["n"] == 12 and load_model(target).config.extra["val"] == info["val"]
    assert info["val"] == pytest.approx(load_model(trained["with"]).config.extra["val"])
    got, want = load_model(target).voice_functionals.state_dict(), load_model(trained["with"]).voice_functionals.state_dict()
    for key in want:
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-5, err_msg=key)
    # the wrong fold for this model is refused: its head would have seen the held-out speakers
    with pytest.raises(SystemExit, match="held out"):
        attach(trained["with_recipe"], target, fold=2, cache_dir=trained["cache"])


def test_a_bundle_assembled_from_the_voice_net_keeps_its_head(trained, tmp_path):
    from emofusion.train.fusion_fit import assemble

    assemble({"voice": trained["with"]}, tmp_path / "bundle", version="9.9.9")
    bundle, part = load_model(tmp_path / "bundle"), load_model(trained["with"])
    assert bundle.voice_functionals_config == part.voice_functionals_config
    for key, value in part.voice_functionals.state_dict().items():
        np.testing.assert_array_equal(bundle.voice_functionals.state_dict()[key].numpy(), value.numpy())
    wavs = [_speech_like(1.5, 180.0, 7)]
    np.testing.assert_allclose(bundle.clip_voice_probs(wavs), part.clip_voice_probs(wavs), atol=1e-6)


def test_bad_functionals_settings_are_one_line_errors(trained, tmp_path):
    for body, message in (('{ feature_set = "MFCC" }', "feature_set must be one of"),
                          ('{ c = 0.0 }', "c must be > 0"), ('{ cc = 1.0 }', "unknown key")):
        recipe = _voice_recipe(tmp_path, trained["data"], body)
        result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "bad"), "--fold", "1"])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output


def test_onnx_export_carries_the_head(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from emofusion.export import export_onnx
    from emofusion.models.onnx_backend import OnnxModel

    out = tmp_path / "onnx"
    manifest = export_onnx(trained["with"], out)
    assert manifest["nets"]["voice"]["functionals"] == "voice_functionals.safetensors"
    onnx_model = OnnxModel(out, precision="fp32", threads=1)
    wavs = [_speech_like(1.2, 200.0, 5), _speech_like(2.0, 120.0, 6)]
    torch_model = load_model(trained["with"])
    np.testing.assert_allclose(onnx_model.clip_voice_probs(wavs), torch_model.clip_voice_probs(wavs), atol=1e-5)
    (out / "voice_functionals.safetensors").unlink()
    with pytest.raises(Exception, match="functionals head but voice_functionals.safetensors is missing"):
        OnnxModel(out, precision="fp32", threads=1)


def assert_analysis_gives_the_clip_level_voice(model_dir: Path, tmp_path: Path) -> None:
    """A voiced window of an analysis carries what the model says about that window's audio as a clip."""
    clip = make_clip(tmp_path / "talk.mp4", duration=3.0, with_video=False, modulate=True)
    model = load_model(model_dir)
    result = Analyzer(model, window=1.0, hop=1.0, modalities=["voice"]).analyze(clip).to_dict()
    voiced = [s for s in result["segments"] if s["voice"] is not None]
    assert voiced
    seg = voiced[0]
    wav = read_audio(clip, start=seg["start"], end=seg["end"])
    want = model.clip_voice_probs([wav])[0]
    got = np.array([seg["voice"]["probs"][label] for label in result["labels"]])
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_analysis_uses_the_combined_voice(trained, tmp_path):
    assert_analysis_gives_the_clip_level_voice(trained["with"], tmp_path)
