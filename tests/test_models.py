"""Model folders (config.json + model.safetensors): round trips, strict loading, flags, fusion."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import read_config, save_tiny_model
from safetensors.torch import load_file, save_file

from emofusion.labels import EMOTIONS, SENTIMENTS
from emofusion.models import EmotionModel, ModelConfig, ModelLoadError, bundled_models, fuse, load_model


def random_faces(n: int = 3, size: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def random_mels(n: int = 3, frames: int = 101, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 64, frames, generator=torch.Generator().manual_seed(seed))


def assert_distributions(p: np.ndarray, classes: int) -> None:
    assert p.shape[-1] == classes
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-5)


# --------------------------------------------------------------------- round trips


def test_face_round_trip(tmp_path):
    d = save_tiny_model(tmp_path / "m", face={"channels": [4, 8], "dropout": 0.0, "tta_flip": True, "preprocess": {}},
                        voice=None, seed=1)
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(str(d))
    assert loaded.modalities == ["face"]
    # a second, independent load gives exactly the same numbers
    again = load_model(d)
    x = random_faces()
    a, b = loaded.face_probs(x), again.face_probs(x)
    assert_distributions(a, len(EMOTIONS))
    assert np.array_equal(a, b)
    # state dicts (BatchNorm buffers included) survive exactly
    sa, sb = loaded.state_dict(), again.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_load_gives_identical_outputs_for_each_part(tmp_path, tiny_encoder_dir):
    cfg = ModelConfig(name="rt", trained={"face": True, "voice": True, "text": True},
                      face={"channels": [4, 8], "dropout": 0.0, "tta_flip": True, "preprocess": {}},
                      voice={"channels": [4, 8], "dropout": 0.0, "preprocess": {}},
                      text={"encoder": str(tiny_encoder_dir), "embed_dim": 16, "hidden": 8, "dropout": 0.0,
                            "use_context": True, "context_turns": 2, "max_length": 32})
    torch.manual_seed(7)
    model = EmotionModel(cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    model.save_pretrained(tmp_path / "rt")
    loaded = load_model(tmp_path / "rt")
    assert loaded.modalities == ["face", "voice", "text"]

    faces, mels = random_faces(), random_mels(frames=57)
    assert np.array_equal(model.face_probs(faces), loaded.face_probs(faces))
    assert np.array_equal(model.voice_probs(mels), loaded.voice_probs(mels))
    texts, contexts = ["i am so happy today", "this is terrible", ""], ["", "you are here", "what"]
    e0, s0 = model.text_probs(texts, contexts)
    e1, s1 = loaded.text_probs(texts, contexts)
    assert np.array_equal(e0, e1) and np.array_equal(s0, s1)
    assert_distributions(e1, len(EMOTIONS))
    assert_distributions(s1, len(SENTIMENTS))
    # the config round-trips too
    assert loaded.config.to_dict() == cfg.to_dict()


def test_voice_accepts_any_length(tiny_model_dir):
    model = load_model(tiny_model_dir, load_text_encoder=False)
    for frames in (20, 101, 333):
        assert_distributions(model.voice_probs(random_mels(2, frames)), len(EMOTIONS))


def test_face_flip_tta_is_the_mean_of_both_logits(tiny_model_dir):
    model = load_model(tiny_model_dir, load_text_encoder=False)
    x = random_faces(2)
    with torch.no_grad():
        logits = (model.face(x) + model.face(torch.flip(x, dims=[-1]))) / 2
    np.testing.assert_allclose(model.face_probs(x), torch.softmax(logits, -1).numpy(), atol=1e-6)
    # flip TTA makes the prediction mirror-invariant
    np.testing.assert_allclose(model.face_probs(x), model.face_probs(torch.flip(x, dims=[-1])), atol=1e-6)


def test_prepared_face_net_matches_the_plain_one(tiny_model_dir):
    # prepare_inference folds BatchNorm and makes the face net channels-last: same probabilities
    plain = load_model(tiny_model_dir, load_text_encoder=False)
    prepared = load_model(tiny_model_dir, load_text_encoder=False).prepare_inference()
    for n in (1, 3, 8):
        x = random_faces(n)
        np.testing.assert_allclose(prepared.face_probs(x), plain.face_probs(x), atol=1e-5)


def test_text_context_empty_is_zero_context(tiny_model_dir):
    model = load_model(tiny_model_dir)
    texts = ["i am so happy", "this is bad"]
    none_ctx = model.text_probs(texts)
    empty_ctx = model.text_probs(texts, ["", ""])
    np.testing.assert_allclose(none_ctx[0], empty_ctx[0], atol=1e-6)
    with_ctx = model.text_probs(texts, ["you hate it", "wow"])
    assert not np.allclose(with_ctx[0], none_ctx[0], atol=1e-7)  # the context reaches the heads


# ------------------------------------------------------------- what is stored where


def test_encoder_weights_are_not_in_model_safetensors(tiny_model_dir, tiny_encoder_dir):
    state = load_file(str(tiny_model_dir / "model.safetensors"))
    prefixes = {k.split(".")[0] for k in state}
    assert prefixes == {"face", "voice", "text"}
    assert not [k for k in state if "embeddings" in k or "encoder" in k or "attention" in k]
    model = load_model(tiny_model_dir)
    assert set(state) == set(model.state_dict())  # the encoder is not a registered submodule
    # the encoder's own weights live only in its folder
    encoder_state = load_file(str(tiny_encoder_dir / "model.safetensors"))
    assert any("embeddings" in k for k in encoder_state)
    cfg = read_config(tiny_model_dir)
    assert cfg["text"]["encoder"] == str(tiny_encoder_dir)


def test_text_encoder_is_loaded_lazily(tiny_model_dir):
    model = load_model(tiny_model_dir, load_text_encoder=False)
    assert model._encoder is None
    emo, sent = model.text_probs(["hello"])  # loads the encoder on first use
    assert model._encoder is not None and model.encoder.dim == 16
    assert emo.shape == (1, len(EMOTIONS)) and sent.shape == (1, len(SENTIMENTS))


def test_config_json_contents(tiny_model_dir):
    cfg = read_config(tiny_model_dir)
    assert cfg["format"] == "emofusion" and cfg["format_version"] == 1
    assert cfg["name"] == "tiny" and cfg["labels"] == list(EMOTIONS)
    assert cfg["sentiment_labels"] == list(SENTIMENTS)
    assert cfg["face"]["channels"] == [4, 8] and cfg["voice"]["channels"] == [4, 8]
    assert cfg["trained"] == {"face": True, "voice": True, "text": True}


# -------------------------------------------------------------------- strict loading


@pytest.fixture()
def face_voice_dir(tmp_path):
    return save_tiny_model(tmp_path / "fv", seed=3)


def test_weights_not_matching_the_config(face_voice_dir):
    cfg = read_config(face_voice_dir)
    cfg["face"]["channels"] = [4, 16]
    (face_voice_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="weights do not match the config") as info:
        load_model(face_voice_dir)
    assert "model.safetensors" in str(info.value)


def test_weights_with_missing_or_extra_tensors(face_voice_dir):
    path = face_voice_dir / "model.safetensors"
    state = load_file(str(path))
    extra = dict(state, **{"face.surplus": torch.zeros(3)})
    save_file(extra, str(path))
    with pytest.raises(ModelLoadError, match="do not match"):
        load_model(face_voice_dir)
    missing = {k: v for k, v in state.items() if not k.startswith("voice.")}
    save_file(missing, str(path))
    with pytest.raises(ModelLoadError, match="do not match"):
        load_model(face_voice_dir)
    # a config without a part the weights hold is just as strict
    save_file(state, str(path))
    cfg = read_config(face_voice_dir)
    cfg["voice"] = None
    (face_voice_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="do not match"):
        load_model(face_voice_dir)


def test_unreadable_weights(face_voice_dir):
    (face_voice_dir / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ModelLoadError, match="unreadable weights"):
        load_model(face_voice_dir)


def test_missing_config_json(face_voice_dir):
    (face_voice_dir / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(face_voice_dir)


def test_missing_weights(face_voice_dir):
    (face_voice_dir / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no model.safetensors"):
        load_model(face_voice_dir)


def test_invalid_or_foreign_config(face_voice_dir):
    cfg_path = face_voice_dir / "config.json"
    cfg_path.write_text("{ not json")
    with pytest.raises(ModelLoadError, match="invalid config"):
        load_model(face_voice_dir)
    cfg_path.write_text(json.dumps({"architectures": ["BertModel"], "hidden_size": 16}))  # a transformers config
    with pytest.raises(ModelLoadError, match="not an emofusion config"):
        load_model(face_voice_dir)


def test_newer_format_version_is_refused(face_voice_dir):
    cfg = read_config(face_voice_dir)
    cfg["format_version"] = 99
    (face_voice_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="newer"):
        load_model(face_voice_dir)


@pytest.mark.parametrize("name", ["no-such-model", "/no/such/folder", "./missing-model-dir", "~/missing-emofusion-model"])
def test_unknown_name_names_the_bundled_models(name):
    with pytest.raises(ModelLoadError) as info:
        load_model(name)
    message = str(info.value)
    assert "bundled" in message and repr(name) in message
    bundled = bundled_models()
    expected = ", ".join(bundled) or "none"
    assert f"({expected})" in message
    assert "\n" not in message


def test_encoder_dimension_mismatch(tmp_path, tiny_encoder_dir):
    # heads saved for 32-d embeddings (weights match the config) over a 16-d encoder
    text = {"encoder": str(tiny_encoder_dir), "embed_dim": 32, "hidden": 8, "dropout": 0.0}
    d = EmotionModel(ModelConfig(name="dims", text=text), load_text_encoder=False).save_pretrained(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="16-d embeddings"):
        load_model(d)
    # without the encoder the weights themselves load
    assert load_model(d, load_text_encoder=False).text is not None


def test_missing_encoder_folder(tmp_path, tiny_encoder_dir):
    enc = tmp_path / "enc"
    shutil.copytree(tiny_encoder_dir, enc)
    d = save_tiny_model(tmp_path / "m", enc, face=None, voice=None)
    (enc / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(d)
    # without the encoder the heads still load (the pipeline loads the encoder only for text)
    assert load_model(d, load_text_encoder=False).modalities == ["text"]


# ----------------------------------------------------------------------- trained flags


def test_trained_flags(tmp_path, tiny_model_dir, untrained_model_dir):
    assert load_model(tiny_model_dir, load_text_encoder=False).is_trained is True
    untrained = load_model(untrained_model_dir, load_text_encoder=False)
    assert untrained.is_trained is False
    assert untrained.config.trained == {"face": False, "voice": False, "text": False}

    partly = save_tiny_model(tmp_path / "partly", trained={"face": True})  # voice flag missing
    m = load_model(partly)
    assert m.modalities == ["face", "voice"] and m.is_trained is False
    assert read_config(partly)["trained"] == {"face": True}

    face_only = save_tiny_model(tmp_path / "face_only", voice=None, trained={"face": True, "voice": False})
    assert load_model(face_only).is_trained is True  # only the parts the model has count

    assert EmotionModel(ModelConfig(trained={"face": True})).is_trained is False  # no parts at all


# ------------------------------------------------------------------------------ fusion


def test_fuse_by_hand():
    face = np.array([0.7, 0.2, 0.1])
    voice = np.array([0.2, 0.5, 0.3])
    fused = fuse({"face": face, "voice": voice, "text": None}, {"face": 2.0, "voice": 1.0})
    expected = (face**2 * voice) ** (1 / 3)
    expected /= expected.sum()
    np.testing.assert_allclose(fused, expected, atol=1e-12)
    # equal weights: the normalised geometric mean
    plain = fuse({"face": face, "voice": voice}, {})
    g = np.sqrt(face * voice)
    np.testing.assert_allclose(plain, g / g.sum(), atol=1e-12)


def test_fuse_absent_is_absent():
    voice = np.array([0.1, 0.6, 0.3])
    # one present modality: its own distribution, not mixed with a uniform or zeros
    np.testing.assert_allclose(fuse({"face": None, "voice": voice, "text": None}, {"face": 3.0}), voice, atol=1e-12)
    assert fuse({"face": None, "voice": None}, {}) is None
    assert fuse({}, {}) is None
    # a zero weight removes a modality
    face = np.array([0.8, 0.1, 0.1])
    np.testing.assert_allclose(fuse({"face": face, "voice": voice}, {"face": 0.0}), voice, atol=1e-12)


def test_fuse_batches_and_zeros():
    a = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    b = np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]])
    out = fuse({"face": a, "voice": b}, {})
    assert out.shape == (2, 3) and np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    for i in range(2):
        np.testing.assert_allclose(out[i], fuse({"face": a[i], "voice": b[i]}, {}))


def test_model_fuse_uses_config_weights(tmp_path):
    d = save_tiny_model(tmp_path / "w")
    cfg = read_config(d)
    cfg["fusion"] = {"type": "weighted_geometric", "weights": {"face": 3.0, "voice": 1.0}}
    (d / "config.json").write_text(json.dumps(cfg))
    model = load_model(d)
    face = np.full(7, 1 / 7)
    face[1] = 0.4
    face /= face.sum()
    voice = np.linspace(1, 2, 7) / np.linspace(1, 2, 7).sum()
    expected = np.exp((3 * np.log(face) + np.log(voice)) / 4)
    np.testing.assert_allclose(model.fuse({"face": face, "voice": voice, "text": None}), expected / expected.sum())


def test_text_context_is_zero_when_absent_and_encoded_when_given(tiny_model_dir):
    import numpy as np
    import torch

    from emofusion.models import load_model

    model = load_model(tiny_model_dir)
    emo, sent = model.text_probs(["i am happy", "so sad"], ["", "i hate it"])
    alone_emo, alone_sent = model.text_probs(["i am happy"])
    np.testing.assert_allclose(emo[0], alone_emo[0], atol=1e-6)
    np.testing.assert_allclose(sent[0], alone_sent[0], atol=1e-6)
    with torch.inference_mode():  # the second row used the encoded context, as the heads see it
        emb = model.encoder.encode(["so sad"])
        ctx = model.encoder.encode(["i hate it"])
        ref_emo, _ = model.text(emb, ctx)
    np.testing.assert_allclose(emo[1], torch.softmax(ref_emo, -1).numpy()[0], atol=1e-6)
