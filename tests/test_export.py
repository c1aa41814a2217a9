"""ONNX export (`emofusion export --format onnx`) and the ONNX Runtime backend, on the tiny model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import read_config, save_tiny_model
from support import assert_one_error_line, invoke_cli
from typer.testing import CliRunner, Result

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from emofusion.cli import app  # noqa: E402
from emofusion.export import export_onnx, synthetic_faces, synthetic_speech  # noqa: E402
from emofusion.features import log_mel, normalize_faces  # noqa: E402
from emofusion.media.synth import make_clip, make_face_image  # noqa: E402
from emofusion.models import ModelLoadError, load_model  # noqa: E402
from emofusion.models.onnx_backend import OnnxModel  # noqa: E402
from emofusion.analysis import Analyzer  # noqa: E402

FP32_ATOL = 1e-5
# INT8 nets (7-bit per-channel weights, uint8 activations calibrated on synthetic inputs) move
# the tiny model's probabilities by ~3e-4 (face) and ~5e-2 (voice: random log-mels fall outside
# the calibrated ranges and are clipped); 0.1 still catches a broken quantization (a wrong scale
# or zero point moves them to an arbitrary distribution).
INT8_ATOL = 0.1


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("export") / "tiny-onnx"
    export_onnx(tiny_model_dir, out, int8=True)
    return out


@pytest.fixture(scope="module")
def export_all_int8(tmp_path_factory, tiny_model_dir):
    """Every net quantized, the voice net included."""
    out = tmp_path_factory.mktemp("export") / "tiny-onnx-all-int8"
    export_onnx(tiny_model_dir, out, int8=True, int8_nets=("face", "voice", "text"))
    return out


@pytest.fixture(scope="module")
def torch_model(tiny_model_dir):
    return load_model(tiny_model_dir, load_text_encoder=True).prepare_inference()


@pytest.fixture(scope="module")
def fp32(export_dir, torch_model):
    model = OnnxModel(export_dir, precision="fp32", threads=1)
    model.attach_encoder(torch_model.encoder)  # the same PyTorch encoder (it is not exported)
    return model


@pytest.fixture(scope="module")
def int8(export_dir, torch_model):
    model = OnnxModel(export_dir, precision="int8", threads=1)
    model.attach_encoder(torch_model.encoder)
    return model


def faces(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 48, 48, generator=torch.Generator().manual_seed(seed))


def mels(n: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 64, frames, generator=torch.Generator().manual_seed(seed))


def assert_distributions(p: np.ndarray, n: int, c: int) -> None:
    assert p.shape == (n, c) and p.dtype == np.float32
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------ the folder


def test_export_folder_is_self_describing(export_dir, tiny_model_dir):
    names = {p.name for p in export_dir.iterdir()}
    assert names == {"export.json", "config.json", "face.onnx", "voice.onnx", "text_heads.onnx",
                     "face.int8.onnx", "text_heads.int8.onnx"}
    manifest = json.loads((export_dir / "export.json").read_text())
    assert manifest["format"] == "emofusion-onnx" and manifest["format_version"] == 1
    assert manifest["int8"] is True and manifest["default_precision"] == "int8"
    assert manifest["opset"] == 17
    assert manifest["source"]["name"] == "tiny" and manifest["source"]["version"] == "0.0.1"
    assert json.loads((export_dir / "config.json").read_text()) == read_config(tiny_model_dir)
    assert set(manifest["nets"]) == {"face", "voice", "text"}
    assert manifest["nets"]["face"]["inputs"][0]["shape"] == ["batch", 1, 48, 48]
    assert manifest["nets"]["voice"]["inputs"][0]["shape"] == ["batch", 64, "frames"]
    assert [i["name"] for i in manifest["nets"]["text"]["inputs"]] == ["utterance", "context"]
    assert manifest["nets"]["text"]["encoder_delta"] is None  # the tiny model has no fine-tuned encoder
    assert manifest["quantization"]["face"]["method"] == "static"
    assert manifest["quantization"]["text"]["method"] == "dynamic"
    # the voice net is not quantized by default: the INT8 precision runs its FP32 file, and says why
    assert manifest["nets"]["voice"]["int8"] == "voice.onnx" and manifest["nets"]["voice"]["int8_kept_fp32"]
    assert manifest["quantization"]["voice"]["method"] == "none (FP32)"
    for name, info in manifest["files"].items():
        assert hashlib.sha256((export_dir / name).read_bytes()).hexdigest() == info["sha256"]
    assert all(c["max_abs_logit_diff"] < 1e-4 for c in manifest["checks"].values())


def test_onnx_files_have_dynamic_axes(export_dir, export_all_int8):
    import onnx

    def dims(path, which="input"):
        graph = onnx.load(str((export_all_int8 if path == "voice.int8.onnx" else export_dir) / path)).graph
        values = graph.input if which == "input" else graph.output
        return [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values]

    assert dims("face.onnx") == [["batch", 1, 48, 48]]
    assert dims("voice.onnx") == [["batch", 64, "frames"]]
    assert dims("voice.int8.onnx") == [["batch", 64, "frames"]]
    assert dims("text_heads.onnx") == [["batch", 16], ["batch", 16]]
    assert dims("text_heads.onnx", "output") == [["batch", 7], ["batch", 3]]


# ------------------------------------------------------------------------- FP32 = PyTorch


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("tta", [True, False])
def test_face_fp32_matches_pytorch(torch_model, fp32, n, tta, monkeypatch):
    # both read tta_flip from their config at call time
    monkeypatch.setitem(torch_model.config.face, "tta_flip", tta)
    monkeypatch.setitem(fp32.config.face, "tta_flip", tta)
    x = faces(n, seed=n)
    got = fp32.face_probs(x)
    assert_distributions(got, n, 7)
    np.testing.assert_allclose(got, torch_model.face_probs(x), atol=FP32_ATOL, rtol=0)
    np.testing.assert_allclose(fp32.face_probs(x.numpy()), got, atol=0, rtol=0)  # numpy in: the same


def test_face_flip_is_used(fp32, monkeypatch):
    x = faces(4, seed=9)
    with_flip = fp32.face_probs(x)
    monkeypatch.setitem(fp32.config.face, "tta_flip", False)
    assert np.abs(fp32.face_probs(x) - with_flip).max() > 1e-4


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("frames", [101, 163])
def test_voice_fp32_matches_pytorch(torch_model, fp32, n, frames):
    x = mels(n, frames, seed=frames + n)
    got = fp32.voice_probs(x)
    assert_distributions(got, n, 7)
    np.testing.assert_allclose(got, torch_model.voice_probs(x), atol=FP32_ATOL, rtol=0)


def test_clip_voice_probs_matches_pytorch(torch_model, fp32):
    rng = np.random.default_rng(3)
    wavs = [rng.normal(0, 0.1, n).astype(np.float32) for n in (16000, 32000, 16000, 24000)]
    np.testing.assert_allclose(fp32.clip_voice_probs(wavs), torch_model.clip_voice_probs(wavs), atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize("contexts", [None, ["", "i am so happy", "what", ""]])
def test_text_fp32_matches_pytorch(torch_model, fp32, contexts):
    texts = ["i am so happy today", "this is terrible", "wow what a surprise", "okay"]
    emo, sent = fp32.text_probs(texts, contexts)
    want_emo, want_sent = torch_model.text_probs(texts, contexts)
    assert_distributions(emo, 4, 7)
    assert_distributions(sent, 4, 3)
    np.testing.assert_allclose(emo, want_emo, atol=FP32_ATOL, rtol=0)
    np.testing.assert_allclose(sent, want_sent, atol=FP32_ATOL, rtol=0)


def test_empty_batches(fp32):
    assert fp32.face_probs(torch.zeros(0, 1, 48, 48)).shape == (0, 7)
    assert fp32.voice_probs(torch.zeros(0, 64, 101)).shape == (0, 7)
    emo, sent = fp32.text_probs([], [])
    assert emo.shape == (0, 7) and sent.shape == (0, 3)


# ---------------------------------------------------------------------------------- INT8


@pytest.mark.parametrize("n", [1, 5, 64])
def test_face_int8_close_to_pytorch(torch_model, int8, n):
    for x in (faces(n, seed=100 + n), normalize_faces(synthetic_faces(n, 48, seed=7))):
        got, want = int8.face_probs(x), torch_model.face_probs(x)
        assert_distributions(got, n, 7)
        assert np.abs(got - want).max() <= INT8_ATOL
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def test_voice_runs_fp32_under_int8_by_default(int8, fp32):
    x = mels(3, 120)
    assert int8.voice.path.name == "voice.onnx"
    np.testing.assert_array_equal(int8.voice_probs(x), fp32.voice_probs(x))


@pytest.mark.parametrize("n,frames", [(1, 101), (5, 101), (32, 101), (5, 163)])
def test_voice_int8_close_to_pytorch(torch_model, export_all_int8, n, frames):
    int8 = OnnxModel(export_all_int8, precision="int8", threads=1)
    assert int8.voice.path.name == "voice.int8.onnx"
    mel = torch_model.config.mel
    speech = log_mel(synthetic_speech(n, (frames - 1) * mel.hop_length / mel.sample_rate, seed=11), mel)
    for x in (mels(n, frames, seed=200 + n), speech):
        assert x.shape[-1] == frames
        got, want = int8.voice_probs(x), torch_model.voice_probs(x)
        assert_distributions(got, n, 7)
        assert np.abs(got - want).max() <= INT8_ATOL
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def test_text_int8_close_to_pytorch(torch_model, int8):
    texts = ["i am so happy today", "this is terrible", "wow what a surprise", "okay"]
    for got, want in zip(int8.text_probs(texts, ["", "no", "", "yes"]), torch_model.text_probs(texts, ["", "no", "", "yes"])):
        assert np.all(got >= 0) and np.allclose(got.sum(1), 1, atol=1e-5)
        assert np.abs(got - want).max() <= INT8_ATOL


# ------------------------------------------------------------------------------ loading


def test_model_surface(export_dir, fp32, torch_model):
    assert fp32.prepare_inference() is fp32
    assert fp32.labels == torch_model.labels
    assert fp32.modalities == torch_model.modalities == ["face", "voice", "text"]
    assert fp32.is_trained is True
    assert fp32.config.name == "tiny"
    assert fp32.face and fp32.voice and fp32.text
    assert fp32.face.session.get_session_options().intra_op_num_threads == 1
    p = {"face": np.full(7, 1 / 7), "voice": np.eye(7)[2] * 0.9 + 0.1 / 7, "text": None}
    np.testing.assert_allclose(fp32.fuse(p), torch_model.fuse(p))
    assert OnnxModel(export_dir).precision == "int8"  # the manifest's default


def test_default_precision_without_int8(tmp_path, tiny_model_dir):
    out = export_onnx(load_model(tiny_model_dir, load_text_encoder=False), tmp_path / "e", int8=False)
    assert out["int8"] is False and out["default_precision"] == "fp32"
    assert not any(p.name.endswith(".int8.onnx") for p in (tmp_path / "e").iterdir())
    assert OnnxModel(tmp_path / "e").precision == "fp32"
    with pytest.raises(ModelLoadError, match="no int8 face net"):
        OnnxModel(tmp_path / "e", precision="int8")


def test_partial_model_exports_only_its_nets(tmp_path):
    src = save_tiny_model(tmp_path / "voice-only", face=None)
    export_onnx(src, tmp_path / "e")
    model = OnnxModel(tmp_path / "e")
    assert model.modalities == ["voice"] and model.face is None and model.text is None
    assert {p.name for p in (tmp_path / "e").iterdir()} == {"export.json", "config.json", "voice.onnx"}


def test_fine_tuned_encoder_tensors_travel_with_the_export(tmp_path, tiny_encoder_dir):
    from emofusion.models import EmotionModel

    base = load_model(save_tiny_model(tmp_path / "ft", tiny_encoder_dir), load_text_encoder=True)
    shapes = {"encoder.layer.1.output.dense.bias": [16]}
    base.config.text["finetuned"] = {"layers": 1, "shapes": shapes}
    model = EmotionModel(base.config, load_text_encoder=False)
    model.load_state_dict(base.state_dict(), strict=False)
    model.text_encoder_delta.encoder__layer__1__output__dense__bias.fill_(0.5)
    model.save_pretrained(tmp_path / "ft2")
    export_onnx(tmp_path / "ft2", tmp_path / "e")
    assert (tmp_path / "e" / "text_encoder_delta.safetensors").is_file()
    pt = load_model(tmp_path / "ft2", load_text_encoder=True)
    ox = OnnxModel(tmp_path / "e", load_text_encoder=True)
    assert float(ox.encoder.model.state_dict()["encoder.layer.1.output.dense.bias"][0]) == 0.5
    texts = ["i am so happy", "awful"]
    for got, want in zip(ox.text_probs(texts, ["", "no"]), pt.text_probs(texts, ["", "no"])):
        np.testing.assert_allclose(got, want, atol=FP32_ATOL, rtol=0)


def test_load_model_picks_the_backend(export_dir, tiny_model_dir, tmp_path):
    assert isinstance(load_model(export_dir), OnnxModel)  # auto: an export folder
    assert isinstance(load_model(export_dir, "onnx", precision="fp32", threads=1), OnnxModel)
    assert not isinstance(load_model(tiny_model_dir), OnnxModel)  # auto: a PyTorch model folder
    assert not isinstance(load_model(tiny_model_dir, "torch"), OnnxModel)
    with pytest.raises(ModelLoadError, match="not an ONNX export folder"):
        load_model(tiny_model_dir, "onnx")
    with pytest.raises(ModelLoadError, match="holds no PyTorch weights"):
        load_model(export_dir, "torch")
    with pytest.raises(ModelLoadError, match="unknown backend"):
        load_model(export_dir, "tensorrt")
    with pytest.raises(ModelLoadError, match="unknown precision"):
        OnnxModel(export_dir, precision="fp16")
    with pytest.raises(ModelLoadError, match="not an ONNX export"):
        OnnxModel(tmp_path)


# ------------------------------------------------------------------------------ Analyzer


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("export_clip")
    return make_clip(d / "clip.mp4", duration=2, width=160, height=128, face=make_face_image(80), modulate=True)


def segment_vectors(analysis) -> list[np.ndarray]:
    out = []
    for s in analysis["segments"]:
        for part in ("face", "voice", "text", "fused"):
            if s[part] is not None:
                out.append(np.array(list(s[part]["probs"].values())))
        if s["text"] is not None:
            out.append(np.array(list(s["text"]["sentiment"].values())))
    return out


def test_analyzer_on_onnx_gives_the_same_analysis(tiny_model_dir, fp32, clip):
    text = "i am so happy today"
    want = Analyzer(tiny_model_dir).analyze(clip, text=text).to_dict()
    got = Analyzer(fp32).analyze(clip, text=text).to_dict()
    assert got["labels"] == want["labels"]
    # the same model but for how it ran: `backend`, and for ONNX `precision`
    assert want["model"]["backend"] == "torch" and "precision" not in want["model"]
    assert (got["model"]["backend"], got["model"]["precision"]) == ("onnx", "fp32")
    ran = {"backend", "precision"}
    assert {k: v for k, v in got["model"].items() if k not in ran} == {k: v for k, v in want["model"].items() if k not in ran}
    assert len(got["segments"]) == len(want["segments"]) >= 1
    for g, w in zip(got["segments"], want["segments"]):
        assert [g[m] is None for m in ("face", "voice", "text")] == [w[m] is None for m in ("face", "voice", "text")]
        assert g["fused"]["top"] == w["fused"]["top"]
    assert any(s["face"] is not None for s in got["segments"]), "the synthetic face must be found"
    assert any(s["voice"] is not None for s in got["segments"])
    for g, w in zip(segment_vectors(got), segment_vectors(want)):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
    np.testing.assert_allclose(list(got["summary"]["probs"].values()), list(want["summary"]["probs"].values()), atol=1e-4)


def test_an_export_folder_loads_wherever_a_model_is_accepted(export_dir, clip):
    """Analyzer(<export folder>) and emofusion.load_model(<export folder>) run it on ONNX Runtime,
    as `emofusion analyze --model <export folder>` does."""
    import emofusion

    by_path = Analyzer(str(export_dir))
    assert isinstance(by_path.model, OnnxModel) and isinstance(emofusion.load_model(export_dir), OnnxModel)
    want = Analyzer(load_model(export_dir)).analyze(clip).to_dict()
    assert by_path.analyze(clip).to_dict() == want


def test_analyzer_on_int8_runs(int8, clip):
    got = Analyzer(int8).analyze(clip).to_dict()
    assert got["summary"]["top"] in got["labels"]


def test_analyze_cli_and_service_take_an_export_folder(export_dir, tiny_model_dir, clip, tmp_path):
    """`--model <export folder>` runs on ONNX Runtime in `analyze`, and the service loads it unchanged."""
    import json

    from fastapi.testclient import TestClient

    from serve_support import make_settings

    from emofusion.serve.app import create_app

    out = tmp_path / "a.json"
    result = CliRunner().invoke(app, ["analyze", str(clip), "--model", str(export_dir), "--json", str(out), "-q"])
    assert result.exit_code == 0, result.output
    want = Analyzer(tiny_model_dir).analyze(clip).to_dict()
    got = json.loads(out.read_text())
    for g, w in zip(segment_vectors(got), segment_vectors(want)):  # end to end, ORT vs torch kernels
        np.testing.assert_allclose(g, w, atol=5e-4, rtol=0)
    wrong = CliRunner().invoke(app, ["analyze", str(clip), "--model", str(export_dir), "--backend", "torch"])
    assert wrong.exit_code == 2 and "onnx backend" in wrong.stderr
    with TestClient(create_app(make_settings(tmp_path / "home", export_dir), start_jobs=False)) as client:
        assert type(client.app.state.services.engine.model).__name__ == "OnnxModel"
        r = client.post("/invocations", content=clip.read_bytes(), headers={"Content-Type": "video/mp4"})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose([e["score"] for e in r.json()["emotions"]],
                                   sorted(want["summary"]["probs"].values(), reverse=True), atol=5e-4)


# ----------------------------------------------------------------------------------- CLI


def run(*args: object) -> Result:
    """`emofusion export ARGS...`."""
    return invoke_cli("export", *args)


def test_cli_export(tmp_path, tiny_model_dir):
    out = tmp_path / "onnx"
    result = run("--format", "onnx", "--model", tiny_model_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert "stays PyTorch" in result.stderr
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["source"]["model"] == str(tiny_model_dir) and manifest["int8"] is False
    assert {"face.onnx", "voice.onnx", "text_heads.onnx"} <= {p.name for p in out.iterdir()}

    # non-empty: refused without --force; with --force the export is replaced, other files kept
    assert "--force" in assert_one_error_line(run("--format", "onnx", "--model", tiny_model_dir, "--out", out), out)
    (out / "notes.txt").write_text("mine")
    result = run("--format", "onnx", "--int8", "--model", tiny_model_dir, "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "face.int8.onnx").is_file()
    assert json.loads((out / "export.json").read_text())["int8"] is True
    # an export without --int8 over it leaves no stale INT8 file behind
    assert run("--format", "onnx", "--model", tiny_model_dir, "--out", out, "--force").exit_code == 0
    assert not (out / "face.int8.onnx").exists()


def test_cli_unknown_format(tmp_path, tiny_model_dir):
    line = assert_one_error_line(run("--format", "tflite", "--model", tiny_model_dir, "--out", tmp_path / "x"), "tflite")
    assert "onnx" in line
    assert not (tmp_path / "x").exists()


def test_cli_missing_model(tmp_path):
    missing = tmp_path / "no-model-here"
    line = assert_one_error_line(run("--format", "onnx", "--model", missing, "--out", tmp_path / "x"), missing)
    assert "bundled" in line
    assert not (tmp_path / "x").exists()


def test_cli_bad_out(tmp_path, tiny_model_dir):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert_one_error_line(run("--format", "onnx", "--model", tiny_model_dir, "--out", a_file), a_file)
    deep = tmp_path / "no" / "such" / "out"
    assert_one_error_line(run("--format", "onnx", "--model", tiny_model_dir, "--out", deep), deep)
    # leaves no temporary folder behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_cli_warns_about_an_untrained_model(tmp_path, untrained_model_dir):
    result = run("--format", "onnx", "--model", untrained_model_dir, "--out", tmp_path / "u")
    assert result.exit_code == 0, result.output
    assert "warning: model 'tiny-untrained' has untrained parts" in result.stderr
    assert OnnxModel(tmp_path / "u").is_trained is False
