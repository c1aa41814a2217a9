"""Preprocessing shared by training and inference: log-mel, mel filters, face crops, VAD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emofusion.features import (
    FaceConfig,
    MelConfig,
    crop_face,
    fit_length,
    log_mel,
    mel_filterbank,
    normalize_faces,
    num_mel_frames,
    rms_dbfs,
    speech_fraction,
)

SR = 16000


def sine(hz: float, seconds: float, amplitude: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def noise(seconds: float, seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


# ------------------------------------------------------------------------------ log-mel


@pytest.mark.parametrize("samples", [16000, 32000, 8000, 12345, 400, 100, 1])
def test_log_mel_shape_matches_num_mel_frames(samples):
    out = log_mel(noise(1.0)[:samples] if samples <= 16000 else noise(2.0)[:samples])
    assert out.shape == (64, num_mel_frames(samples))
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_num_mel_frames_is_one_per_hop():
    assert num_mel_frames(16000) == 101  # 10 ms hop, centred frames
    assert num_mel_frames(32000) == 201
    assert num_mel_frames(16000, MelConfig(hop_length=320)) == 51
    assert log_mel(noise(1.0), MelConfig(n_mels=40)).shape == (40, 101)


@pytest.mark.parametrize("amplitude", [0.5, 0.01])
def test_log_mel_is_normalised_per_utterance(amplitude):
    out = log_mel(noise(1.5, amplitude=amplitude))
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(out.std()) == pytest.approx(1.0, abs=1e-3)


def test_log_mel_does_not_depend_on_gain():
    x = noise(1.0, seed=3)
    diff = (log_mel(x) - log_mel(0.1 * x)).abs()
    # only the 1e-6 floor under the log tells them apart (a little, in the lowest bands)
    assert float(diff.max()) < 0.02 and float(diff.mean()) < 1e-3


def test_log_mel_of_silence_is_finite():
    out = log_mel(np.zeros(SR, np.float32))
    assert torch.isfinite(out).all()
    assert float(out.abs().max()) < 0.01  # constant input -> (about) zeros after normalisation


def test_log_mel_batch_equals_single():
    a, b, c = noise(1.0, seed=1), sine(440, 1.0), noise(1.0, seed=2, amplitude=0.05)
    batch = log_mel(np.stack([a, b, c]))
    assert batch.shape == (3, 64, 101)
    for i, x in enumerate((a, b, c)):
        assert torch.allclose(batch[i], log_mel(x), atol=1e-5)
    # a torch tensor input gives the same as numpy
    assert torch.allclose(log_mel(torch.from_numpy(a)), log_mel(a))


def test_one_khz_tone_peaks_at_the_right_mel_band():
    cfg = MelConfig()

    def mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    centres = np.linspace(mel(cfg.f_min), mel(cfg.f_max), cfg.n_mels + 2)[1:-1]
    expected = int(np.argmin(np.abs(centres - mel(1000.0))))
    out = log_mel(sine(1000.0, 1.0))
    band = int(out[:, 5:-5].mean(dim=1).argmax())
    assert band == expected
    # a higher tone lands in a higher band
    high = int(log_mel(sine(3000.0, 1.0))[:, 5:-5].mean(dim=1).argmax())
    assert high > band + 10


# -------------------------------------------------------------------------- mel filters


def test_mel_filterbank_shape_and_triangles():
    cfg = MelConfig()
    fb = mel_filterbank(cfg).numpy()
    assert fb.shape == (cfg.n_mels, cfg.n_fft // 2 + 1)
    assert (fb >= 0).all() and fb.max() <= 1.0 + 1e-6
    peaks = []
    for k, f in enumerate(fb):
        nz = np.flatnonzero(f)
        assert nz.size >= 1, f"filter {k} is empty"
        assert (np.diff(nz) == 1).all(), f"filter {k} has a gap"  # contiguous support
        peak = int(np.argmax(f))
        rising, falling = f[: peak + 1], f[peak:]
        assert (np.diff(rising) >= 0).all() and (np.diff(falling) <= 0).all(), f"filter {k} has several peaks"
        peaks.append(peak)
    assert peaks == sorted(peaks)  # centres increase with the band index
    # no energy below f_min or above f_max
    freqs = np.linspace(0, cfg.sample_rate / 2, fb.shape[1])
    assert fb[:, freqs < cfg.f_min].sum() == 0 and fb[:, freqs > cfg.f_max].sum() == 0


def test_mel_filterbank_follows_its_config():
    fb = mel_filterbank(MelConfig(n_mels=40, n_fft=512))
    assert tuple(fb.shape) == (40, 257)


# ---------------------------------------------------------------------------- face crop


def test_crop_face_inside_the_image_is_the_box_plus_margin():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (100, 120), dtype=np.uint8)
    # box 40x40 at (30, 30), margin 0.1 -> side 48, centred at (50, 50): img[26:74, 26:74]
    crop = crop_face(img, (30, 30, 40, 40), FaceConfig(size=48, margin=0.1))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    assert np.array_equal(crop, img[26:74, 26:74])


@pytest.mark.parametrize("size", [32, 48, 64])
def test_crop_face_output_size(size):
    img = np.full((90, 160), 77, np.uint8)
    for box in [(10, 10, 30, 50), (100, 20, 60, 60), (0, 0, 5, 5)]:
        crop = crop_face(img, box, FaceConfig(size=size))
        assert crop.shape == (size, size)


def test_crop_face_pads_with_edge_pixels():
    img = np.tile((np.arange(100) + 50).astype(np.uint8), (100, 1))  # img[y, x] = x + 50
    # box at the left edge: the margin runs 4 px off the image
    crop = crop_face(img, (0, 30, 40, 40), FaceConfig(size=48, margin=0.1))
    assert crop.shape == (48, 48)
    assert (crop[:, :5] == 50).all()  # 4 replicated columns + column 0, never black
    assert (crop[:, 5] == 51).all() and (crop[:, -1] == 50 + 43).all()
    # a box partly outside the image (bottom-right corner) is padded too
    corner = crop_face(np.full((60, 60), 200, np.uint8), (45, 45, 30, 30), FaceConfig(size=48))
    assert corner.shape == (48, 48) and (corner == 200).all()


def test_normalize_faces_shape_dtype_and_scale():
    crops = np.stack([np.zeros((48, 48), np.uint8), np.full((48, 48), 255, np.uint8)])
    out = normalize_faces(crops, FaceConfig())
    assert out.shape == (2, 1, 48, 48) and out.dtype == torch.float32
    assert torch.allclose(out[0], torch.full((1, 48, 48), -2.0))  # (0 - 0.5) / 0.25
    assert torch.allclose(out[1], torch.full((1, 48, 48), 2.0))  # (1 - 0.5) / 0.25
    single = normalize_faces(np.full((32, 32), 128, np.uint8), FaceConfig(size=32))
    assert single.shape == (1, 1, 32, 32)


# ----------------------------------------------------------------------------- VAD


def test_speech_fraction_silence_vs_tone():
    assert speech_fraction(np.zeros(SR, np.float32)) == 0.0
    assert speech_fraction(sine(220, 1.0)) == 1.0
    assert speech_fraction(sine(220, 1.0, amplitude=1e-4)) == 0.0  # -83 dBFS: below the threshold
    half = np.concatenate([np.zeros(SR // 2, np.float32), sine(220, 0.5)])
    assert speech_fraction(half) == pytest.approx(0.5, abs=0.03)
    assert speech_fraction(np.zeros(100, np.float32)) == 0.0  # shorter than one frame


def test_rms_dbfs():
    assert rms_dbfs(np.zeros(10, np.float32)) == -np.inf
    assert rms_dbfs(np.ones(10, np.float32)) == pytest.approx(0.0)
    assert rms_dbfs(sine(1000, 1.0, amplitude=1.0)) == pytest.approx(-3.01, abs=0.05)


# ----------------------------------------------------------------------------- fitting audio to a length


def test_fit_length_cuts_at_the_offset_or_the_centre_and_pads_at_the_end():
    wav = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(wav, 4), [3, 4, 5, 6])  # centred
    np.testing.assert_array_equal(fit_length(wav, 4, offset=0), [0, 1, 2, 3])  # the start (seed models)
    np.testing.assert_array_equal(fit_length(wav, 4, offset=2), [2, 3, 4, 5])  # a training time shift
    np.testing.assert_array_equal(fit_length(wav, 4, offset=99), [6, 7, 8, 9])  # clamped to fit
    padded = fit_length(wav, 13, offset=0)
    np.testing.assert_array_equal(padded, [*range(10), 0, 0, 0])
    assert padded.dtype == np.float32 and fit_length(wav.astype(np.float64), 4).dtype == np.float64
    assert fit_length(wav, 4, crop=False) is wav  # evaluation: a long clip is kept whole
    np.testing.assert_array_equal(fit_length(wav, 12, crop=False), [*range(10), 0, 0])
    np.testing.assert_array_equal(fit_length(np.zeros(0, np.float32), 3), [0, 0, 0])
