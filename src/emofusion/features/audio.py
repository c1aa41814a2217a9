"""Loudness, voice activity, and fitting a waveform to a length."""

from __future__ import annotations

import math

import numpy as np


def rms_dbfs(waveform: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for digital silence)."""
    if waveform.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def speech_fraction(waveform: np.ndarray, threshold_dbfs: float = -60.0, frame: int = 400) -> float:
    """Fraction of 25 ms frames louder than `threshold_dbfs`: a cheap energy voice-activity test.

    The default is low on purpose: studio speech corpora (RAVDESS) sit at -50 to -60 dBFS
    RMS, and the log-mel is gain-normalised, so only near-silence is left out.
    """
    n = waveform.size // frame
    if n == 0:
        return 0.0
    frames = waveform[: n * frame].reshape(n, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    level = 20.0 * np.log10(np.maximum(rms, 1e-12))
    return float(np.mean(level > threshold_dbfs))


def fit_length(wav: np.ndarray, length: int, offset: int | None = None, crop: bool = True) -> np.ndarray:
    """`wav` made exactly `length` samples long: cut to `length` samples starting at `offset`
    (clamped so the cut fits; None: centred) when longer, zero-padded at the end when shorter.

    With `crop=False` a longer waveform is returned whole, so the result is at least `length`
    samples. The dtype is kept; a cut is a view of `wav`.
    """
    if len(wav) >= length:
        if not crop:
            return wav
        start = (len(wav) - length) // 2 if offset is None else min(offset, len(wav) - length)
        return wav[start : start + length]
    return np.pad(wav, (0, length - len(wav)))
