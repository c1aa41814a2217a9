"""The Task base class: data decoded once into a feature cache, batches, loss and validation predictions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ...data import Item
from ...labels import EMOTIONS
from ...models import EmotionModel
from ..recipe import Recipe


def _cache_key(kind: str, paths: list[str], extra: dict[str, Any]) -> str:
    h = hashlib.sha1()
    h.update(kind.encode())
    h.update(json.dumps(extra, sort_keys=True).encode())
    for p in paths:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class Task:
    """Base class: subclasses fill in the data, batches, loss and predictions."""

    modality: str = ""

    def __init__(self, recipe: Recipe, cache_dir: Path):
        self.recipe = recipe
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.labels = list(recipe.model.get("labels", EMOTIONS))
        self.label_index = {name: i for i, name in enumerate(self.labels)}
        self.skipped: dict[str, int] = {}

    # to be provided by subclasses
    train_y: np.ndarray
    val_y: np.ndarray
    # validation rows per corpus (name -> row indices), when validation spans several corpora
    val_groups: dict[str, np.ndarray] | None = None

    def build_model(self) -> EmotionModel:
        raise NotImplementedError

    def train_batches(self, epoch: int, generator: torch.Generator, rank: int = 0, world: int = 1) -> Iterator[tuple]:
        raise NotImplementedError

    def loss(self, part: torch.nn.Module, batch: tuple, class_weights: torch.Tensor | None, smoothing: float) -> torch.Tensor:
        raise NotImplementedError

    def predict_val(self, model: EmotionModel) -> np.ndarray:
        raise NotImplementedError

    def trainable(self, model: EmotionModel) -> torch.nn.Module:
        """The module whose parameters are optimised (by default the modality's net)."""
        return getattr(model, self.modality)

    def param_groups(self, module: torch.nn.Module, lr: float) -> list[dict[str, Any]]:
        return [{"params": [p for p in module.parameters() if p.requires_grad], "lr": lr}]

    def before_save(self, model: EmotionModel) -> None:
        """Bring weights that live outside the model's own modules into it (no-op by default)."""

    def on_epoch_start(self, model: Any, epoch: int) -> None:
        """Apply per-epoch schedules (e.g. unfreezing a backbone); no-op by default."""

    def save(self, model: Any, directory: Path, meta: dict[str, Any]) -> None:
        """Write `model` as a model folder, with `meta` (recipe, epoch, validation scores) in its config."""
        model.config.trained = {self.modality: True}
        model.config.extra = meta
        self.before_save(model)
        model.save_pretrained(directory)

    def final_report(self, best: Any) -> dict[str, Any] | None:
        """Extra validation figures of the best checkpoint for metrics.json (none by default)."""
        return None

    def load_saved(self, directory: Path) -> Any:
        """The model folder that `save` wrote, loaded back (for --resume)."""
        from ...models import load_model

        return load_model(directory, load_text_encoder=self.modality == "text")

    def data_summary(self) -> dict[str, Any]:
        return {
            "train_n": int(len(self.train_y)),
            "val_n": int(len(self.val_y)),
            "train_counts": {self.labels[i]: int(c) for i, c in enumerate(np.bincount(self.train_y, minlength=len(self.labels)))},
            "skipped": self.skipped,
        }

    def _indices(self, generator: torch.Generator, rank: int, world: int, balance: str) -> np.ndarray:
        n = len(self.train_y)
        if balance == "sampler":
            counts = np.bincount(self.train_y, minlength=len(self.labels)).astype(np.float64)
            w = 1.0 / np.maximum(counts[self.train_y], 1)
            idx = torch.multinomial(torch.as_tensor(w), n, replacement=True, generator=generator).numpy()
        else:
            idx = torch.randperm(n, generator=generator).numpy()
        return idx[rank::world]

    def _known(self, items: list[Item]) -> list[int]:
        """Indices of the items whose label the model has; the others are counted as skipped."""
        kept = []
        for k, item in enumerate(items):
            if item.label in self.label_index:
                kept.append(k)
            else:
                key = f"label {item.label!r} not in the model's labels"
                self.skipped[key] = self.skipped.get(key, 0) + 1
        return kept

    def _items_to_y(self, items: list[Item]) -> tuple[list[Item], np.ndarray]:
        kept = [items[k] for k in self._known(items)]
        return kept, np.asarray([self.label_index[item.label] for item in kept], dtype=np.int64)
