"""The log-mel spectrogram the voice nets see, and the STFT and mel filters it is made of."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class MelConfig:
    """Parameters of the log-mel spectrogram (defaults: 25 ms window, 10 ms hop, 64 mels)."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float = 8000.0

    def to_dict(self) -> dict:
        return asdict(self)


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: MelConfig) -> torch.Tensor:
    """Triangular HTK-scale mel filters, shape (n_mels, n_fft // 2 + 1)."""
    n_freqs = cfg.n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, cfg.sample_rate / 2.0, n_freqs)
    mel_points = np.linspace(_hz_to_mel(cfg.f_min), _hz_to_mel(cfg.f_max), cfg.n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    lower, center, upper = hz_points[:-2, None], hz_points[1:-1, None], hz_points[2:, None]
    rising = (fft_freqs[None, :] - lower) / (center - lower)
    falling = (upper - fft_freqs[None, :]) / (upper - center)
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return torch.from_numpy(filters.astype(np.float32))


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft)


def power_spectrogram(wav: torch.Tensor, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """(batch, samples) float audio -> (batch, n_fft // 2 + 1, frames) power spectrum (Hann window,
    centred frames, zero padding; audio shorter than one window is padded to it)."""
    if wav.shape[-1] < cfg.n_fft:
        wav = torch.nn.functional.pad(wav, (0, cfg.n_fft - wav.shape[-1]))
    spec = torch.stft(
        wav,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        window=_hann(cfg.n_fft),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    return spec.real**2 + spec.imag**2


def log_mel(waveform: np.ndarray | torch.Tensor, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """Log-mel spectrogram of 16 kHz mono audio.

    `waveform` is (samples,) or (batch, samples) float in [-1, 1]; returns
    (n_mels, frames) or (batch, n_mels, frames), natural log of mel power + 1e-6,
    normalised per utterance to zero mean and unit variance (so gain does not matter).
    """
    wav = torch.as_tensor(waveform, dtype=torch.float32)
    single = wav.ndim == 1
    if single:
        wav = wav.unsqueeze(0)
    mel = torch.matmul(mel_filterbank(cfg), power_spectrogram(wav, cfg))
    out = torch.log(mel + 1e-6)
    mean = out.mean(dim=(-2, -1), keepdim=True)
    std = out.std(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
    out = (out - mean) / std
    return out[0] if single else out


def num_mel_frames(num_samples: int, cfg: MelConfig = MelConfig()) -> int:
    """Number of frames log_mel returns for this many samples."""
    return 1 + max(num_samples, cfg.n_fft) // cfg.hop_length
