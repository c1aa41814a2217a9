"""Loudness and voice activity of a waveform."""

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

