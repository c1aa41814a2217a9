"""The training loop (Lightning Fabric), the same for every task.

AdamW with a linear warm-up then cosine decay per step, class-weighted or balanced
sampling, label smoothing, early stopping on a validation metric, best and last
checkpoints as model folders, resume from the last one, TensorBoard logging.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..metrics import classification_report
from .recipe import Recipe, RecipeError
from .multimodal import MultimodalTask
from .tasks import TASKS, Task

ALL_TASKS: dict[str, type[Task]] = {**TASKS, "multimodal": MultimodalTask}

STATE_NAME = "trainer_state.pt"


def lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to 0, as a multiplier of the base learning rate."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def class_weights(y: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1 over the classes present."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max(1, (counts > 0).sum()), 0.0)
    return torch.as_tensor(w, dtype=torch.float32)


def _init_part(task: Task, part: torch.nn.Module, source: str) -> None:
    """Load `source`'s weights for the task's part into `part` (fine-tuning), strictly."""
    from ..models import ModelLoadError

    try:
        other = task.trainable(task.load_saved(Path(source)))
    except (ModelLoadError, OSError) as exc:
        raise RecipeError(f"model.init_from: {exc}") from None
    if other is None:
        raise RecipeError(f"model.init_from: {source} has no {task.modality} part")
    try:
        part.load_state_dict(other.state_dict())
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise RecipeError(f"model.init_from: the {task.modality} part of {source} does not match the recipe's "
                          f"architecture ({first})") from None


def train(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    accelerator: str = "cpu",
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str = "32-true",
    resume: bool = False,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    task: Task | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train `recipe`'s model; write `best/`, `last/`, `metrics.json` and TensorBoard logs under `out_dir`.

    Returns the summary written to metrics.json (best epoch, its validation metrics, history).
    `on_epoch(epoch, score)` is called after each epoch with its selection score (1-based epoch);
    an exception it raises (e.g. a hyperparameter search pruning the run) ends the training.
    """
    from lightning.fabric import Fabric

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision)
    fabric.launch()
    opt = recipe.optim
    fabric.seed_everything(opt.seed)
    if task is None:
        task = ALL_TASKS[recipe.task](recipe, Path(cache_dir or out / "cache"))
    model = task.build_model()
    part = task.trainable(model)
    init_from = recipe.model.get("init_from")
    if init_from and not resume:
        _init_part(task, part, str(init_from))
        log(f"initialised the {task.modality} part from {init_from}")
    optimizer = torch.optim.AdamW(task.param_groups(part, opt.lr), lr=opt.lr, weight_decay=opt.weight_decay)
    steps_per_epoch = max(1, len(task.train_y) // fabric.world_size // opt.batch_size)
    total_steps = steps_per_epoch * opt.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, int(opt.warmup_epochs * steps_per_epoch))
    )
    start_epoch, best_score, best_epoch, stale, history = 0, -math.inf, -1, 0, []
    state_file = out / STATE_NAME
    if resume:
        if not state_file.is_file():
            raise FileNotFoundError(f"cannot resume: {state_file} not found (train once without --resume first)")
        last = task.load_saved(out / "last")
        part.load_state_dict(task.trainable(last).state_dict())
        state = torch.load(state_file, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_score, best_epoch, stale, history = (
            state["epoch"] + 1, state["best_score"], state["best_epoch"], state["stale"], state["history"],
        )
        log(f"resumed after epoch {state['epoch'] + 1}, best {opt.select_on}={best_score:.4f} (epoch {best_epoch + 1})")
    fabric_part, optimizer = fabric.setup(part, optimizer)
    weights = class_weights(task.train_y, len(task.labels)) if opt.balance == "weights" else None
    writer = None
    if fabric.global_rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))
        log(f"data: {json.dumps(task.data_summary())}")
    generator = torch.Generator().manual_seed(opt.seed)
    for epoch in range(start_epoch, opt.epochs):
        generator.manual_seed(opt.seed * 1000 + epoch)
        task.on_epoch_start(model, epoch)
        fabric_part.train()
        t0, total, count = time.time(), 0.0, 0
        for batch in task.train_batches(epoch, generator, fabric.global_rank, fabric.world_size):
            batch = tuple(fabric.to_device(b) for b in batch)
            loss = task.loss(fabric_part, batch, None if weights is None else fabric.to_device(weights), opt.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            fabric.backward(loss)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
            count += 1
        train_loss = total / max(1, count)
        fabric.barrier()
        stop = False
        if fabric.global_rank == 0:
            part.eval()
            probs = task.predict_val(model)
            report = classification_report(task.val_y, probs, task.labels)
            val_loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(task.val_y)), task.val_y], 1e-8, 1.0))))
            score, by_source = selection_score(task, report, probs, opt.select_on)
            entry = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "lr": scheduler.get_last_lr()[0],
                     "accuracy": report["accuracy"], "uar": report["uar"], "macro_f1": report["macro_f1"],
                     "weighted_f1": report["weighted_f1"], "seconds": round(time.time() - t0, 1)}
            if by_source:
                entry["by_source"] = by_source
            history.append(entry)
            log(json.dumps(entry))
            assert writer is not None
            writer.add_scalar("loss/train", train_loss, epoch + 1)
            writer.add_scalar("loss/val", val_loss, epoch + 1)
            writer.add_scalar("lr", entry["lr"], epoch + 1)
            for key in ("accuracy", "uar", "macro_f1", "weighted_f1"):
                writer.add_scalar(f"val/{key}", report[key], epoch + 1)
            meta = {"recipe": recipe.name, "epoch": epoch + 1, "val": short_report(report), "data": task.data_summary()}
            if by_source:
                meta["val_by_source"] = by_source
            task.save(model, out / "last", meta)
            if score > best_score:
                best_score, best_epoch, stale = score, epoch, 0
                task.save(model, out / "best", meta)
                (out / "best" / "val_report.json").write_text(json.dumps(report, indent=2))
                from ..metrics import confusion_matrix_figure

                writer.add_figure("val/confusion_matrix", confusion_matrix_figure(report["confusion_matrix"], task.labels), epoch + 1)
            else:
                stale += 1
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                        "best_score": best_score, "best_epoch": best_epoch, "stale": stale, "history": history}, state_file)
            if on_epoch is not None:
                try:
                    on_epoch(epoch + 1, score)
                except BaseException:
                    writer.close()
                    raise
            if stale >= opt.patience:
                log(f"early stop: {opt.select_on} did not improve for {opt.patience} epochs")
                stop = True
        # every process takes rank 0's decision: a process that stopped alone would leave the
        # others waiting forever in the next step's gradient all-reduce
        if fabric.broadcast(stop, src=0):
            break
    summary = {"recipe": recipe.name, "best_epoch": best_epoch + 1, f"best_{opt.select_on}": best_score,
               "history": history, "data": task.data_summary()}
    if fabric.global_rank == 0:
        if best_epoch >= 0:
            extra = task.final_report(task.load_saved(out / "best"))
            if extra is not None:
                summary["best_val_by_modality"] = extra
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
        if writer is not None:
            writer.close()
    return summary


def selection_score(task: Task, report: dict[str, Any], probs: np.ndarray,
                    select_on: str) -> tuple[float, dict[str, dict[str, Any]]]:
    """The checkpoint's score, and each validation corpus's figures when there are several:
    with several corpora the score is the mean of their `select_on`, so the largest does not
    outvote the others."""
    groups = task.val_groups or {}
    if len(groups) < 2:
        return float(report[select_on]), {}
    by_source = {name: short_report(classification_report(task.val_y[rows], probs[rows], task.labels))
                 for name, rows in groups.items()}
    return float(np.mean([r[select_on] for r in by_source.values()])), by_source


def short_report(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in ("n", "accuracy", "uar", "macro_f1", "weighted_f1") if k in report}
