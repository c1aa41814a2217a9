"""Generated scenes of real faces, for tests, benchmarks and experiments: backdrops, faces
blended in (turned, mirrored, lit differently, cut by the frame's edge), a mouth that opens with
speech-like audio, and clips of several people of whom one (or nobody) speaks.

    from emofusion.media.scenes import background, place_face, make_people_clip, detectable_faces

The faces are images given by the caller (e.g. FER-2013 crops from ../shared/data); nothing
here is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .synth import make_clip

BACKGROUNDS: tuple[str, ...] = ("flat", "gradient", "texture", "clutter")


def background(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A grayscale uint8 backdrop without faces: "flat", "gradient", "texture" (blurred noise) or
    "clutter" (random boxes, ellipses and lines, the kind of structure a detector may mistake)."""
    import cv2

    if kind == "flat":
        return np.full((height, width), int(rng.integers(40, 200)), np.uint8)
    if kind == "gradient":
        yy, xx = np.mgrid[0:height, 0:width]
        a, b = rng.uniform(-1, 1, 2)
        g = a * xx / width + b * yy / height
        g = (g - g.min()) / max(1e-6, g.max() - g.min())
        return (40 + 170 * g).astype(np.uint8)
    if kind == "texture":
        noise = rng.normal(0, 1, (height, width)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), float(rng.uniform(2, 8)))
        noise = (noise - noise.mean()) / (noise.std() + 1e-6)
        return np.clip(120 + 40 * noise, 0, 255).astype(np.uint8)
    if kind == "clutter":
        img = background("gradient", height, width, rng)
        for _ in range(int(rng.integers(10, 30))):
            colour = int(rng.integers(0, 256))
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            s = int(rng.integers(8, max(9, min(height, width) // 3)))
            shape = int(rng.integers(0, 3))
            if shape == 0:
                cv2.rectangle(img, (x, y), (x + s, y + int(s * rng.uniform(0.5, 2))), colour, -1)
            elif shape == 1:
                cv2.ellipse(img, (x, y), (s // 2, int(s * rng.uniform(0.3, 0.8))), float(rng.uniform(0, 180)),
                            0, 360, colour, -1)
            else:
                cv2.line(img, (x, y), (int(rng.integers(0, width)), int(rng.integers(0, height))), colour,
                         int(rng.integers(1, 6)))
        return cv2.GaussianBlur(img, (0, 0), 1.0)
    raise ValueError(f"unknown background {kind!r}; choose from {', '.join(BACKGROUNDS)}")


def place_face(canvas: np.ndarray, face: np.ndarray, center: tuple[float, float], size: int, *,
               angle: float = 0.0, flip: bool = False, gain: float = 1.0, gamma: float = 1.0) -> tuple[int, int, int, int]:
    """Blend a grayscale face image (e.g. a FER-2013 crop) into `canvas` in place: resized to
    `size` pixels, mirrored (`flip`), turned `angle` degrees counter-clockwise, its light changed
    (`gain`, then `gamma`), under an oval mask with a soft edge so no square border shows. Parts
    outside the canvas are cut off. Returns the upright box (x, y, w, h) of the face square."""
    import cv2

    img = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA if size < face.shape[0] else cv2.INTER_CUBIC)
    if flip:
        img = img[:, ::-1]
    img = np.clip(255.0 * (np.clip(img.astype(np.float32) * gain, 0, 255) / 255.0) ** gamma, 0, 255)
    pad = int(np.ceil(size * 0.25))
    big = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    mask = np.zeros(big.shape, np.float32)
    c = big.shape[0] / 2.0
    cv2.ellipse(mask, (int(c), int(c)), (int(size * 0.47), int(size * 0.55)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, size * 0.04))
    if angle:
        m = cv2.getRotationMatrix2D((c, c), angle, 1.0)
        big = cv2.warpAffine(big, m, big.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(mask, m, mask.shape[::-1], flags=cv2.INTER_LINEAR)
    side = big.shape[0]
    x0, y0 = int(round(center[0] - side / 2)), int(round(center[1] - side / 2))
    H, W = canvas.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + side), min(H, y0 + side)
    if cx1 > cx0 and cy1 > cy0:
        part = big[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        alpha = mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        region = canvas[cy0:cy1, cx0:cx1].astype(np.float32)
        canvas[cy0:cy1, cx0:cx1] = np.clip(region * (1 - alpha) + part * alpha, 0, 255).astype(np.uint8)
    return (int(round(center[0] - size / 2)), int(round(center[1] - size / 2)), size, size)


def open_mouth(face: np.ndarray, amount: float) -> np.ndarray:
    """A grayscale face image (FER-2013 framing: eyes at ~0.38, mouth at ~0.74 of the height) with
    its jaw dropped by `amount` (0: as it is, 1: wide open): the part below the upper lip is
    stretched down and the gap between the lips darkened."""
    import cv2

    if amount <= 0:
        return face
    h, w = face.shape[:2]
    lip = 0.70 * h  # the upper lip: above it nothing moves
    drop = amount * 0.10 * h
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # below the lip, a pixel shows what was `drop` higher, fading out towards the chin's bottom
    fade = np.clip((yy - lip) / max(1.0, drop), 0, 1) * np.clip((h - yy) / (0.3 * h), 0, 1)
    src_y = yy - drop * fade
    out = cv2.remap(face, xx, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    cavity = np.zeros((h, w), np.float32)
    cv2.ellipse(cavity, (w // 2, int(lip + drop / 2)), (int(0.13 * w), max(1, int(drop / 2))), 0, 0, 360, 1.0, -1)
    cavity = cv2.GaussianBlur(cavity, (0, 0), max(1.0, 0.01 * w))
    return np.clip(out * (1 - 0.8 * cavity) + 20 * 0.8 * cavity, 0, 255).astype(np.uint8)


def syllables(duration: float, sample_rate: int, spans: list[tuple[float, float]], seed: int = 0) -> tuple[np.ndarray, Callable[[float], float]]:
    """Speech-like audio (mono float32): harmonic bursts of random lengths (0.1-0.3 s) and loudness
    inside the `spans` (start, end seconds), silence elsewhere; and the mouth opening (0-1) at any
    time, following the bursts' loudness."""
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    env = np.zeros(n, np.float32)
    for start, end in spans:
        t = start
        while t < end:
            length = float(rng.uniform(0.1, 0.3))
            a, b = int(t * sample_rate), int(min(end, t + length) * sample_rate)
            if b > a:
                env[a:b] = float(rng.uniform(0.4, 1.0)) * np.sin(np.linspace(0, np.pi, b - a)) ** 0.5
            t += length + float(rng.uniform(0.02, 0.08))
    time = np.arange(n) / sample_rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * time)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.3 * np.sin(3 * phase) + 0.2 * np.sin(5 * phase)
    audio = (0.3 * env * voice / 2.0).astype(np.float32)

    def opening(at: float) -> float:
        k = int(at * sample_rate)
        return float(env[k]) if 0 <= k < n else 0.0

    return audio, opening


def make_people_clip(path: str | Path, faces: list[np.ndarray], *, speaker: int | None, duration: float = 8.0,
                     width: int = 640, height: int = 360, fps: int = 15, face_size: int = 120,
                     speech: list[tuple[float, float]] | None = None, sample_rate: int = 16000, seed: int = 0,
                     positions: list[Callable[[float], tuple[float, float]]] | None = None) -> Path:
    """A clip of real faces (grayscale images, e.g. FER-2013's) side by side over a textured
    backdrop, with speech-like audio in the `speech` spans (default: all of it); the face at index
    `speaker` opens its mouth with the audio's loudness, the others stay still (None: the voice
    is off-screen). `positions`: each face's centre over time (default: fixed, evenly spread)."""
    rng = np.random.default_rng(seed)
    backdrop = background("texture", height, width, rng)
    audio, opening = syllables(duration, sample_rate, speech if speech is not None else [(0.0, duration)], seed)
    if positions is None:
        positions = [(lambda t, k=k: ((k + 0.5) * width / len(faces), height / 2)) for k in range(len(faces))]
    frames = np.empty((int(round(duration * fps)), height, width, 3), np.uint8)
    for i in range(len(frames)):
        t = i / fps
        frame = backdrop.copy()
        for k, face in enumerate(faces):
            img = open_mouth(face_resized(face, face_size), opening(t)) if k == speaker else face_resized(face, face_size)
            place_face(frame, img, positions[k](t), face_size)
        frames[i] = frame[:, :, None]
    return make_clip(path, duration=duration, width=width, height=height, fps=fps, frames=frames, audio=audio,
                     sample_rate=sample_rate)


def detectable_faces(paths: list[Path], count: int, size: int = 100) -> list[np.ndarray]:
    """The first `count` of these face images (grayscale) that YuNet finds, alone, at `size` px
    under `place_face`'s oval mask over a textured backdrop: real faces a test or an experiment
    can rely on being seen."""
    import cv2

    from .faces import FaceDetector

    detector = FaceDetector("yunet")
    backdrop = background("texture", size * 2, size * 2, np.random.default_rng(0))
    found = []
    for path in paths:
        face = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if face is None:
            continue
        frame = backdrop.copy()
        place_face(frame, face, (size, size), size)
        if len(detector.detect(frame)) == 1:
            found.append(face)
            if len(found) == count:
                break
    return found


def face_resized(face: np.ndarray, size: int) -> np.ndarray:
    """A square face image at `size` pixels (area-averaged down, cubic up)."""
    import cv2

    return cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC if size > face.shape[0] else cv2.INTER_AREA)
