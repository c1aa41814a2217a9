"""Multimodal training of seed architectures through `emofusion train`, on generated aligned clips."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seed_support import multimodal_recipe

from emofusion.cli import app
from emofusion.data import get_dataset
from emofusion.data.aligned import ALIGNED_LABELS, aligned_cues, make_aligned_dataset
from emofusion.models.seed import SeedModel
from emofusion.train.multimodal import clip_frames
from emofusion.train.recipe import RecipeError, apply_setting, load_recipe

runner = CliRunner()


@pytest.fixture(scope="module")
def aligned(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("aligned")
    make_aligned_dataset(root, per_class=6, speakers=3, seed=1, size=16, fps=8, seconds=0.5)
    return root


def _recipe(tmp_path: Path, data: Path, fusion: str = "xattn", modalities: str = '["video", "audio"]') -> Path:
    return multimodal_recipe(tmp_path / f"mm-{fusion}.toml", data, fusion=fusion, modalities=modalities)


def test_aligned_dataset_layout_and_cues(aligned):
    rows = list(csv.DictReader((aligned / "manifest.csv").open()))
    assert len(rows) == 24
    assert {r["label"] for r in rows} == set(ALIGNED_LABELS)
    assert {r["speaker"] for r in rows} == {"spk00", "spk01", "spk02"}
    # every class is a distinct (visual, audio) pair; each cue alone splits the classes in two
    pairs = [aligned_cues(i) for i in range(len(ALIGNED_LABELS))]
    assert len(set(pairs)) == len(pairs)
    assert sorted(v for v, _ in pairs) == [0, 0, 1, 1] and sorted(a for _, a in pairs) == [0, 0, 1, 1]
    scan = get_dataset("manifest").scan(aligned / "manifest.csv", "all")
    assert len(scan.items) == 24 and not scan.skipped
    frames = clip_frames(scan.items[0].path, 4, 16)
    assert frames.shape == (4, 16, 16, 3) and frames.dtype == np.uint8


def test_visual_cue_is_where_the_square_is(aligned):
    scan = get_dataset("manifest").scan(aligned / "manifest.csv", "all")
    agree = []
    for item in scan.items:
        frames = clip_frames(item.path, 4, 16).astype(np.float32).mean(axis=(0, 3))
        bright_top = frames[:8].mean() > frames[8:].mean()
        visual, _ = aligned_cues(ALIGNED_LABELS.index(item.label))
        agree.append(bright_top == (visual == 0))
    # 10 % of cues are flipped on purpose; most clips show their class's half
    assert np.mean(agree) >= 0.75


@pytest.mark.parametrize("fusion", ["late", "concat", "gated", "xattn"])
def test_multimodal_training_through_the_cli(tmp_path, aligned, fusion):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(_recipe(tmp_path, aligned, fusion)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2
    assert metrics["data"]["val_speakers"] == ["spk02"] and "spk02" not in metrics["data"]["train_speakers"]
    by = metrics["best_val_by_modality"]
    assert set(by) == {"all", "video", "audio"} and by["all"]["n"] == 8
    model = SeedModel.from_pretrained(out / "best")
    assert model.config["trained"] is True and model.config["labels"] == list(ALIGNED_LABELS)
    assert model.config["fusion"]["type"] == fusion
    assert abs(by["all"]["accuracy"] - metrics["best_accuracy"]) < 1e-9


def test_multimodal_resume_continues_from_last(tmp_path, aligned):
    recipe = _recipe(tmp_path, aligned, "concat")
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", str(recipe), "--out", str(out), "--epochs", "1"]).exit_code == 0
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out), "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert "resumed after epoch 1" in result.output
    assert [h["epoch"] for h in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2]


def test_single_modality_model_through_set(tmp_path, aligned):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(_recipe(tmp_path, aligned, "concat")), "--out", str(out),
                                 "--set", 'model.modalities=["audio"]', "--epochs", "1"])
    assert result.exit_code == 0, result.output
    model = SeedModel.from_pretrained(out / "best")
    assert model.modalities == ["audio"]
    assert set(json.loads((out / "metrics.json").read_text())["best_val_by_modality"]) == {"all", "audio"}


def test_set_settings(tmp_path, aligned):
    recipe = _recipe(tmp_path, aligned)
    r = load_recipe(recipe, settings=["model.fusion.type=gated", "optim.epochs=7", "model.fusion.dim=16"])
    assert r.model["fusion"]["type"] == "gated" and r.optim.epochs == 7 and r.model["fusion"]["dim"] == 16
    raw = {"a": {"b": 1}}
    apply_setting(raw, "a.c=[1, 2]")
    apply_setting(raw, "a.d=plain words")
    assert raw == {"a": {"b": 1, "c": [1, 2], "d": "plain words"}}
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        apply_setting(raw, "no-equals-sign")
    with pytest.raises(RecipeError, match="not a table"):
        apply_setting(raw, "a.b.c=1")
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "x"), "--set", "oops"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_multimodal_recipe_errors(tmp_path, aligned):
    recipe = _recipe(tmp_path, aligned)
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "a"), "--set", 'model.modalities=["text"]'])
    assert result.exit_code == 2 and "no [model.encoders] entry" in result.output
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "b"), "--set", 'data.val_speakers=["nobody"]'])
    assert result.exit_code == 2 and "speakers ['nobody'] not in the items" in result.output
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "c"), "--set", "model.heads.emotion=3"])
    assert result.exit_code == 2 and "labels" in result.output


def test_missing_modality_inference_on_a_trained_model(tmp_path, aligned):
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", str(_recipe(tmp_path, aligned, "gated")), "--out", str(out), "--epochs", "1"]).exit_code == 0
    model = SeedModel.from_pretrained(out / "best")
    audio = {"audio": torch.zeros(2, 8000), "lengths": torch.tensor([8000, 4000])}
    only_audio = model({"audio": audio}).logits["emotion"]
    assert only_audio.shape == (2, 4) and torch.isfinite(only_audio).all()


# ---- the sentiment head trains beside the emotion head (weighted multitask loss)

SENTIMENT_OF = {"neutral": "neutral", "happy": "positive", "sad": "negative", "angry": "negative"}


def _with_sentiment(tmp_path: Path, aligned: Path, share: float = 1.0) -> Path:
    """A manifest of the aligned clips with a sentiment column (empty for the last 1 - share of rows)."""
    rows = list(csv.DictReader((aligned / "manifest.csv").open()))
    keep = int(round(share * len(rows)))
    path = tmp_path / "sentiment.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "speaker", "sentiment"])
        writer.writeheader()
        for k, row in enumerate(rows):
            writer.writerow({**row, "path": str(aligned / row["path"]),
                             "sentiment": SENTIMENT_OF[row["label"]] if k < keep else ""})
    return path


def _sentiment_recipe(tmp_path: Path, manifest: Path, fusion: str = "concat"):
    recipe = _recipe(tmp_path, manifest.parent, fusion)
    return load_recipe(recipe, settings=[
        f'data.sources=[{{ dataset = "manifest", root = "{manifest}" }}]',
        "model.heads.sentiment=3", "model.loss_weights.sentiment=0.5",
        "model.fusion.modality_dropout=0.0", "model.fusion.dropout=0.0",
        "optim.weight_decay=0.0", "optim.epochs=1",
    ])


def _head_state(model: SeedModel, head: str) -> dict[str, torch.Tensor]:
    prefix = f"heads.{head}."
    if model.heads is None:  # late fusion: one head per modality
        return {k: v.clone() for k, v in model.state_dict().items() if f".{head}." in k and k.startswith("fusion.heads.")}
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(prefix)}


def _train_and_compare(tmp_path: Path, recipe, name: str) -> tuple[dict, dict, dict]:
    """Train in-process; return the sentiment head before and after, and the data summary."""
    from lightning.fabric import seed_everything

    from emofusion.train.loop import train
    from emofusion.train.multimodal import MultimodalTask

    task = MultimodalTask(recipe, tmp_path / "cache")
    seed_everything(recipe.optim.seed)  # train() seeds the same way before building its model
    before = _head_state(task.build_model(), "sentiment")
    train(recipe, tmp_path / name, task=task, log=lambda _: None)
    after = _head_state(SeedModel.from_pretrained(tmp_path / name / "last"), "sentiment")
    return before, after, task.data_summary()


@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_sentiment_head_trains_on_data_with_sentiment(tmp_path, aligned, fusion):
    manifest = _with_sentiment(tmp_path, aligned, share=0.75)
    before, after, summary = _train_and_compare(tmp_path, _sentiment_recipe(tmp_path, manifest, fusion), "run")
    assert before and set(before) == set(after)
    assert 0 < summary["train_sentiment_n"] < summary["train_n"]
    moved = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert moved > 1e-3, f"the sentiment head did not train (max change {moved})"


def test_multitask_loss_includes_sentiment(tmp_path, aligned):
    import torch.nn.functional as F

    from emofusion.train.multimodal import IGNORE_INDEX, MultimodalTask

    manifest = _with_sentiment(tmp_path, aligned, share=0.75)
    task = MultimodalTask(_sentiment_recipe(tmp_path, manifest), tmp_path / "cache")
    model = task.build_model().eval()
    inputs, y, s = next(iter(task.train_batches(0, torch.Generator().manual_seed(0))))
    s = torch.tensor([0, 2, IGNORE_INDEX, 1])  # one item without sentiment
    weights = torch.tensor([1.0, 2.0, 1.0, 0.5])
    loss = task.loss(model, (inputs, y, s), weights, 0.0)
    logits = model(inputs).logits
    emotion = F.cross_entropy(logits["emotion"], y, weight=weights)
    sentiment = F.cross_entropy(logits["sentiment"], s, ignore_index=IGNORE_INDEX)
    assert torch.allclose(loss, emotion + 0.5 * sentiment, atol=1e-6)
    assert float(sentiment.detach()) > 0


def test_sentiment_head_without_sentiment_data(tmp_path, aligned):
    manifest = _with_sentiment(tmp_path, aligned, share=0.0)  # no item has a sentiment
    before, after, summary = _train_and_compare(tmp_path, _sentiment_recipe(tmp_path, manifest), "run")
    assert summary["train_sentiment_n"] == 0
    # no targets: zero gradient, and with no weight decay AdamW leaves the head exactly as it was
    assert all(torch.equal(before[k], after[k]) for k in before)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["history"]) == 1 and np.isfinite(metrics["history"][0]["train_loss"])


# ---- two-process DDP (CPU, gloo) matches one process on the same global batch

EMOFUSION = Path(sys.executable).parent / "emofusion"
DDP_SETTINGS = [
    "model.heads.sentiment=3",  # the multitask loss goes through DDP too
    "model.fusion.type=concat", "model.fusion.dropout=0.0", "model.fusion.modality_dropout=0.0",
    # BatchNorm in train mode normalises with each process's own half of the batch, which one
    # process on the whole batch cannot reproduce; with running statistics both compute the same
    "model.encoders.video.freeze_bn=true", "model.encoders.audio.freeze_bn=true",
    "optim.label_smoothing=0.0", "optim.balance=\"none\"", "optim.weight_decay=0.0",
]


def _run_cli(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([str(EMOFUSION), *args], capture_output=True, text=True, timeout=timeout, env=env)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow  # two DDP processes and a one-process run
@pytest.mark.skipif(not EMOFUSION.exists(), reason="needs the installed emofusion console script")
def test_two_process_ddp_matches_one_process(tmp_path, aligned):
    from lightning.fabric import seed_everything

    from emofusion.train.multimodal import MultimodalTask

    manifest = _with_sentiment(tmp_path, aligned, share=1.0)  # 16 training clips (spk00, spk01)
    recipe = _recipe(tmp_path, aligned, "concat")
    sets = [f'data.sources=[{{ dataset = "manifest", root = "{manifest}" }}]', *DDP_SETTINGS]
    # epochs=3, patience=0: rank 0 stops early after epoch 1, and rank 1 must stop with it
    # (without the shared decision it would wait in epoch 2's first all-reduce for ever)
    common = ["--epochs", "3", "--set", "optim.patience=0", "--cache-dir", str(tmp_path / "cache")]
    for s in sets:
        common += ["--set", s]
    # per-rank batch 2 x 2 ranks; train_batches gives rank r the items idx[r::2] of the same
    # permutation, so DDP step k sees exactly items idx[4k:4k+4], the one process's step k
    one = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "one"), "--batch-size", "4", *common])
    assert one.exit_code == 0, one.output[-3000:]
    ddp = _run_cli(["train", str(recipe), "--out", str(tmp_path / "ddp"), "--batch-size", "2",
                    "--devices", "2", "--strategy", "ddp", *common])
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    m_one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m_ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert len(m_one["history"]) == len(m_ddp["history"]) == 1  # early stop after epoch 1 of 3
    assert "early stop" in ddp.stderr and "Traceback" not in ddp.stderr, ddp.stderr[-3000:]
    # both processes finished train() and printed their summary (a rank left behind in the
    # next epoch's all-reduce dies when rank 0 leaves, or waits for ever)
    assert ddp.stdout.count('"recipe": "mm-test"') == 2, ddp.stdout
    assert m_one["data"]["train_n"] == 16 and m_one["data"]["train_sentiment_n"] == 16
    assert m_one["history"][0]["accuracy"] == m_ddp["history"][0]["accuracy"]

    # the weights both runs started from (train() seeds the same way before building its model)
    task = MultimodalTask(load_recipe(recipe, {"batch_size": 4}, sets), tmp_path / "cache")
    seed_everything(0)
    init = {k: v.detach().clone() for k, v in task.build_model().state_dict().items()}
    w_one, w_ddp = _weights(tmp_path / "one" / "last"), _weights(tmp_path / "ddp" / "last")
    assert set(w_one) == set(w_ddp) == set(init)
    moved = max(float((w_one[k] - init[k]).abs().max()) for k in init)
    diff = max(float((w_one[k] - w_ddp[k]).abs().max()) for k in init)
    # 4 AdamW steps move a weight by up to ~4 x lr = 0.012 (0.0075 seen). The runs differ only in
    # float32 summation order (the all-reduce averages two half-batch means; one process takes
    # one mean), a relative gradient error of ~1e-6, which Adam's per-weight normalisation turns
    # into at most ~1e-6 x lr per step unless a gradient is near eps: 3e-7 seen, against any
    # real mismatch (other items in a batch, batch statistics) moving weights by ~lr = 3e-3
    assert moved > 1e-3, f"training did not move the weights ({moved})"
    assert diff < 1e-5, f"DDP and one process differ by {diff} (weights moved {moved})"
