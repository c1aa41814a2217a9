"""Face detection: OpenCV's Haar cascade from the wheel by default, YuNet when given its model file."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FaceDetectorError  # noqa: F401  (re-exported: the error family lives in emofusion.errors)

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


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

    def detect(self, gray: np.ndarray, max_side: int | None = None) -> list[Box]:
        """Boxes of the faces in a grayscale uint8 frame, largest first.

        With `max_side`, detection runs on a copy downscaled to that longer side (much
        cheaper: Haar cost grows with the pixel count) and boxes are scaled back.
        """
        h, w = gray.shape[:2]
        if max_side is not None and max(h, w) > max_side:
            scale = max(h, w) / max_side
            small = self._cv2.resize(gray, (round(w / scale), round(h / scale)), interpolation=self._cv2.INTER_AREA)
            return [tuple(int(round(v * scale)) for v in box) for box in self._detect(small)]  # type: ignore[misc]
        return self._detect(gray)

    def _detect(self, gray: np.ndarray, min_side: int | None = None, max_side: int | None = None) -> list[Box]:
        """Boxes with sides from `min_side` (default: min_size_fraction of the shorter side, at
        least 20 px) up to `max_side` (default: any), largest first."""
        cv2 = self._cv2
        h, w = gray.shape[:2]
        if min_side is None:
            min_side = max(20, int(min(h, w) * self.min_size_fraction))
        if self._haar is not None:
            found = self._haar.detectMultiScale(
                cv2.equalizeHist(gray), scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(min_side, min_side), maxSize=(max_side, max_side) if max_side else (0, 0),
            )
            boxes = [tuple(int(v) for v in b) for b in (found if len(found) else [])]
        else:
            assert self._yunet is not None
            self._yunet.setInputSize((w, h))
            _, faces = self._yunet.detect(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
            boxes = [] if faces is None else [tuple(int(round(v)) for v in f[:4]) for f in faces]
            boxes = [b for b in boxes if b[2] >= min_side and b[3] >= min_side
                     and (not max_side or (b[2] <= max_side and b[3] <= max_side))]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


class FaceTracker:
    """Follows the largest face between sampled frames: a full-frame detection every
    `redetect_every` frames (or when the face is lost), otherwise a detection in a small
    region around the last box, which costs a fraction of a full-frame pass.

    The region extends the last box by `track_margin` of its side on each side and is
    scaled so the face is about `track_face_px` pixels; there a face from `track_min` to
    `track_max` (None: any size) times the last side is looked for.
    `benchmarks/bench_tracker.py` measures settings against a full detection in every frame.
    """

    def __init__(self, detector: FaceDetector, redetect_every: int = 4, detect_max_side: int = 320, *,
                 track_margin: float = 0.5, track_face_px: float = 80.0, track_min: float = 0.5,
                 track_max: float | None = None):
        if track_margin < 0 or track_face_px <= 0 or track_min <= 0 or (track_max is not None and track_max <= track_min):
            raise ValueError("track_margin >= 0, track_face_px > 0 and 0 < track_min < track_max are required")
        self.detector = detector
        self.redetect_every = max(1, redetect_every)
        self.detect_max_side = detect_max_side
        self.track_margin, self.track_face_px = track_margin, track_face_px
        self.track_min, self.track_max = track_min, track_max
        self._last: Box | None = None
        self._faces = 0
        self._since_full = 0

    @property
    def last_searched(self) -> bool:
        """Whether the last `find` was answered by the region search (False: a full-frame pass ran)."""
        return self._since_full > 1

    def find(self, gray: np.ndarray) -> tuple[Box | None, int]:
        """(box of the largest face or None, number of faces seen at the last full detection)."""
        if self._last is not None and self._since_full < self.redetect_every:
            box = self._near(gray, self._last)
            if box is not None:
                self._last = box
                self._since_full += 1
                return box, self._faces
        boxes = self.detector.detect(gray, max_side=self.detect_max_side)
        self._since_full = 1
        self._faces = len(boxes)
        self._last = boxes[0] if boxes else None
        return self._last, self._faces

    def _near(self, gray: np.ndarray, box: Box) -> Box | None:
        cv2 = self.detector._cv2
        x, y, w, h = box
        H, W = gray.shape[:2]
        mx, my = int(self.track_margin * w), int(self.track_margin * h)
        x0, y0 = max(0, x - mx), max(0, y - my)
        x1, y1 = min(W, x + w + mx), min(H, y + h + my)
        roi = gray[y0:y1, x0:x1]
        if roi.size == 0:
            return None
        scale = max(1.0, w / self.track_face_px)
        if scale > 1.0:
            roi = cv2.resize(roi, (round(roi.shape[1] / scale), round(roi.shape[0] / scale)), interpolation=cv2.INTER_AREA)
        min_side = max(20, int(self.track_min * w / scale))
        max_side = None if self.track_max is None else max(min_side + 1, int(math.ceil(self.track_max * w / scale)))
        found = self.detector._detect(roi, min_side=min_side, max_side=max_side)
        if not found:
            return None
        bx, by, bw, bh = found[0]
        return (int(round(bx * scale)) + x0, int(round(by * scale)) + y0, int(round(bw * scale)), int(round(bh * scale)))
