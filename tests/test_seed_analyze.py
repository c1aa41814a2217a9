"""A multimodal seed checkpoint (SeedModel.save_pretrained) wherever a model path is accepted:
`emofusion analyze` / `batch --model DIR`, `Analyzer(DIR)`, the service."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import assert_contract_v1
from media_factory import make_clip, make_face_image
from seed_support import multimodal_recipe
from serve_support import make_settings

from emofusion.cli import app
from emofusion.data.aligned import ALIGNED_LABELS, make_aligned_dataset
from emofusion.media import probe, read_audio
from emofusion.models import ModelLoadError, load_model
from emofusion.models.seed import SeedModel
from emofusion.models.seed.preprocess import audio_samples, clip_frames, fit_audio, normalize_video
from emofusion.models.seed_backend import SeedBackend
from emofusion.analysis import Analyzer, make_windows
from emofusion.serve.app import create_app
from emofusion.serve.config import _default_model

runner = CliRunner()
PRE = {"frames": 4, "size": 16, "audio_seconds": 0.5}
TEXT = "i am so happy today"


def save_seed(directory: Path, encoders: dict, *, fusion: str = "gated", sentiment: bool = True, seed: int = 0) -> Path:
    """A tiny random seed model saved as training saves one (labels, preprocess, trained, extra)."""
    torch.manual_seed(seed)
    heads = {"emotion": len(ALIGNED_LABELS), **({"sentiment": 3} if sentiment else {})}
    model = SeedModel({"encoders": encoders, "fusion": {"type": fusion, "dim": 8, "heads": 2}, "heads": heads})
    model.config.update(labels=list(ALIGNED_LABELS), preprocess=dict(PRE), trained=True, extra={"recipe": "tiny-seed"})
    model.save_pretrained(directory)
    return Path(directory)


VIDEO = {"type": "r3d18", "config": {"width": 4}, "proj_dim": 8}
AUDIO = {"type": "mel_cnn", "config": {"channels": [4, 8], "dim": 8}}


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory, tiny_encoder_dir) -> Path:
    """Video + audio + text (a tiny BERT with its tokenizer), gated fusion, emotion and sentiment heads."""
    text = {"type": "bert", "pretrained": str(tiny_encoder_dir), "proj_dim": 8}
    return save_seed(tmp_path_factory.mktemp("seed"), {"video": VIDEO, "audio": AUDIO, "text": text})


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", duration=3.0, width=160, height=128,
                     face=make_face_image(80), modulate=True)


def direct_probs(model: SeedModel, clip: Path, start: float, end: float, keep: set[str],
                 text: str = TEXT) -> np.ndarray:
    """The seed model called directly on inputs made by training's functions for [start, end)."""
    batch = {}
    if "video" in keep:
        batch["video"] = {"video": normalize_video(clip_frames(clip, PRE["frames"], PRE["size"], start, end)[None])}
    if "audio" in keep:
        wav, n = fit_audio(read_audio(clip, start, end), audio_samples(PRE["audio_seconds"]))
        batch["audio"] = {"audio": torch.from_numpy(wav)[None], "lengths": torch.tensor([n])}
    if "text" in keep:
        batch["text"] = model.encoders["text"].tokenize([text])
    with torch.no_grad():
        return torch.softmax(model(batch).logits["emotion"], dim=-1)[0].numpy()


def vector(probs: dict) -> np.ndarray:
    return np.array([probs[label] for label in ALIGNED_LABELS])


def test_analyze_cli_matches_the_seed_model_called_directly(seed_dir, clip):
    result = runner.invoke(app, ["analyze", str(clip), "--model", str(seed_dir), "--json", "-", "--text", TEXT])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert_contract_v1(d)
    assert d["labels"] == list(ALIGNED_LABELS)
    assert d["model"] == {"name": "tiny-seed", "version": "0.0.0", "trained": True,
                          "parts": {"face": True, "voice": True, "text": True}, "backend": "seed"}
    model = SeedModel.from_pretrained(seed_dir)
    windows = make_windows(probe(clip).duration, 2.0, 1.0)
    assert len(d["segments"]) == len(windows) >= 2
    for w, s in zip(windows[:2], d["segments"]):  # full windows: every modality present
        assert s["face"]["box"] == [0, 0, 160, 128] and s["face"]["frames"] == PRE["frames"]
        assert s["text"]["text"] == TEXT and s["voice"]["speech_fraction"] > 0
        fused = direct_probs(model, clip, w.start, w.end, {"video", "audio", "text"})
        assert np.abs(vector(s["fused"]["probs"]) - fused).max() < 1e-5
        # each modality's field is the same model given that modality alone
        for field, name in (("face", "video"), ("voice", "audio"), ("text", "text")):
            alone = direct_probs(model, clip, w.start, w.end, {name})
            assert np.abs(vector(s[field]["probs"]) - alone).max() < 1e-5, field
    assert d["summary"]["sentiment_source"] == "text"


def test_seed_checkpoint_loads_as_a_seed_backend(seed_dir):
    loaded = load_model(seed_dir)
    assert isinstance(loaded, SeedBackend) and loaded.modalities == ["face", "voice", "text"]
    assert loaded.face is None and loaded.voice is None and loaded.text is None  # no separate nets
    assert loaded.is_trained and loaded.labels == list(ALIGNED_LABELS)


def test_service_answers_invocations_with_a_seed_model(tmp_path, seed_dir, clip):
    assert _default_model({"SM_MODEL_DIR": str(seed_dir)}) == str(seed_dir)  # SageMaker's model folder
    settings = make_settings(tmp_path / "home", seed_dir)
    with TestClient(create_app(settings), base_url="https://testserver") as client:  # the app loads the folder
        ping = client.get("/ping")
        assert ping.status_code == 200 and ping.json()["model"]["name"] == "tiny-seed"
        assert ping.json()["model"]["modalities"] == ["face", "voice", "text"]
        r = client.post("/invocations", files={"video": ("v.mp4", clip.read_bytes(), "video/mp4")},
                        data={"transcript": TEXT})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["label"] for e in body["emotions"]] == sorted(ALIGNED_LABELS, key=lambda k: -body["summary"]["probs"][k])
    assert abs(sum(e["score"] for e in body["emotions"]) - 1) < 1e-3
    seg = body["segments"][0]
    assert seg["face"] and seg["voice"] and seg["text"] and seg["fused"]


def test_missing_modalities_still_analyse(tmp_path, seed_dir, clip):
    model = SeedModel.from_pretrained(seed_dir)
    # an audio file: no picture, no transcript -> the model on the audio alone
    wav = make_clip(tmp_path / "a.wav", duration=2.0, with_video=False, audio_codec="pcm_s16le", container="wav",
                    modulate=True)
    d = Analyzer(seed_dir).analyze(str(wav)).to_dict()
    assert_contract_v1(d)
    s = d["segments"][0]
    assert s["face"] is None and s["text"] is None and s["voice"] is not None
    assert np.abs(vector(s["fused"]["probs"]) - direct_probs(model, wav, 0.0, 2.0, {"audio"})).max() < 1e-5
    assert d["summary"]["sentiment_source"] == "emotion"
    # a subset of the model's modalities by option
    d = Analyzer(seed_dir, modalities=["face"]).analyze(str(clip), text=TEXT).to_dict()
    assert_contract_v1(d)
    assert all(s["voice"] is None and s["text"] is None and s["face"] for s in d["segments"])
    # a checkpoint without a video encoder (nor a sentiment head) on a video with a transcript
    audio_only = save_seed(tmp_path / "audio-only", {"audio": AUDIO}, fusion="concat", sentiment=False)
    d = Analyzer(audio_only).analyze(str(clip), text=TEXT).to_dict()
    assert_contract_v1(d)
    assert d["model"]["parts"] == {"voice": True}
    assert all(s["face"] is None and s["text"] is None and s["voice"] for s in d["segments"])
    # a silent video: no voice either, so no window has anything for the model
    silent = make_clip(tmp_path / "silent.mp4", duration=2.0, silent=True)
    d = Analyzer(audio_only).analyze(str(silent)).to_dict()
    assert_contract_v1(d)
    assert d["segments"][0]["fused"] is None and d["summary"]["top"] is None


def test_unknown_or_broken_model_folders_are_clear_errors(tmp_path, seed_dir, clip):
    import shutil

    foreign = tmp_path / "foreign"
    shutil.copytree(seed_dir, foreign)
    cfg = json.loads((foreign / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**cfg, "format": "someone-else/3"}))
    with pytest.raises(ModelLoadError, match="unknown format 'someone-else/3'"):
        load_model(foreign)
    result = runner.invoke(app, ["analyze", str(clip), "--model", str(foreign), "--json", "-"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.count("\n") == 1 and "unknown format" in result.output
    broken = tmp_path / "broken"
    shutil.copytree(seed_dir, broken)
    (broken / "config.json").write_text(json.dumps({**cfg, "heads": {"emotion": 5}}))  # weights do not match
    with pytest.raises(ModelLoadError, match="cannot load the seed model"):
        load_model(broken)
    (broken / "config.json").write_text(json.dumps({**cfg, "labels": ["a", "b"]}))
    with pytest.raises(ModelLoadError, match="4 classes"):
        load_model(broken)
    result = runner.invoke(app, ["export", "--format", "onnx", "--model", str(seed_dir), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "seed model" in result.output and "Traceback" not in result.output


@pytest.mark.slow  # trains a checkpoint, then a batch run over it
def test_a_trained_checkpoint_through_emofusion_batch(tmp_path):
    data = tmp_path / "aligned"
    make_aligned_dataset(data, per_class=2, speakers=2, seed=3, size=16, fps=8, seconds=0.5)
    recipe = multimodal_recipe(tmp_path / "mm.toml", data, fusion="xattn", name="mm-analyze", val_speaker="spk01",
                               modality_dropout=0.0, epochs=1, batch_size=2)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    clips = sorted(data.glob("clip_*.mp4"))[:2]
    result = runner.invoke(app, ["batch", *map(str, clips), "--model", str(out / "best"), "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("error" not in row for row in rows)
    for row in rows:
        row.pop("input")
        assert_contract_v1(row)
        assert row["model"]["name"] == "mm-analyze" and row["model"]["trained"] is True
        assert row["segments"][0]["face"] is not None and row["segments"][0]["fused"] is not None
