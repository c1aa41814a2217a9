"""`emofusion info`: what the installation offers, from the registries themselves."""

import json

from typer.testing import CliRunner

from emofusion.cli import app


def test_info_json_lists_every_registry():
    from emofusion.data.registry import DATASETS
    from emofusion.models.seed import ENCODERS, FUSIONS

    r = CliRunner().invoke(app, ["info", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    listed = [n for names in data["encoders"].values() for n in names]
    assert sorted(listed) == sorted(ENCODERS) and {"r3d18", "hubert", "bert"} <= set(listed)
    assert data["fusion"] == ["concat", "gated", "late", "xattn"] == sorted(FUSIONS)
    assert set(data["datasets"]) == set(DATASETS) and data["datasets"]["fer2013"] == "face"
    assert data["bundled_models"]["default"]["parts"] == {"face": True, "voice": True, "text": True}
    assert data["backends"] == ["auto", "torch", "onnx"] and data["heads"] == ["emotion", "sentiment"]
    assert all(isinstance(v, bool) for v in data["extras"].values())


def test_info_text():
    r = CliRunner().invoke(app, ["info"])
    assert r.exit_code == 0
    assert "video encoders: r3d18, resnet18_frames, videomae" in r.stdout
    assert "bundled model: default" in r.stdout and "fusion: concat, gated, late, xattn" in r.stdout


def test_info_names_the_speech_model_or_why_there_is_none(monkeypatch, tmp_path):
    from emofusion.transcription import DEFAULT_REGISTRY_MODEL, ENV_MODEL

    monkeypatch.delenv(ENV_MODEL, raising=False)
    monkeypatch.delenv("EMOFUSION_WHISPER_MODEL", raising=False)
    data = json.loads(CliRunner().invoke(app, ["info", "--json"]).stdout)
    assert data["speech_recognition"]["model"] == DEFAULT_REGISTRY_MODEL
    assert data["speech_recognition"]["source"] == "registry"
    monkeypatch.setenv(ENV_MODEL, str(tmp_path / "missing"))
    r = CliRunner().invoke(app, ["info"])
    assert r.exit_code == 0 and f"speech recognition: none (ASR model folder {tmp_path / 'missing'} does not exist)" in r.stdout
