"""Training through the real loop (Lightning Fabric) on tiny generated data, for each task."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_voice_recipe
from support import noise, ravdess_grid, write_goemotions, write_meld_csv, write_ravdess_wavs

from emofusion.cli import app
from emofusion.labels import EMOTIONS
from emofusion.models import load_model
from emofusion.train.loop import class_weights, lr_lambda
from emofusion.train.recipe import RecipeError, load_recipe

runner = CliRunner()


def _image_folder(root: Path, per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("happy", "sad", "angry"):
            d = root / split / label
            d.mkdir(parents=True)
            for i in range(per_class):
                cv2.imwrite(str(d / f"{i}.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    return root


def _ravdess(root: Path) -> Path:
    """4 actors x 3 emotions x 2 takes of 1 s of noise."""
    rng = np.random.default_rng(1)
    return write_ravdess_wavs(root, ravdess_grid(), lambda actor, emotion, rep: noise(1.0, rng))


def _meld(root: Path) -> Path:
    """train: 3 dialogues, dev: 1, each the same four of Ross's lines."""
    rows = [
        ("the cat is happy", "joy", "positive"),
        ("the dog is sad", "sadness", "negative"),
        ("i am angry at you", "anger", "negative"),
        ("what a nice day", "neutral", "neutral"),
    ]
    root.mkdir(parents=True)
    for split, n_dialogues in (("train", 3), ("dev", 1)):
        write_meld_csv(root / f"{split}_sent_emo.csv",
                       [(text, "Ross", emo, sent, d, u) for d in range(n_dialogues) for u, (text, emo, sent) in enumerate(rows)])
    return root


def _recipe(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def _text_recipe(tmp_path: Path, encoder_dir: Path, model_lines: str) -> Path:
    """A 2-epoch text recipe on a tiny MELD layout; `model_lines` add to its [model] table."""
    data = _meld(tmp_path / "meld")
    return _recipe(tmp_path / "text.toml", f"""
name = "tiny-text"
task = "text"
[data]
dataset = "meld"
root = "{data}"
[model]
encoder = "{encoder_dir}"
hidden = 8
{model_lines}
[optim]
epochs = 2
batch_size = 4
select_on = "weighted_f1"
""")


def test_lr_schedule_warms_up_then_decays():
    f = lr_lambda(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5, abs=1e-6)
    assert f(100) == pytest.approx(0.0, abs=1e-9)


def test_class_weights_are_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    # counts 3, 1, 0 -> total/count/present = 4/3/2, 4/1/2, absent class weight 0
    assert w.tolist() == pytest.approx([4 / 6, 2.0, 0.0])


@pytest.mark.slow  # two trainings through the real loop
def test_face_one_epoch_then_resume(tmp_path):
    data = _image_folder(tmp_path / "faces")
    recipe = _recipe(tmp_path / "face.toml", f"""
name = "tiny-face"
task = "face"
[data]
root = "{data}"
[model]
channels = [4, 8]
dropout = 0.0
preprocess = {{ size = 48, input_size = 40 }}
[optim]
epochs = 1
batch_size = 4
balance = "sampler"
""")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["best_epoch"] == 1 and len(summary["history"]) == 1
    assert summary["data"]["train_n"] == 9 and summary["data"]["val_n"] == 9
    model = load_model(out / "best")
    assert model.config.trained == {"face": True}
    assert model.config.face["preprocess"]["input_size"] == 40
    assert (out / "best" / "val_report.json").is_file()
    assert any((out / "tensorboard").iterdir())
    # resume continues from the last epoch with the saved optimiser state
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out), "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [1, 2]


def test_face_fine_tuning_starts_from_another_models_weights(tmp_path):
    data = _image_folder(tmp_path / "faces")

    def face_recipe(name: str, model_lines: str, lr: float) -> Path:
        return _recipe(tmp_path / f"{name}.toml", f"""
name = "tiny-face"
task = "face"
[data]
root = "{data}"
[model]
{model_lines}
dropout = 0.0
preprocess = {{ size = 48, input_size = 40 }}
[optim]
epochs = 1
batch_size = 4
lr = {lr}
""")

    first = tmp_path / "first"
    result = runner.invoke(app, ["train", str(face_recipe("first", "channels = [4, 8]", 0.01)), "--out", str(first)])
    assert result.exit_code == 0, result.output
    # lr 0: the second run keeps the weights it was given, so they must be the first run's
    second = tmp_path / "second"
    recipe = face_recipe("second", f'channels = [4, 8]\ninit_from = "{first / "best"}"', 0.0)
    result = runner.invoke(app, ["train", str(recipe), "--out", str(second)])
    assert result.exit_code == 0, result.output
    assert "initialised the face part from" in result.output
    before, after = load_model(first / "best").face.state_dict(), load_model(second / "last").face.state_dict()
    conv = [k for k in before if k.endswith("weight") and before[k].ndim == 4]
    assert conv and all(torch.equal(before[k], after[k]) for k in conv)
    fresh = tmp_path / "fresh"
    result = runner.invoke(app, ["train", str(face_recipe("fresh", "channels = [4, 8]", 0.0)), "--out", str(fresh)])
    assert not all(torch.equal(before[k], load_model(fresh / "last").face.state_dict()[k]) for k in conv)
    # another architecture, or no such model: a one-line error, exit 2
    for lines, message in ((f'channels = [4, 16]\ninit_from = "{first / "best"}"', "does not match"),
                           (f'channels = [4, 8]\ninit_from = "{tmp_path / "nowhere"}"', "init_from")):
        result = runner.invoke(app, ["train", str(face_recipe("bad", lines, 0.01)), "--out", str(tmp_path / "bad")])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output


def test_voice_fold_training_holds_out_speakers(tmp_path):
    data = _ravdess(tmp_path / "ravdess")
    recipe = tiny_voice_recipe(tmp_path / "voice.toml", data,
                               augment="spec_augment = { freq_masks = 1, freq_width = 4, time_masks = 1, time_width = 5 }")
    out = tmp_path / "fold1"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out), "--fold", "1"])
    assert result.exit_code == 0, result.output
    extra = load_model(out / "last").config.extra["data"]
    assert extra["val_speakers"] == ["ravdess_01", "ravdess_02"]
    assert extra["train_speakers"] == ["ravdess_03", "ravdess_04"]
    assert not set(extra["val_speakers"]) & set(extra["train_speakers"])
    # the feature cache is written once and reused
    cached = list((out / "cache").glob("voice-*.npz"))
    assert len(cached) == 2


def test_text_training_with_context(tmp_path, tiny_encoder_dir):
    recipe = _text_recipe(tmp_path, tiny_encoder_dir, "context_turns = 2")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = load_model(out / "best")
    assert model.config.text["use_context"] and model.config.text["context_turns"] == 2
    emo, sent = model.text_probs(["the cat is happy"], ["what a nice day"])
    assert emo.shape == (1, len(EMOTIONS)) and sent.shape == (1, 3)
    assert np.allclose(emo.sum(), 1.0, atol=1e-5)


def test_bad_recipes(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe"):
        load_recipe(tmp_path / "missing.toml")
    bad = _recipe(tmp_path / "bad.toml", 'name = "x"\ntask = "smell"\n[data]\n')
    with pytest.raises(RecipeError, match="task must be"):
        load_recipe(bad)
    unknown = _recipe(tmp_path / "unknown.toml", 'name = "x"\ntask = "face"\n[data]\n[optim]\nepochz = 3\n')
    with pytest.raises(RecipeError, match="unknown \\[optim\\] keys"):
        load_recipe(unknown)
    result = runner.invoke(app, ["train", str(unknown), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output


def test_train_on_an_empty_folder_says_what_layout_is_expected(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    recipe = _recipe(tmp_path / "face.toml", f"""
name = "x"
task = "face"
[data]
root = "{tmp_path / 'empty'}"
""")
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "expected" in result.output and "<label>" in result.output
    assert "Traceback" not in result.output


def test_augmentations_keep_shapes_and_change_inputs():
    from emofusion.train.augment import augment_faces, augment_waveforms, spec_augment

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 48, 48)
    out = augment_faces(x, g, crop=40)
    assert out.shape == (4, 1, 40, 40) and not torch.allclose(out, x[:, :, 4:44, 4:44])
    w = torch.randn(3, 16000) * 0.1
    aw = augment_waveforms(w, g)
    assert aw.shape == w.shape and aw.abs().max() <= 1.0
    m = torch.randn(2, 64, 100)
    sm = spec_augment(m, g, freq_masks=1, freq_width=8, time_masks=1, time_width=10)
    assert sm.shape == m.shape and (sm == 0).any()


def test_text_finetuning_top_layer_round_trips(tmp_path, tiny_encoder_dir):
    """The fine-tuned encoder layer is saved in the model file and applied on load."""
    recipe = _text_recipe(tmp_path, tiny_encoder_dir, "finetune_layers = 1\nencoder_lr = 0.01\ncontext_turns = 1")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "last" / "config.json").read_text())
    shapes = config["text"]["finetuned"]["shapes"]
    assert shapes and all(name.startswith("encoder.layer.1.") for name in shapes)  # 2-layer encoder: top = 1
    tuned = load_model(out / "last")
    base = load_model(out / "last", load_text_encoder=False)
    from emofusion.models import SentenceEncoder

    base.attach_encoder(SentenceEncoder(str(tiny_encoder_dir), max_length=32))  # the untuned encoder
    texts, contexts = ["the cat is happy", "i am angry at you"], ["", "the dog is sad"]
    tuned_emo, _ = tuned.text_probs(texts, contexts)
    base_emo, _ = base.text_probs(texts, contexts)
    assert not np.allclose(tuned_emo, base_emo, atol=1e-6)  # the tuned layer changed the outputs
    # loading twice gives identical outputs
    again, _ = load_model(out / "last").text_probs(texts, contexts)
    assert np.allclose(tuned_emo, again, atol=1e-6)
    # the base encoder tensors in the file are only the top layer's
    from safetensors import safe_open

    with safe_open(str(out / "last" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("text_encoder_delta.") for k in keys)
    assert not any("layer__0__" in k for k in keys)


def test_assemble_keeps_every_part_and_the_fine_tuned_encoder(tmp_path, tiny_encoder_dir):
    """The bundled model is assembled from part folders: each part's outputs must survive."""
    import torch

    from emofusion.models import EmotionModel, ModelConfig, SentenceEncoder
    from emofusion.train.fusion_fit import assemble

    torch.manual_seed(0)
    face = EmotionModel(ModelConfig(name="f", trained={"face": True},
                                    face={"channels": [4, 8], "dropout": 0.0, "preprocess": {}}))
    voice = EmotionModel(ModelConfig(name="v", trained={"voice": True},
                                     voice={"channels": [4, 8], "dropout": 0.0, "preprocess": {}}))
    encoder = SentenceEncoder(str(tiny_encoder_dir), max_length=32)
    names = [n for n in encoder.model.state_dict() if n.startswith("encoder.layer.1.")]
    shapes = {n: list(encoder.model.state_dict()[n].shape) for n in names}
    text = EmotionModel(ModelConfig(name="t", trained={"text": True}, text={
        "encoder": str(tiny_encoder_dir), "embed_dim": 16, "hidden": 8, "dropout": 0.0,
        "finetuned": {"layers": 1, "shapes": shapes}}), load_text_encoder=False)
    with torch.no_grad():
        for buffer in text.text_encoder_delta.buffers():
            buffer.normal_()
    paths = {}
    for name, model in (("face", face), ("voice", voice), ("text", text)):
        paths[name] = model.save_pretrained(tmp_path / name)
    combined = assemble(paths, tmp_path / "default", fusion_weights={"face": 1.0, "voice": 1.5, "text": 0.25})
    reloaded = load_model(tmp_path / "default")
    assert reloaded.config.fusion["weights"] == {"face": 1.0, "voice": 1.5, "text": 0.25}
    assert reloaded.is_trained
    x = torch.randn(2, 1, 48, 48)
    mel = torch.randn(2, 64, 50)
    assert np.allclose(reloaded.face_probs(x), load_model(paths["face"]).face_probs(x), atol=1e-6)
    assert np.allclose(reloaded.voice_probs(mel), load_model(paths["voice"]).voice_probs(mel), atol=1e-6)
    texts = ["the cat is happy", "the dog is sad"]
    assert np.allclose(reloaded.text_probs(texts)[0], load_model(paths["text"]).text_probs(texts)[0], atol=1e-6)
    assert combined.text_encoder_delta is not None
    # a new bundle can take parts from an assembled one: each part keeps its own training record
    for name, model in (("face", face), ("voice", voice), ("text", text)):
        model.config.extra = {"recipe": f"{name}-recipe"}
        model.save_pretrained(tmp_path / name)
    assemble(paths, tmp_path / "default", extra={"fusion_fit": {"n": 1}})
    assemble({"face": paths["face"], "voice": tmp_path / "default", "text": tmp_path / "default"}, tmp_path / "next")
    parts = load_model(tmp_path / "next").config.extra["parts"]
    assert parts == {"face": {"recipe": "face-recipe"}, "voice": {"recipe": "voice-recipe"},
                     "text": {"recipe": "text-recipe"}}


def test_goemotions_reader_keeps_single_label_rows_and_group_sentiment(tmp_path):
    from emofusion.data import get_dataset

    root = write_goemotions(tmp_path / "go", {"dev": [
        ("so happy for you", "3", "3"), ("wow, really?", "6", "0"), ("ugh and yay", "0,3", "1,3"),
        ("that is gross", "1", "1")]})
    scan = get_dataset("goemotions").scan(root, "val")
    assert [(i.text, i.label, i.sentiment) for i in scan.items] == [
        ("so happy for you", "happy", "positive"), ("wow, really?", "surprised", None),
        ("that is gross", "disgust", "negative")]
    assert dict(scan.skipped) == {"multi-label row (several Ekman emotions)": 1}
    assert get_dataset("goemotions").splits(root) == ["dev"]


def test_text_training_on_two_corpora_selects_on_their_mean(tmp_path, tiny_encoder_dir):
    meld = _meld(tmp_path / "meld")
    rows = [("so happy for you", "3", "3"), ("this is so sad", "5", "1"), ("wow, really?", "6", "0"),
            ("i hate this", "0", "1"), ("ugh and yay", "0,3", "1,3")]
    go = write_goemotions(tmp_path / "go", {"train": rows * 3, "dev": rows})
    recipe = _recipe(tmp_path / "text.toml", f"""
name = "tiny-two-corpora"
task = "text"
[data]
sources = [
  {{ dataset = "meld", root = "{meld}", loss_weight = 2.0 }},
  {{ dataset = "goemotions", root = "{go}" }},
]
[model]
encoder = "{tiny_encoder_dir}"
hidden = 8
context_turns = 1
[optim]
epochs = 2
batch_size = 4
select_on = "weighted_f1"
""")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["data"]["train_n"] == 12 + 12 and summary["data"]["val_n"] == 4 + 4
    assert summary["data"]["skipped"] == {"goemotions: multi-label row (several Ekman emotions)": 4}
    for entry in summary["history"]:
        assert set(entry["by_source"]) == {"meld", "goemotions"}
    best = summary["history"][summary["best_epoch"] - 1]
    mean = (best["by_source"]["meld"]["weighted_f1"] + best["by_source"]["goemotions"]["weighted_f1"]) / 2
    assert summary["best_weighted_f1"] == pytest.approx(mean)
    config = json.loads((out / "best" / "config.json").read_text())
    assert set(config["extra"]["val_by_source"]) == {"meld", "goemotions"}


def test_text_fine_tuning_on_one_corpus_keeps_another_in_view(tmp_path, tiny_encoder_dir):
    """Stage two of the bundled recipe: start from a text model, train on MELD only, select on
    both dev sets (a corpus with train_split = false is validated on, never trained on)."""
    first = _text_recipe(tmp_path, tiny_encoder_dir, "finetune_layers = 1\ncontext_turns = 1")  # writes tmp/meld
    meld = tmp_path / "meld"
    rows = [("so happy for you", "3", "3"), ("this is so sad", "5", "1"), ("wow, really?", "6", "0")]
    go = write_goemotions(tmp_path / "go", {"dev": rows})  # no train split at all
    assert runner.invoke(app, ["train", str(first), "--out", str(tmp_path / "one")]).exit_code == 0
    second = _recipe(tmp_path / "two.toml", f"""
name = "tiny-stage-two"
task = "text"
[data]
sources = [
  {{ dataset = "meld", root = "{meld}" }},
  {{ dataset = "goemotions", root = "{go}", train_split = false }},
]
[model]
encoder = "{tiny_encoder_dir}"
hidden = 8
finetune_layers = 1
context_turns = 1
init_from = "{tmp_path / 'one' / 'best'}"
[optim]
epochs = 1
batch_size = 4
select_on = "weighted_f1"
""")
    result = runner.invoke(app, ["train", str(second), "--out", str(tmp_path / "two")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert summary["data"]["train_n"] == 12 and summary["data"]["val_n"] == 4 + 3
    assert set(summary["history"][0]["by_source"]) == {"meld", "goemotions"}


def test_fine_tuned_layers_are_stored_in_half_precision_and_older_float32_files_still_load(tmp_path, tiny_encoder_dir):
    """New text models store their fine-tuned encoder layers in float16 (half the file); a model
    folder written before (float32, no `dtype` in its config) loads and answers as it did."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    recipe = _text_recipe(tmp_path, tiny_encoder_dir, "finetune_layers = 1\nencoder_lr = 0.01\ncontext_turns = 1")
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", str(recipe), "--out", str(out)]).exit_code == 0
    config = json.loads((out / "last" / "config.json").read_text())
    assert config["text"]["finetuned"]["dtype"] == "float16"
    with safe_open(str(out / "last" / "model.safetensors"), "pt") as f:
        deltas = [f.get_tensor(k) for k in f.keys() if k.startswith("text_encoder_delta.")]
    assert deltas and all(t.dtype == torch.float16 for t in deltas)
    texts, contexts = ["the cat is happy", "i am angry at you"], ["", "the dog is sad"]
    half, _ = load_model(out / "last").text_probs(texts, contexts)

    # the same tensors written as an older model folder: float32, no dtype in the config
    old = tmp_path / "old"
    old.mkdir()
    state = {k: (v.float() if k.startswith("text_encoder_delta.") else v)
             for k, v in load_file(str(out / "last" / "model.safetensors")).items()}
    save_file(state, str(old / "model.safetensors"), metadata={"format": "emofusion"})
    del config["text"]["finetuned"]["dtype"]
    (old / "config.json").write_text(json.dumps(config))
    loaded = load_model(old)
    assert all(t.dtype == torch.float32 for t in loaded.text_encoder_delta.tensors().values())
    again, _ = loaded.text_probs(texts, contexts)
    assert np.allclose(half, again, atol=1e-6)  # the same values (float16 ones, widened)
    config["text"]["finetuned"]["dtype"] = "int4"
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="text.finetuned.dtype must be one of float16, float32"):
        load_model(old)
