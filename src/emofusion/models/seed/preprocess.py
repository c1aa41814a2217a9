"""How media becomes a seed model's inputs: one function per step, shared by training
(`emofusion.train.multimodal`) and analysis (`emofusion.models.seed_backend` through the
Analyzer), so the two cannot drift apart. The settings (`frames`, `size`, `audio_seconds`)
travel in the checkpoint's config as `preprocess`.

video: `sample_times` over a span -> decoded RGB frames -> `square_frame` each ->
       `fill_frames` to the count -> `normalize_video` (Kinetics mean and std);
audio: 16 kHz mono -> `fit_audio` (the first `audio_seconds`, zero-padded: `features.fit_length`) + real length;
text:  the encoder's own `tokenize` (its saved tokenizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ...features import SAMPLE_RATE, fit_length
from .resnet import KINETICS_MEAN, KINETICS_STD

DEFAULT_PREPROCESS: dict[str, Any] = {"frames": 16, "size": 112, "audio_seconds": 3.0}


def preprocess_settings(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The complete preprocessing settings: the defaults updated with `overrides`."""
    return {**DEFAULT_PREPROCESS, **(overrides or {})}


def sample_times(start: float, end: float, frames: int) -> list[float]:
    """`frames` instants spread evenly over [start, end): the middle of each equal part."""
    span = max(end - start, 1e-3)
    return [start + span * (i + 0.5) / frames for i in range(frames)]


def square_frame(image: np.ndarray, size: int) -> np.ndarray:
    """An (H, W, 3) uint8 picture resized to the seed models' square `size` x `size` input."""
    import cv2

    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def fill_frames(frames: Sequence[np.ndarray], count: int) -> np.ndarray:
    """`count` frames as (count, S, S, 3): a short list repeats its last frame (never empty)."""
    if not frames:
        raise ValueError("no frames to fill from")
    got = list(frames)[:count]
    while len(got) < count:
        got.append(got[-1])
    return np.stack(got)


def clip_frames(path: str | Path, frames: int, size: int, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """`frames` RGB frames sampled evenly over [start, end) of a video, as (T, size, size, 3) uint8.

    The picture is resized to size x size (the seed models' square input); a clip shorter
    than `frames` frames repeats its frames; a clip with no video raises MediaError.
    """
    from ...media import MediaError, iter_frames, probe

    stop = end if end is not None else (probe(path).duration or 0.0)
    got = [square_frame(img, size) for _, img in iter_frames(path, sample_times(start, stop, frames), fmt="rgb")]
    if not got:
        raise MediaError("no video frames decode")
    return fill_frames(got, frames)


def normalize_video(frames: np.ndarray | torch.Tensor, mean=KINETICS_MEAN, std=KINETICS_STD) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) float normalised with the Kinetics mean and std."""
    x = torch.as_tensor(frames).float().div_(255.0)
    x = (x - torch.tensor(mean)) / torch.tensor(std)
    return x.permute(0, 4, 1, 2, 3).contiguous()


def audio_samples(seconds: float) -> int:
    """Samples in `seconds` of 16 kHz audio (the audio encoders' fixed input length)."""
    return int(round(float(seconds) * SAMPLE_RATE))


def fit_audio(wav: np.ndarray, length: int) -> tuple[np.ndarray, int]:
    """The first `length` samples of `wav`, zero-padded to `length` (float32), and how many
    are real (at least 1, so an empty clip still has one step)."""
    samples = np.asarray(wav, dtype=np.float32)
    return np.array(fit_length(samples, length, offset=0)), max(1, min(len(samples), length))  # a copy, never a view


__all__ = [
    "DEFAULT_PREPROCESS",
    "audio_samples",
    "clip_frames",
    "fill_frames",
    "fit_audio",
    "normalize_video",
    "preprocess_settings",
    "sample_times",
    "square_frame",
]
