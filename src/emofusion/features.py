"""Preprocessing shared by training and inference: the log-mel, acoustic functionals and the face crop.

Training code and the analysis pipeline both call these functions and nothing else, so
the two cannot drift apart. Their parameters travel in each model's config.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .cores import usable_cores
from .errors import AcousticFeaturesUnavailable  # noqa: F401  (re-exported: the error family lives in emofusion.errors)

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


# ------------------------------------------------------------------------------------------
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

OPENSMILE_FEATURE_SETS = ("ComParE_2016", "eGeMAPSv02")
ACOUSTIC_FEATURE_SETS = (SPECTRAL_SET, *OPENSMILE_FEATURE_SETS)
_smile_local = threading.local()
_functionals_pool: list[Any] = []  # [executor or None (one usable core)], made on first use
_functionals_pool_lock = threading.Lock()


def _functionals_executor() -> Any:
    """A thread pool as large as the cores this process may use (openSMILE releases the GIL:
    two threads run 1.7x as fast as one on two cores, with identical features)."""
    with _functionals_pool_lock:
        if not _functionals_pool:
            from concurrent.futures import ThreadPoolExecutor

            n = len(usable_cores())
            _functionals_pool.append(ThreadPoolExecutor(max_workers=n, thread_name_prefix="emofusion-smile") if n > 1 else None)
        return _functionals_pool[0]


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
    pool = _functionals_executor()
    if pool is not None and len(wavs) > 1:  # one waveform per task, spread over the cores
        return np.concatenate(list(pool.map(lambda w: _functionals_here([w], feature_set, sample_rate), wavs)))
    return _functionals_here(wavs, feature_set, sample_rate)


def _functionals_here(wavs: list[np.ndarray], feature_set: str, sample_rate: int) -> np.ndarray:
    """acoustic_functionals in the calling thread (each thread keeps its own openSMILE runner)."""
    runners = _smile_local.__dict__.setdefault("runners", {})
    run = runners.get((feature_set, sample_rate))
    if run is None:
        run = runners[(feature_set, sample_rate)] = _smile_runner(feature_set, sample_rate)
    rows = [run(np.asarray(w, dtype=np.float32)) for w in wavs]
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.nan_to_num(np.stack(rows).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


# The `opensmile` package's config file of each feature set (the paths its FeatureSet values name).
_SMILE_CONFIGS = {"ComParE_2016": "compare/ComParE_2016.conf", "eGeMAPSv02": "egemaps/v02/eGeMAPSv02.conf"}


def _smile_runner(feature_set: str, sample_rate: int) -> Any:
    """A callable waveform -> (D,) functionals, equal to the `opensmile` package's
    `Smile(feature_set, Functionals).process_signal(waveform, sample_rate)` row.

    It drives the package's own library and config files directly, configured once and reset
    between waveforms: importing `opensmile` itself costs ~1 s (pandas, audinterface) in every
    process that analyses speech, and each `process_signal` sets the library up again. Where
    the package's layout is not the one expected, the public `Smile` class is used instead
    (same numbers, slower); tests compare the two.
    """
    try:
        return _DirectSmile(feature_set, sample_rate)
    except (ImportError, OSError, AttributeError):  # FileNotFoundError is an OSError
        pass
    try:
        import opensmile
    except ImportError as exc:  # a core dependency; only a broken install lacks it
        raise AcousticFeaturesUnavailable(f"this voice model needs openSMILE features: pip install opensmile ({exc})") from None
    smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                            feature_level=opensmile.FeatureLevel.Functionals)
    return lambda wav: smile.process_signal(wav, sample_rate).to_numpy()[0]


def _opensmile_core_dir() -> str:
    """Where the installed `opensmile` package keeps its library wrapper and config files (not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("opensmile")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the opensmile package is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "core")


@lru_cache(maxsize=1)
def _opensmile_lib() -> Any:
    """The `opensmile` package's ctypes wrapper of libSMILEapi (core/lib.py: ctypes and numpy only)."""
    import importlib.util
    import sys

    name = "emofusion._opensmile_lib"
    spec = importlib.util.spec_from_file_location(name, os.path.join(_opensmile_core_dir(), "lib.py"))
    if spec is None or spec.loader is None:
        raise ImportError("opensmile/core/lib.py not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _DirectSmile:
    """openSMILE functionals of one feature set, set up once and reset after each waveform."""

    def __init__(self, feature_set: str, sample_rate: int):
        lib = _opensmile_lib()
        config_root = os.path.join(_opensmile_core_dir(), "config")
        config_file = os.path.join(config_root, _SMILE_CONFIGS[feature_set])
        if not os.path.exists(config_file):
            raise FileNotFoundError(config_file)
        options = {  # what opensmile.Smile passes for feature_level=Functionals and an in-memory signal
            "sink": os.path.join(config_root, "shared/standard_external_data_output_single.conf.inc"),
            "sinkLevel": "func",
            "bufferModeRbConf": os.path.join(config_root, "shared/BufferModeRb.conf.inc"),
            "frameModeFunctionalsConf": os.path.join(config_root, "shared/FrameModeFunctionals.conf.inc"),
            "source": os.path.join(config_root, "shared/standard_external_wave_input.conf.inc"),
            "sampleRate": sample_rate,
            "nBits": 16,
        }
        self._smile = lib.OpenSMILE()
        self._smile.initialize(config_file=config_file, options=options, loglevel=2, log_file=None, debug=False)
        self.num_features = self._smile.external_sink_get_num_elements("extsink")

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        # 16-bit samples exactly as opensmile.Smile makes them (scale by 32768, then cast)
        samples = np.array(wav, dtype=np.float32)
        samples *= 32768
        samples = samples.astype(np.int16)
        rows: list[np.ndarray] = []
        self._smile.external_sink_set_callback_ex("extsink", lambda data, meta: rows.append(np.ravel(data).copy()))
        self._smile.external_audio_source_write_data("extsource", bytes(samples))
        self._smile.external_audio_source_set_eoi("extsource")
        try:
            self._smile.run()
        finally:
            self._smile.reset()
        # a waveform too short for one frame gives no row: NaN, as opensmile.Smile fills it
        return rows[0] if rows else np.full(self.num_features, np.nan, dtype=np.float32)

    def __del__(self) -> None:
        smile = getattr(self, "_smile", None)
        if smile is not None:
            smile.free()


def num_mel_frames(num_samples: int, cfg: MelConfig = MelConfig()) -> int:
    """Number of frames log_mel returns for this many samples."""
    return 1 + max(num_samples, cfg.n_fft) // cfg.hop_length


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
