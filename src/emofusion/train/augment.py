"""Batched training augmentations for face crops and voice waveforms / log-mels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_faces(x: torch.Tensor, generator: torch.Generator, *, flip: bool = True, max_rotation_deg: float = 10.0,
                  scale: tuple[float, float] = (0.9, 1.1), max_shift: float = 0.08,
                  brightness: float = 0.2, contrast: float = 0.2, crop: int | None = None) -> torch.Tensor:
    """Random flip, rotation, scale, shift (one affine warp) and brightness/contrast on (N, 1, S, S) normalised crops.

    With `crop`, a random crop x crop patch is returned (the nets pool globally, so they
    train on smaller patches and run on the full crop at inference, which is cheaper to train).
    """
    n = x.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    angle = (u(n) * 2 - 1) * math.radians(max_rotation_deg)
    s = scale[0] + u(n) * (scale[1] - scale[0])
    sign = torch.where(u(n) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * sign
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * sign
    theta[:, 1, 1] = cos
    theta[:, :, 2] = (u(n, 2) * 2 - 1) * max_shift * 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    c = 1 + (u(n, 1, 1, 1) * 2 - 1) * contrast
    b = (u(n, 1, 1, 1) * 2 - 1) * brightness * 4  # crops are normalised with std 0.25: 0.2 of full scale = 0.8
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * c + mean + b
    if crop is not None and crop < x.shape[-1]:
        y0, x0 = (int(v) for v in torch.randint(0, x.shape[-1] - crop + 1, (2,), generator=generator))
        out = out[:, :, y0 : y0 + crop, x0 : x0 + crop]
    return out


def augment_waveforms(wavs: torch.Tensor, generator: torch.Generator, *, noise_snr_db: tuple[float, float] = (10.0, 40.0),
                      gain_db: float = 6.0, speed: tuple[float, float] = (0.9, 1.1), noise_prob: float = 0.5) -> torch.Tensor:
    """Random speed (resampling), gain and additive white noise at a random SNR on (N, T) waveforms."""
    n, length = wavs.shape
    u = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    out = torch.empty_like(wavs)
    factors = speed[0] + u(n) * (speed[1] - speed[0])
    for i in range(n):
        f = float(factors[i])
        new_len = max(16, int(round(length / f)))
        stretched = F.interpolate(wavs[i].view(1, 1, -1), size=new_len, mode="linear", align_corners=False).view(-1)
        if new_len >= length:
            out[i] = stretched[:length]
        else:
            out[i] = F.pad(stretched, (0, length - new_len))
    gains = 10 ** (((u(n, 1) * 2 - 1) * gain_db) / 20)
    out = out * gains
    power = out.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-10)
    snr = noise_snr_db[0] + u(n, 1) * (noise_snr_db[1] - noise_snr_db[0])
    noise = torch.randn(out.shape, generator=generator) * torch.sqrt(power / 10 ** (snr / 10))
    apply = (u(n, 1) < noise_prob).float()
    return (out + noise * apply).clamp(-1.0, 1.0)


def spec_augment(mels: torch.Tensor, generator: torch.Generator, *, freq_masks: int = 2, freq_width: int = 8,
                 time_masks: int = 2, time_width: int = 20) -> torch.Tensor:
    """SpecAugment: zero random mel bands and time spans of (N, M, T) normalised log-mels."""
    out = mels.clone()
    n, m, t = out.shape
    for i in range(n):
        for _ in range(freq_masks):
            w = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
            f0 = int(torch.randint(0, max(1, m - w), (1,), generator=generator))
            out[i, f0 : f0 + w, :] = 0.0
        for _ in range(time_masks):
            w = int(torch.randint(0, min(time_width, t) + 1, (1,), generator=generator))
            t0 = int(torch.randint(0, max(1, t - w), (1,), generator=generator))
            out[i, :, t0 : t0 + w] = 0.0
    return out
