"""Face crops: cut from a frame or read from an image file, then normalised for the face net."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.base import DatasetLayoutError


@dataclass(frozen=True)
class FaceConfig:
    """How a face crop becomes the face net's input: square, grayscale, `size` pixels."""

    size: int = 48
    margin: float = 0.1  # fraction of the box side added on every side before resizing
    input_size: int | None = None  # the net sees the centre input_size x input_size of the crop (None: all of it)
    mean: float = 0.5
    std: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], cfg: FaceConfig = FaceConfig()) -> np.ndarray:
    """Cut a square crop around `box` (x, y, w, h) from a grayscale uint8 image, resized to cfg.size.

    The crop is padded with edge pixels where the margin runs off the image.
    """
    import cv2

    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * cfg.margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    height, width = gray.shape[:2]
    pad = max(0, -x0, -y0, x1 - width, y1 - height)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = gray[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if crop.shape[0] > cfg.size else cv2.INTER_LINEAR
    return cv2.resize(crop, (cfg.size, cfg.size), interpolation=interp)


def normalize_faces(crops: np.ndarray | torch.Tensor, cfg: FaceConfig = FaceConfig(), center_crop: bool = True) -> torch.Tensor:
    """uint8 grayscale crops (N, size, size) -> float tensor (N, 1, S, S) for the face net.

    S is cfg.input_size (the centre of the crop) when set, else size. Training passes
    center_crop=False and takes random input_size crops instead (see train.augment).
    """
    t = torch.as_tensor(np.asarray(crops), dtype=torch.float32)
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if center_crop and cfg.input_size is not None and cfg.input_size < t.shape[-1]:
        off = (t.shape[-1] - cfg.input_size) // 2
        t = t[:, off : off + cfg.input_size, off : off + cfg.input_size]
    return ((t / 255.0 - cfg.mean) / cfg.std).unsqueeze(1)


def load_face_images(paths: list[Path], cfg: FaceConfig) -> np.ndarray:
    """Face-crop images read as grayscale uint8 (N, size, size), resized to cfg.size.

    Raises DatasetLayoutError naming the first image that cannot be read.
    """
    import cv2

    out = np.empty((len(paths), cfg.size, cfg.size), dtype=np.uint8)
    for i, path in enumerate(paths):
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DatasetLayoutError(f"{path}: unreadable image")
        if img.shape != (cfg.size, cfg.size):
            interp = cv2.INTER_AREA if img.shape[0] > cfg.size else cv2.INTER_LINEAR
            img = cv2.resize(img, (cfg.size, cfg.size), interpolation=interp)
        out[i] = img
    return out
