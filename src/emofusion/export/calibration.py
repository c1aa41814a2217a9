"""Deterministic synthetic inputs for INT8 calibration: faces drawn under random pose, contrast
and noise, and voiced speech-like audio (no dataset needed)."""

from __future__ import annotations

import numpy as np

CALIBRATION_FACES = 256
CALIBRATION_CLIPS = 64


def synthetic_faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size) uint8 grayscale face crops: the synthetic face under random rotation,
    scale, shift, contrast, brightness and noise."""
    import cv2

    from ..media.synth import make_face_image

    rng = np.random.default_rng(seed)
    big = size * 2
    base = make_face_image(big)
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        m = cv2.getRotationMatrix2D((size, size), rng.uniform(-15, 15), rng.uniform(0.9, 1.2))
        m[:, 2] += rng.uniform(-0.08, 0.08, 2) * big
        img = cv2.warpAffine(base, m, (big, big), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        img = (img - 128.0) * rng.uniform(0.5, 1.5) + 128.0 + rng.uniform(-50, 50)
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        img += rng.normal(0.0, rng.uniform(0, 12), img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def synthetic_speech(n: int, seconds: float, sample_rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """(n, samples) float32 speech-like audio: harmonic voices with a wandering pitch,
    syllable-rate envelopes, random level and background noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    out = np.empty((n, len(t)), np.float32)
    for i in range(n):
        f0 = rng.uniform(90, 260) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t + rng.uniform(0, 6)))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        x = sum((rng.uniform(0.2, 1.0) / k) * np.sin(k * phase) for k in range(1, 12))
        x = x * np.clip(np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6)), 0, None) ** rng.uniform(0.5, 2)
        x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.05, 0.8)
        x = x + rng.normal(0, 1, len(t)) * 10 ** (-rng.uniform(15, 40) / 20) * np.abs(x).max()
        out[i] = x
    return out


def calibration_inputs(model, modality: str) -> np.ndarray:
    """Synthetic net inputs for the static INT8 calibration of `modality` (face or voice),
    preprocessed as at inference."""
    from ..features import log_mel, normalize_faces

    cfg = model.config
    if modality == "face":
        pre = cfg.face_preprocess
        return normalize_faces(synthetic_faces(CALIBRATION_FACES, pre.size), pre).numpy()
    if modality == "voice":
        seconds = cfg.voice_net.segment_seconds
        wavs = synthetic_speech(CALIBRATION_CLIPS, seconds, cfg.mel.sample_rate)
        return log_mel(wavs, cfg.mel).numpy()
    raise ValueError(f"no calibration for {modality!r}")
