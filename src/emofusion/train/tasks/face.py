"""Face crops (FER-2013 or an image folder of crops) -> emotion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...data import Item
from ...features import FaceConfig, load_face_images, normalize_faces
from ...models import EmotionModel, FaceNetConfig, ModelConfig
from ..augment import augment_faces
from ..recipe import Recipe
from .base import Task, _cache_key


class FaceTask(Task):
    """Face crops (FER-2013 or an image folder of crops) -> emotion."""

    modality = "face"

    def __init__(self, recipe: Recipe, cache_dir: Path):
        super().__init__(recipe, cache_dir)
        from ...data.faces import scan_imagefolder

        self.face_cfg = FaceConfig(**recipe.model.get("preprocess", {}))
        root = recipe.data["root"]
        train_scan = scan_imagefolder(root, recipe.data.get("train_split", "train"))
        val_scan = scan_imagefolder(root, recipe.data.get("val_split", "val"))
        for scan in (train_scan, val_scan):
            for reason, count in scan.skipped.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + count
        train_items, self.train_y = self._items_to_y(train_scan.items)
        val_items, self.val_y = self._items_to_y(val_scan.items)
        self.train_x = self._cached(train_items)
        self.val_x = self._cached(val_items)

    def _cached(self, items: list[Item]) -> np.ndarray:
        paths = [str(item.path) for item in items]
        # input_size only changes what the net sees of a cached crop, not the crop itself
        crop_params = {k: v for k, v in self.face_cfg.to_dict().items() if k != "input_size"}
        key = _cache_key("face", paths, crop_params)
        file = self.cache_dir / f"face-{key}.npy"
        if file.exists():
            return np.load(file)
        arr = load_face_images([Path(p) for p in paths], self.face_cfg)
        np.save(file, arr)
        return arr

    def build_model(self) -> EmotionModel:
        face = {**FaceNetConfig.from_dict(self.recipe.model, saved=False).to_dict(), "preprocess": self.face_cfg.to_dict()}
        return EmotionModel(ModelConfig(name=self.recipe.name, labels=self.labels, face=face))

    def train_batches(self, epoch, generator, rank=0, world=1):
        idx = self._indices(generator, rank, world, self.recipe.optim.balance)
        bs = self.recipe.optim.batch_size
        for start in range(0, len(idx) - bs + 1, bs):  # drop the last partial batch (BatchNorm)
            sel = idx[start : start + bs]
            x = normalize_faces(self.train_x[sel], self.face_cfg, center_crop=False)
            x = augment_faces(x, generator, crop=self.face_cfg.input_size, **self.recipe.augment)
            yield x, torch.as_tensor(self.train_y[sel])

    def loss(self, part, batch, class_weights, smoothing):
        x, y = batch
        return F.cross_entropy(part(x), y, weight=class_weights, label_smoothing=smoothing)

    def predict_val(self, model: EmotionModel) -> np.ndarray:
        out = []
        for start in range(0, len(self.val_x), 512):
            out.append(model.face_probs(normalize_faces(self.val_x[start : start + 512], self.face_cfg)))
        return np.concatenate(out)
