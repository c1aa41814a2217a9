"""Face detection: OpenCV's Haar cascade from the wheel by default, YuNet when given its model file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


class FaceDetectorError(RuntimeError):
    """The detector could not be created (missing cascade or model file)."""


@dataclass
class FaceDetector:
    """Finds faces in grayscale frames; returns boxes largest first.

    `model` is "haar" (the frontal-face cascade shipped in opencv-python-headless 4.x) or
    the path of a YuNet ONNX file (`face_detection_yunet_*.onnx`), also taken from
    $EMOFUSION_YUNET when set.
    """

    model: str = "haar"
    min_size_fraction: float = 0.08  # smallest face side as a fraction of the frame's shorter side
    scale_factor: float = 1.1
    min_neighbors: int = 5

    def __post_init__(self) -> None:
        import cv2

        self._cv2 = cv2
        model = self.model
        if model == "haar" and os.environ.get("EMOFUSION_YUNET"):
            model = os.environ["EMOFUSION_YUNET"]
        self._yunet = None
        self._haar = None
        if model == "haar":
            path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
            if not path.is_file():
                raise FaceDetectorError(
                    f"Haar cascade not found at {path}; opencv-python-headless>=4.10,<5 ships it (OpenCV 5 does not)"
                )
            self._haar = cv2.CascadeClassifier(str(path))
            if self._haar.empty():
                raise FaceDetectorError(f"cannot load Haar cascade {path}")
        else:
            if not Path(model).is_file():
                raise FaceDetectorError(f"YuNet model file {model} not found")
            self._yunet = cv2.FaceDetectorYN.create(model, "", (320, 320), 0.8, 0.3, 50)
            self.model = model

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Boxes of the faces in a grayscale uint8 frame, largest first."""
        cv2 = self._cv2
        h, w = gray.shape[:2]
        min_side = max(20, int(min(h, w) * self.min_size_fraction))
        if self._haar is not None:
            found = self._haar.detectMultiScale(
                cv2.equalizeHist(gray), scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(min_side, min_side),
            )
            boxes = [tuple(int(v) for v in b) for b in (found if len(found) else [])]
        else:
            assert self._yunet is not None
            self._yunet.setInputSize((w, h))
            _, faces = self._yunet.detect(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
            boxes = [] if faces is None else [tuple(int(round(v)) for v in f[:4]) for f in faces]
            boxes = [b for b in boxes if b[2] >= min_side and b[3] >= min_side]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)
