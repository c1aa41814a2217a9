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


def build_tiny_encoder(directory: Path, words: list[str] = TINY_WORDS) -> Path:
    """A random 16-d BERT encoder with its tokenizer (vocabulary: `words`), saved as a transformers folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(words)]
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


# ------------------------------------------------------------------ JSON contract v1 (1.1)

CONTRACT_TOP_KEYS = {"schema_version", "model", "media", "labels", "options", "segments", "people", "summary"}
CONTRACT_SEGMENT_KEYS = {"start", "end", "face", "voice", "text", "fused", "speaker"}
CONTRACT_PERSON_KEYS = {"id", "first_seen", "last_seen", "frames", "box", "box_time", "thumbnail", "windows", "summary"}
CONTRACT_PERSON_WINDOW_KEYS = {"start", "end", "face", "mouth_motion", "speaking", "fused"}
CONTRACT_SUMMARY_KEYS = {"probs", "top", "score", "sentiment", "sentiment_source", "windows"}


def assert_distribution(probs: dict, labels: list[str]) -> None:
    """`probs` is a distribution over exactly `labels`: values in [0, 1], summing to 1 (1e-4)."""
    assert isinstance(probs, dict) and list(probs) == list(labels), (list(probs), labels)
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in probs.values()), probs
    assert abs(sum(probs.values()) - 1.0) <= 1e-4, sum(probs.values())


def assert_contract_v1(d: dict) -> None:
    """Pin the analysis JSON (schema 1.1: 1.0 and `people`, each segment's `speaker`) exactly."""
    assert set(d) == CONTRACT_TOP_KEYS
    assert d["schema_version"] == "1.1"
    assert {"name", "version", "trained"} <= set(d["model"])
    assert isinstance(d["model"]["name"], str) and isinstance(d["model"]["version"], str)
    assert isinstance(d["model"]["trained"], bool)
    media = d["media"]
    assert {"duration", "has_video", "has_audio"} <= set(media)
    assert isinstance(media["duration"], float) and media["duration"] >= 0
    assert isinstance(media["has_video"], bool) and isinstance(media["has_audio"], bool)
    if "transcript" in media:  # where the words came from (added within 1.0)
        words = media["transcript"]
        assert set(words) == {"source", "model", "reason"} and words["source"] in ("given", "asr", "none")
        assert (words["reason"] is None) == (words["source"] != "none")
    labels = d["labels"]
    assert isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)
    assert isinstance(d["segments"], list)
    for s in d["segments"]:
        assert set(s) == CONTRACT_SEGMENT_KEYS
        assert isinstance(s["start"], float) and isinstance(s["end"], float) and 0 <= s["start"] < s["end"]
        if s["face"] is not None:
            assert set(s["face"]) == {"probs", "faces", "box", "frames"}
            assert_distribution(s["face"]["probs"], labels)
            assert isinstance(s["face"]["faces"], int) and s["face"]["faces"] >= 1
            assert len(s["face"]["box"]) == 4 and all(isinstance(v, int) for v in s["face"]["box"])
        if s["voice"] is not None:
            assert set(s["voice"]) == {"probs", "speech_fraction"}
            assert_distribution(s["voice"]["probs"], labels)
        if s["text"] is not None:
            assert set(s["text"]) == {"probs", "text", "sentiment"}
            assert_distribution(s["text"]["probs"], labels)
            assert isinstance(s["text"]["text"], str) and s["text"]["text"]
            assert abs(sum(s["text"]["sentiment"].values()) - 1.0) <= 1e-4
        present = [m for m in ("face", "voice", "text") if s[m] is not None]
        if present:
            assert set(s["fused"]) == {"probs", "top", "score"}
            assert_distribution(s["fused"]["probs"], labels)
            assert s["fused"]["top"] == max(s["fused"]["probs"], key=s["fused"]["probs"].get)
            assert s["fused"]["score"] == s["fused"]["probs"][s["fused"]["top"]]
        else:
            assert s["fused"] is None
    ids = [p["id"] for p in d["people"]]
    for s in d["segments"]:
        assert s["speaker"] in (None, "off_screen") or s["speaker"].startswith("p")
        if s["speaker"] is not None:
            assert s["voice"] is not None  # only a window with speech has a speaker
    assert len(d["people"]) <= 32 and ids == sorted(ids, key=lambda i: int(i[1:]))
    for p in d["people"]:
        assert set(p) == CONTRACT_PERSON_KEYS and p["id"].startswith("p")
        assert 0 <= p["first_seen"] < p["last_seen"] and p["frames"] >= 1 and len(p["box"]) == 4
        assert p["thumbnail"] is None or p["thumbnail"].startswith("data:image/jpeg;base64,")
        for w in p["windows"]:
            assert set(w) == CONTRACT_PERSON_WINDOW_KEYS
            assert set(w["face"]) == {"probs", "box", "frames"}
            assert_distribution(w["face"]["probs"], labels)
            assert isinstance(w["speaking"], bool)
            assert w["mouth_motion"] is None or isinstance(w["mouth_motion"], float)
        assert set(p["summary"]) == {"probs", "top", "score", "windows", "speaking_windows"}
    if "people" in d["media"]:
        info = d["media"]["people"]
        assert set(info) == {"detector", "faces", "max_faces", "left_out", "speaker_attribution"}
        assert set(info["speaker_attribution"]) == {"used", "reason"}
    summary = d["summary"]
    assert set(summary) == CONTRACT_SUMMARY_KEYS
    if summary["probs"] is not None:
        assert_distribution(summary["probs"], labels)
        assert summary["top"] == max(summary["probs"], key=summary["probs"].get)
        assert summary["score"] == summary["probs"][summary["top"]]
        assert abs(sum(summary["sentiment"].values()) - 1.0) <= 1e-4
    else:
        assert summary["top"] is None and summary["score"] is None


def tiny_voice_recipe(path: Path, data: Path, model_lines: str = "", augment: str = "") -> Path:
    """Write a 1-epoch voice recipe (two speaker folds, a 2-block CNN) on a tiny RAVDESS layout at
    `data`; `model_lines` are added to its [model] table, `augment` is its [augment] table's body."""
    model_extra = f"{model_lines}\n" if model_lines else ""
    augment_table = f"[augment]\n{augment}\n" if augment else ""
    path.write_text(f"""
name = "tiny-voice"
task = "voice"
[data]
sources = [{{ dataset = "ravdess", root = "{data}" }}]
folds = 2
[model]
channels = [4, 8]
segment_seconds = 0.5
{model_extra}{augment_table}[optim]
epochs = 1
batch_size = 4
""")
    return path
