"""Utterance-level acoustic functionals for the voice net's linear head: our own `spectral_v1`
set (spectral and pitch contours, each summarised by 13 statistics) or one of openSMILE's."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .mel import SAMPLE_RATE, MelConfig, mel_filterbank, power_spectrogram
from .opensmile import OPENSMILE_FEATURE_SETS, opensmile_functionals

# Spectral functionals: a cheap acoustic feature set of our own (about 3 ms per 2 s window on one
# core, against ~70 ms for openSMILE's ComParE 2016), for the voice net's linear head.
SPECTRAL_SET = "spectral_v1"
_SPECTRAL_STFT = MelConfig(n_fft=400, hop_length=320, n_mels=64)  # 25 ms windows every 20 ms
_SPECTRAL_MFCC = 20
_SPECTRAL_ACTIVE_DB = 40.0  # frames within this many dB of the loudest one are summarised
_PITCH_FRAME = 640  # 40 ms: more than two periods of the lowest pitch searched
_PITCH_FFT = 1024  # >= frame + longest lag: the circular autocorrelation equals the linear one
_PITCH_MIN_HZ, _PITCH_MAX_HZ = 60, 500
_PITCH_VOICED = 0.45  # normalised autocorrelation peak above which a frame counts as voiced
_QUANTILES = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
_FUNCTIONALS_PER_CONTOUR = 13


def matmul_in_torch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b (float64) through torch, whose threads the pipeline sets: NumPy's BLAS would start its
    own threads (one per core) on these sizes, and they keep spinning after each product, taking a
    core from the decoding and face-detection threads (measured: 13-15% of a 10 s clip's wall time)."""
    return torch.matmul(torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))).numpy()


def _contour_functionals(x: np.ndarray) -> np.ndarray:
    """(K, T) contours -> (K, 13): mean, std, 10/25/50/75/90th percentiles, 10-90 range, linear
    slope, skewness, kurtosis, mean absolute and std of the frame-to-frame difference."""
    k, t = x.shape
    q = np.sort(x, axis=1)[:, np.minimum(np.round(_QUANTILES * (t - 1)).astype(int), t - 1)]
    mean = x.mean(axis=1)
    std = x.std(axis=1)
    z = (x - mean[:, None]) / (std[:, None] + 1e-9)
    ramp = np.linspace(-1.0, 1.0, t) if t > 1 else np.zeros(1)
    slope = (x * ramp).sum(axis=1) / max(float((ramp * ramp).sum()), 1e-9)
    d = np.diff(x, axis=1) if t > 1 else np.zeros((k, 1))
    return np.column_stack([mean, std, q, q[:, 4] - q[:, 0], slope, (z**3).mean(axis=1), (z**4).mean(axis=1),
                            np.abs(d).mean(axis=1), d.std(axis=1)])


def _pitch_track(wav: np.ndarray, sample_rate: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: F0 in Hz (the autocorrelation peak's lag) and the peak's height (0..1, voicing)."""
    if len(wav) < _PITCH_FRAME:
        wav = np.pad(wav, (0, _PITCH_FRAME - len(wav)))
    n = 1 + (len(wav) - _PITCH_FRAME) // hop
    idx = np.arange(_PITCH_FRAME)[None, :] + hop * np.arange(n)[:, None]
    frames = torch.from_numpy(np.ascontiguousarray(wav[idx], dtype=np.float32))
    frames = (frames - frames.mean(dim=1, keepdim=True)) * _hann_symmetric(_PITCH_FRAME)
    spec = torch.fft.rfft(frames, _PITCH_FFT)
    acf = torch.fft.irfft(spec.real**2 + spec.imag**2, _PITCH_FFT)[:, :_PITCH_FRAME].numpy().astype(np.float64)
    lo, hi = sample_rate // _PITCH_MAX_HZ, sample_rate // _PITCH_MIN_HZ
    norm = acf[:, lo:hi] / (acf[:, :1] + 1e-12)
    return sample_rate / (norm.argmax(axis=1) + lo), norm.max(axis=1)


@lru_cache(maxsize=2)
def _hann_symmetric(n: int) -> torch.Tensor:
    return torch.hann_window(n, periodic=False)


@lru_cache(maxsize=1)
def _spectral_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mel filters, DCT-II rows for the MFCCs, and the STFT bins' frequencies in Hz."""
    cfg = _SPECTRAL_STFT
    dct = np.cos(np.pi / cfg.n_mels * (np.arange(cfg.n_mels)[None, :] + 0.5) * np.arange(_SPECTRAL_MFCC)[:, None])
    freqs = np.linspace(0.0, cfg.sample_rate / 2.0, cfg.n_fft // 2 + 1)
    return mel_filterbank(cfg).numpy().astype(np.float64), dct, freqs


def spectral_functionals(wav: np.ndarray) -> np.ndarray:
    """The `spectral_v1` features of one 16 kHz waveform -> (1185,) float32.

    Contours over the frames within 40 dB of the loudest (all frames when fewer than three):
    the 64 log-mel bands (less their common mean: gain does not matter), 20 MFCCs, log energy,
    spectral centroid, flatness, alpha ratio (1-5 kHz over 50 Hz-1 kHz) and flux; each summarised
    by 13 functionals (`_contour_functionals`); then the same 13 of the log-F0 in semitones over
    voiced frames (zeros when fewer than three) and of the voicing strength, the active and the
    voiced fraction. The STFT is `power_spectrogram`'s, the mel filters `mel_filterbank`'s.
    """
    cfg = _SPECTRAL_STFT
    fbank, dct, freqs = _spectral_tables()
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    power = power_spectrogram(torch.from_numpy(wav)[None], cfg)[0].numpy().astype(np.float64)
    energy = np.log(power.sum(axis=0) + 1e-10)
    active = energy > energy.max() - _SPECTRAL_ACTIVE_DB * math.log(10) / 10
    if active.sum() < 3:
        active[:] = True
    mel = np.log(matmul_in_torch(fbank, power[:, active]) + 1e-10)
    mel -= mel.mean()
    spec = power[:, active] + 1e-12
    centroid = (freqs[:, None] * spec).sum(axis=0) / spec.sum(axis=0) / 1000.0
    log_spec = np.log(spec)
    flatness = log_spec.mean(axis=0) - np.log(spec.mean(axis=0))
    low = spec[(freqs >= 50) & (freqs < 1000)].sum(axis=0)
    high = spec[(freqs >= 1000) & (freqs < 5000)].sum(axis=0)
    flux = np.sqrt((np.diff(log_spec, axis=1) ** 2).mean(axis=0)) if log_spec.shape[1] > 1 else np.zeros(1)
    flux = np.concatenate([flux, flux[-1:]])
    contours = np.vstack([mel, matmul_in_torch(dct, mel), energy[active][None] - energy.max(), centroid[None], flatness[None],
                          np.log(high / low)[None], flux[None]])
    f0, strength = _pitch_track(wav, cfg.sample_rate, cfg.hop_length)
    n = min(len(f0), len(active))
    voiced = (strength[:n] > _PITCH_VOICED) & active[:n]
    semitones = 12.0 * np.log2(f0[:n][voiced] / 100.0) if voiced.sum() >= 3 else np.zeros(3)
    strength_active = strength[:n][active[:n]] if active[:n].sum() >= 3 else strength
    return np.concatenate([
        _contour_functionals(contours).reshape(-1),
        _contour_functionals(semitones[None]).reshape(-1),
        _contour_functionals(strength_active[None]).reshape(-1),
        [active.mean(), voiced.mean()],
    ]).astype(np.float32)


SPECTRAL_DIM = (_SPECTRAL_STFT.n_mels + _SPECTRAL_MFCC + 5 + 2) * _FUNCTIONALS_PER_CONTOUR + 2
_LEVEL_FUNCTIONALS = (0, 2, 3, 4, 5, 6)  # mean and the five percentiles of a contour


def spectral_band_level_columns() -> np.ndarray:
    """(SPECTRAL_DIM,) bool: the `spectral_v1` columns that give the level of each log-mel band and
    MFCC (its mean and percentiles), which a room, a microphone or a codec shifts; their spread,
    shape and dynamics are the other columns."""
    columns = np.zeros(SPECTRAL_DIM, dtype=bool)
    for contour in range(_SPECTRAL_STFT.n_mels + _SPECTRAL_MFCC):
        columns[contour * _FUNCTIONALS_PER_CONTOUR + np.array(_LEVEL_FUNCTIONALS)] = True
    return columns

ACOUSTIC_FEATURE_SETS = (SPECTRAL_SET, *OPENSMILE_FEATURE_SETS)


def acoustic_functionals(wavs: list[np.ndarray], feature_set: str = "ComParE_2016",
                         sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Utterance functionals of each waveform -> (N, D) float32 (non-finite values -> 0): our
    `spectral_v1` set (`spectral_functionals`) or one of openSMILE's.

    Each waveform is summarised on its own (its whole length), so a window gives the same
    features whether it is processed alone or beside others.
    """
    if feature_set not in ACOUSTIC_FEATURE_SETS:
        raise ValueError(f"unknown acoustic feature set {feature_set!r}; choose from {', '.join(ACOUSTIC_FEATURE_SETS)}")
    if feature_set == SPECTRAL_SET:
        if sample_rate != _SPECTRAL_STFT.sample_rate:
            raise ValueError(f"{SPECTRAL_SET} is defined on {_SPECTRAL_STFT.sample_rate} Hz audio, not {sample_rate} Hz")
        if not wavs:
            return np.zeros((0, SPECTRAL_DIM), dtype=np.float32)
        rows = np.stack([spectral_functionals(w) for w in wavs])
        return np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0)
    return opensmile_functionals(wavs, feature_set, sample_rate)

