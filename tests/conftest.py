import os
import sys

# Test helpers (media_factory, ...) live beside the tests.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# A small lowercase vocabulary for the tiny BERT encoder the tests build (no downloads).
TINY_WORDS = (
    "i am so happy today this is great wonderful love it good fine okay "
    "sad bad terrible angry hate awful scared afraid fear surprise wow what "
    "the a and you we they he she not very really no yes now here there "
    "is was be of to in on"
).split()


def build_tiny_encoder(directory: Path) -> Path:
    """A random 16-d BERT encoder with its tokenizer, saved as a transformers folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(TINY_WORDS)]
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(directory)
    BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True).save_pretrained(directory)
    return directory


def tiny_parts(encoder_dir: Path | None = None) -> dict:
    """Config parts (face / voice / text) for a tiny random model."""
    parts = {
        "face": {"channels": [4, 8], "dropout": 0.0, "tta_flip": True, "preprocess": {}},
        "voice": {"channels": [4, 8], "dropout": 0.0, "preprocess": {}},
    }
    if encoder_dir is not None:
        parts["text"] = {"encoder": str(encoder_dir), "embed_dim": 16, "hidden": 8, "dropout": 0.0,
                         "use_context": True, "context_turns": 2, "max_length": 32}
    return parts


def save_tiny_model(directory: Path, encoder_dir: Path | None = None, *, name: str = "tiny",
                    trained: dict | None = None, seed: int = 0, **overrides) -> Path:
    """Build a tiny random EmotionModel and save it with save_pretrained; returns the folder."""
    import torch

    from emofusion.models import EmotionModel, ModelConfig

    parts = {**tiny_parts(encoder_dir), **overrides}
    parts = {k: v for k, v in parts.items() if v is not None}
    if trained is None:
        trained = {m: True for m in ("face", "voice", "text") if m in parts}
    torch.manual_seed(seed)
    model = EmotionModel(ModelConfig(name=name, version="0.0.1", trained=trained, **parts))
    # BatchNorm running statistics away from their defaults, so a lost buffer would show.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.2)
    model.save_pretrained(directory)
    return Path(directory)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A random 16-d BERT sentence encoder folder (model + tokenizer)."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_encoder_dir) -> Path:
    """A tiny face + voice + text model folder (config.json + model.safetensors), all parts marked trained."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"), tiny_encoder_dir)


@pytest.fixture(scope="session")
def untrained_model_dir(tmp_path_factory, tiny_encoder_dir) -> Path:
    """The same tiny model, but its config says no part is trained."""
    return save_tiny_model(tmp_path_factory.mktemp("untrained_model"), tiny_encoder_dir, name="tiny-untrained",
                           trained={"face": False, "voice": False, "text": False})


def read_config(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())
