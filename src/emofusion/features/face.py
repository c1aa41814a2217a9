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


# A YuNet box (`media.faces.Face`) spans brow to chin: FER-2013's crops, which the face net
# learnt from, are squares about as high as that box and centred on it (fitted on 1,388 FER
# `train` faces pasted into frames: crop side / box height, median 0.99, quartiles 0.92-1.09;
# the centre 0.03 box heights above the box's; scripts/experiments/face_alignment.py).
LANDMARK_CROP_SIDE = 1.0  # crop side, in box heights
LANDMARK_CROP_SHIFT = -0.03  # crop centre minus box centre, in box heights (negative: above)
# Eyes tilted less than this are left as they are: FER-2013's own faces tilt that much, and the
# net reads them better untouched (docs/experiments/face-alignment.md).
ALIGN_MIN_DEGREES = 10.0


def align_face(gray: np.ndarray, box: tuple[int, int, int, int], landmarks: np.ndarray | None,
               cfg: FaceConfig = FaceConfig(), rotate: bool = True, min_degrees: float = ALIGN_MIN_DEGREES) -> np.ndarray:
    """The face net's crop of a face found with landmarks (YuNet): a square framed as FER-2013's
    faces are, turned so that the eyes are level when they tilt by `min_degrees` or more
    (`rotate`), resized to cfg.size. Without landmarks, `crop_face` (a square around the box
    with cfg.margin)."""
    import cv2

    if landmarks is None:
        return crop_face(gray, box, cfg)
    x, y, w, h = box
    side = h * LANDMARK_CROP_SIDE
    cx, cy = x + w / 2.0, y + h / 2.0 + LANDMARK_CROP_SHIFT * h
    angle = 0.0
    if rotate:
        (rx, ry), (lx, ly) = landmarks[0], landmarks[1]  # the person's right eye is on the image's left
        angle = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
        if abs(angle) < min_degrees:
            angle = 0.0
    return rotated_square(gray, (cx, cy), side, angle, cfg.size)


def rotated_square(gray: np.ndarray, centre: tuple[float, float], side: float, angle: float, size: int) -> np.ndarray:
    """The square of `side` pixels about `centre`, turned `angle` degrees (counter-clockwise), as a
    `size` x `size` image (area-averaged when it shrinks; edge pixels repeated beyond the frame)."""
    import cv2

    # an upright square around it that holds it turned any way, resized so the square is `size`
    # there; then one rotation about its centre
    outer = int(np.ceil(size * 1.5))
    cx, cy = centre
    region = crop_face(gray, (int(round(cx - side * 0.75)), int(round(cy - side * 0.75)),
                              int(round(side * 1.5)), int(round(side * 1.5))), FaceConfig(size=outer, margin=0.0))
    c = outer / 2.0
    m = cv2.getRotationMatrix2D((c, c), angle, 1.0)
    m[0, 2] += size / 2.0 - c
    m[1, 2] += size / 2.0 - c
    return cv2.warpAffine(region, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


EYE_FRAMED_SIDE = 2.4  # the eye-framed crop's side, in eye distances (brows to chin)
EYE_FRAMED_DROP = 0.8  # its centre below the eyes' midpoint, in eye distances


def eye_framed(gray: np.ndarray, landmarks: np.ndarray, size: int = 32) -> np.ndarray:
    """A crop framed by the eyes alone (their midpoint, distance and angle), so that it does not
    move when the jaw does: the eyes lie at 0.17 of its height, the mouth at about 0.6."""
    (rx, ry), (lx, ly) = landmarks[0], landmarks[1]
    distance = max(float(np.hypot(lx - rx, ly - ry)), 1.0)
    angle = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
    down = np.array([-(ly - ry), lx - rx]) / distance  # perpendicular to the eye line, towards the chin
    centre = np.array([(rx + lx) / 2, (ry + ly) / 2]) + EYE_FRAMED_DROP * distance * down
    return rotated_square(gray, (float(centre[0]), float(centre[1])), EYE_FRAMED_SIDE * distance, angle, size)


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
