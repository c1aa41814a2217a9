"""Classification heads and the weighted multitask loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SENTIMENT_CLASSES = 3  # negative, neutral, positive


class ClassificationHead(nn.Module):
    """Linear (or one hidden layer MLP) from a feature vector to class logits."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        if num_classes < 2:
            raise ValueError("a head needs at least 2 classes")
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        if hidden:
            layers += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)]
        else:
            layers.append(nn.Linear(in_dim, num_classes))
        self.net = nn.Sequential(*layers)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def head_specs(heads: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Normalise {"emotion": 7, "sentiment": 3} / {"emotion": {"num_classes": 7, "hidden": 64}}."""
    if not heads:
        raise ValueError("config needs at least one head, e.g. {'emotion': 7}")
    out: dict[str, dict[str, Any]] = {}
    for task, spec in heads.items():
        if isinstance(spec, int):
            spec = {"num_classes": spec}
        elif spec is None and task == "sentiment":
            spec = {"num_classes": SENTIMENT_CLASSES}
        spec = dict(spec)
        if "labels" in spec and "num_classes" not in spec:
            spec["num_classes"] = len(spec["labels"])
        if task == "sentiment" and spec["num_classes"] != SENTIMENT_CLASSES:
            raise ValueError("the sentiment head has 3 classes (negative, neutral, positive)")
        out[task] = spec
    return out


def build_head(in_dim: int, spec: dict[str, Any]) -> ClassificationHead:
    return ClassificationHead(in_dim, int(spec["num_classes"]), spec.get("hidden"), float(spec.get("dropout", 0.0)))


def multitask_loss(
    logits: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor | None],
    weights: dict[str, float] | None = None,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    class_weights: dict[str, torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum over tasks of weight * cross-entropy (with that task's `class_weights`, if any).

    Tasks without targets, or whose targets are all `ignore_index` (items not labelled for
    that task), add nothing (and no NaN), but stay in the graph with a zero gradient, so
    every head takes part in each step (as distributed data parallel requires)."""
    weights = weights or {}
    class_weights = class_weights or {}
    total: torch.Tensor | None = None
    parts: dict[str, torch.Tensor] = {}
    for task, lg in logits.items():
        tgt = targets.get(task)
        if tgt is None:
            continue
        tgt = tgt.to(lg.device).long()
        if bool((tgt != ignore_index).any()):
            cw = class_weights.get(task)
            loss = F.cross_entropy(lg, tgt, weight=None if cw is None else cw.to(lg.device, lg.dtype),
                                   ignore_index=ignore_index, label_smoothing=label_smoothing)
        else:
            loss = lg.sum() * 0.0
        parts[task] = loss.detach()
        term = float(weights.get(task, 1.0)) * loss
        total = term if total is None else total + term
    if total is None:
        raise ValueError("no targets for any head")
    return total, parts
