"""Face detection: YuNet (shipped in the package, run by OpenCV's `cv2.FaceDetectorYN`) by
default, or OpenCV's Haar frontal-face cascade from the wheel.

YuNet also gives five landmarks per face (the eyes, the nose tip, the mouth corners), which the
face path uses to align crops and to watch the mouth; Haar gives boxes only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FaceDetectorError
from ..options import DEFAULT_FACE_DETECTOR, FACE_DETECTORS

Box = tuple[int, int, int, int]  # x, y, width, height in pixels
#: YuNet 2023 (MIT, libfacedetection.train by Shiqi Yu et al., from OpenCV's model zoo); the
#: licence notice is beside it. $EMOFUSION_YUNET names another file of the same architecture.
YUNET_MODEL = Path(__file__).parent / "models" / "face_detection_yunet.onnx"
YUNET_SCORE_THRESHOLD = 0.7  # benchmarks/bench_detectors.py: recall and false positives at several thresholds
YUNET_NMS_THRESHOLD = 0.3
MAX_DETECTIONS = 64  # YuNet's top_k: a crowd cannot make the list unbounded


@dataclass(frozen=True)
class Face:
    """One face found in a frame."""

    box: Box
    score: float  # the detector's confidence (1.0 for Haar, which gives none)
    # (5, 2) pixel coordinates: right eye, left eye, nose tip, right and left mouth corners
    # (the person's right and left); None from Haar
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]

    def scaled(self, scale: float, dx: float = 0.0, dy: float = 0.0) -> "Face":
        """The same face in a frame `scale` times as large, shifted by (dx, dy) there."""
        x, y, w, h = self.box
        box = (int(round(x * scale + dx)), int(round(y * scale + dy)), int(round(w * scale)), int(round(h * scale)))
        marks = None if self.landmarks is None else self.landmarks * scale + np.array([dx, dy], np.float32)
        return Face(box, self.score, marks)


class FaceDetector:
    """Finds faces in grayscale frames; returns them largest first.

    `model` is "yunet" (the file shipped with the package, or $EMOFUSION_YUNET), "haar" (the
    frontal-face cascade shipped in opencv-python-headless 4.x) or the path of a YuNet ONNX file.
    FaceDetectorError when the detector cannot be loaded.
    """

    def __init__(self, model: str = DEFAULT_FACE_DETECTOR, *, min_size_fraction: float = 0.05,
                 score_threshold: float = YUNET_SCORE_THRESHOLD, scale_factor: float = 1.1, min_neighbors: int = 5):
        import cv2

        self._cv2 = cv2
        self.min_size_fraction = min_size_fraction  # smallest face side, as a fraction of the frame's shorter side
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
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
            self.name = "haar"
            return
        path = Path(os.environ.get("EMOFUSION_YUNET") or YUNET_MODEL) if model == "yunet" else Path(model)
        if not path.is_file():
            raise FaceDetectorError(f"YuNet model file {path} not found")
        try:
            self._yunet = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold,
                                                    YUNET_NMS_THRESHOLD, MAX_DETECTIONS)
        except cv2.error as exc:
            raise FaceDetectorError(f"cannot load YuNet model {path}: {str(exc).strip().splitlines()[-1]}") from None
        self.name = "yunet" if model == "yunet" else str(path)

    @property
    def gives_landmarks(self) -> bool:
        """Whether faces come with landmarks (YuNet) or boxes only (Haar)."""
        return self._yunet is not None

    def detect(self, gray: np.ndarray, max_side: int | None = None) -> list[Face]:
        """The faces in a grayscale uint8 frame, largest first, in the frame's pixels.

        With `max_side`, detection runs on a copy downscaled to that longer side (cheaper: the
        cost grows with the pixel count) and the faces are scaled back.
        """
        h, w = gray.shape[:2]
        if max_side is not None and max(h, w) > max_side:
            scale = max(h, w) / max_side
            small = self._cv2.resize(gray, (max(1, round(w / scale)), max(1, round(h / scale))),
                                     interpolation=self._cv2.INTER_AREA)
            return [f.scaled(scale) for f in self._detect(small)]
        return self._detect(gray)

    def _detect(self, gray: np.ndarray) -> list[Face]:
        cv2 = self._cv2
        h, w = gray.shape[:2]
        min_side = max(12 if self._yunet is not None else 20, int(min(h, w) * self.min_size_fraction))
        if self._haar is not None:
            found = self._haar.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=self.scale_factor,
                                                minNeighbors=self.min_neighbors, minSize=(min_side, min_side))
            faces = [Face(tuple(int(v) for v in b), 1.0) for b in (found if len(found) else [])]  # type: ignore[misc]
        else:
            assert self._yunet is not None
            self._yunet.setInputSize((w, h))
            _, rows = self._yunet.detect(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
            faces = []
            for row in ([] if rows is None else rows):
                box = tuple(int(round(v)) for v in row[:4])
                if box[2] >= min_side and box[3] >= min_side:
                    faces.append(Face(box, float(row[14]), np.asarray(row[4:14], np.float32).reshape(5, 2)))  # type: ignore[arg-type]
        return sorted(faces, key=lambda f: f.area, reverse=True)
