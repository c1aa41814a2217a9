"""The voice net: a log-mel spectrogram -> emotion logits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..features import matmul_in_torch
from .settings import settings_from_part, settings_to_part


@dataclass(frozen=True)
class VoiceNetConfig:
    """The voice net's settings and their defaults: the `voice` part of a model's config.json
    (beside `preprocess`, a features.MelConfig, and `functionals`) and of a voice recipe's [model] table."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.3
    convs_per_block: int = 1
    segment_seconds: float = 2.0  # length of the clips the net trains on

    @classmethod
    def from_dict(cls, part: Mapping[str, Any] | None) -> "VoiceNetConfig":
        """The settings `part` gives, the defaults for the others."""
        return settings_from_part(cls, part)

    def to_dict(self) -> dict[str, Any]:
        """The keys these settings take in config.json's `voice` part."""
        return settings_to_part(self)


class VoiceNet(nn.Module):
    """2-D CNN over (mel, time) with global pooling, so any clip length works."""

    def __init__(self, num_classes: int, channels: tuple[int, ...] = VoiceNetConfig.channels,
                 dropout: float = VoiceNetConfig.dropout, convs_per_block: int = VoiceNetConfig.convs_per_block):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in channels:
            for k in range(convs_per_block):
                layers += [
                    nn.Conv2d(c_in if k == 0 else c_out, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
            layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, num_classes))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: (N, n_mels, frames) -> (N, num_classes) logits."""
        h = self.features(mel.unsqueeze(1))
        h = h.mean(dim=2)  # over mel bands -> (N, C, T)
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return self.head(pooled)


# Standardised functionals are held within this many standard deviations of the training clips
# before the linear layer: a linear model extrapolates without bound, and audio far from speech
# (a pure tone) lies thousands of standard deviations out on some features and would get a
# probability of 1.0. Held-out speech stays within about 4.5 on every feature.
Z_LIMIT = 5.0


# A speaker's spread of a functional below this is taken as no spread: the feature is then the
# same in every clip (or window) of that speaker, and standardises to 0.
MIN_SPEAKER_SCALE = 1e-6


@dataclass(frozen=True)
class SpeakerBaseline:
    """One speaker's mean and spread of the voice functionals: over their clips in a corpus, or
    over the voiced windows of one recording (the recording's calibration)."""

    mean: np.ndarray
    scale: np.ndarray
    count: int

    @classmethod
    def of(cls, feats: np.ndarray) -> "SpeakerBaseline":
        """The baseline of (N, D) functionals of one speaker (N >= 1)."""
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or len(feats) == 0:
            raise ValueError("a speaker baseline needs at least one row of functionals")
        scale = feats.std(axis=0)
        scale[scale < MIN_SPEAKER_SCALE] = 1.0
        return cls(feats.mean(axis=0), scale, len(feats))

    def standardise(self, feats: np.ndarray) -> np.ndarray:
        """(N, D) functionals relative to this speaker: (x - mean) / scale."""
        return (np.asarray(feats, dtype=np.float64) - self.mean) / self.scale


def standardise_per_speaker(feats: np.ndarray, speakers: list[str] | np.ndarray) -> np.ndarray:
    """Each row of (N, D) functionals standardised over the rows of its own speaker."""
    speakers = np.asarray(speakers)
    out = np.empty(feats.shape, dtype=np.float64)
    for name in np.unique(speakers):
        rows = speakers == name
        out[rows] = SpeakerBaseline.of(feats[rows]).standardise(feats[rows])
    return out


class VoiceFunctionalsHead(nn.Module):
    """A linear classifier on standardised acoustic functionals (spectral_v1 or openSMILE), beside the CNN.

    An L2 logistic regression fitted on the training speakers' whole clips; its probabilities
    are combined with the CNN's by `combine_voice`. At inference the standardised features are
    clipped to +-Z_LIMIT.

    With `calibrated`, a second regression (`self.calibrated`) reads the functionals standardised
    per speaker (`standardise_per_speaker` in training, a recording's own `SpeakerBaseline` at
    inference): the reading relative to that speaker's range.
    """

    def __init__(self, dim: int, num_classes: int, calibrated: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("weight", torch.zeros(num_classes, dim))
        self.register_buffer("bias", torch.zeros(num_classes))
        self.calibrated: VoiceFunctionalsHead | None = VoiceFunctionalsHead(dim, num_classes) if calibrated else None

    @property
    def dim(self) -> int:
        return int(self.mean.numel())

    def probs(self, feats: np.ndarray) -> np.ndarray:
        """(N, D) functionals -> (N, C) probabilities."""
        if feats.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim} functionals per item, got {feats.shape[1]}")
        z = np.clip((feats.astype(np.float64) - self.mean.numpy()) / self.scale.numpy(), -Z_LIMIT, Z_LIMIT)
        logits = matmul_in_torch(z, self.weight.double().T.numpy()) + self.bias.numpy()
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    @classmethod
    def fit(cls, feats: np.ndarray, y: np.ndarray, num_classes: int, c: float) -> "VoiceFunctionalsHead":
        """L2-regularised logistic regression (inverse strength `c`, balanced class weights)."""
        from sklearn.linear_model import LogisticRegression

        mean = feats.mean(axis=0)
        scale = feats.std(axis=0)
        scale[scale < 1e-8] = 1.0
        clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
        clf.fit((feats - mean) / scale, y)
        head = cls(feats.shape[1], num_classes)
        weight = np.zeros((num_classes, feats.shape[1]))
        bias = np.full(num_classes, -1e4)  # a class absent from training is never predicted
        if len(clf.classes_) == 2:  # sklearn's binary form: one row for the second class
            weight[clf.classes_[1]] = clf.coef_[0]
            bias[clf.classes_] = [0.0, clf.intercept_[0]]
        else:
            weight[clf.classes_] = clf.coef_
            bias[clf.classes_] = clf.intercept_
        for name, value in (("mean", mean), ("scale", scale), ("weight", weight), ("bias", bias)):
            getattr(head, name).copy_(torch.as_tensor(value, dtype=torch.float32))
        return head


def fit_calibrated_head(feats: np.ndarray, y: np.ndarray, speakers: list[str] | np.ndarray, num_classes: int,
                        c: float | list[float], ignore: np.ndarray | None = None) -> tuple[VoiceFunctionalsHead, float]:
    """The regression a calibrated analysis reads, fitted on functionals standardised per speaker,
    and its inverse regularisation strength: `c`, or from a list the value `select_functionals_c`
    picks. `ignore`: (D,) bool, columns the regression does not read (their weights are 0)."""
    z = standardise_per_speaker(feats, speakers)
    if ignore is not None:
        z[:, ignore] = 0.0
    grid = sorted(c) if isinstance(c, list) else [float(c)]
    chosen = select_functionals_c(z, y, list(speakers), num_classes, grid) if len(grid) > 1 else grid[0]
    head = VoiceFunctionalsHead.fit(z, y, num_classes, chosen)
    if ignore is not None:
        head.weight[:, torch.as_tensor(ignore)] = 0.0
    return head, chosen


def calibrated_probs(head: VoiceFunctionalsHead, feats: np.ndarray, baseline: SpeakerBaseline) -> np.ndarray:
    """(N, D) functionals of one speaker -> (N, C) probabilities of `head.calibrated`, relative to `baseline`."""
    if head.calibrated is None:
        raise ValueError("the voice part has no calibrated regression")
    return head.calibrated.probs(baseline.standardise(feats))


def select_functionals_c(feats: np.ndarray, y: np.ndarray, speakers: list[str], num_classes: int,
                         grid: list[float], groups: int = 5, seed: int = 0) -> float:
    """The inverse regularisation strength from `grid` whose heads give the highest log-likelihood
    on held-out speakers: the speakers are dealt (seeded shuffle) into `groups` groups, each group
    is predicted by a head fitted on the others. Ties go to the smaller c (stronger regularisation)."""
    names = sorted(set(speakers))
    if len(names) < 2:
        raise ValueError("choosing c needs clips of at least two speakers")
    order = np.random.default_rng(seed).permutation(len(names))
    group_of = {names[i]: k % min(groups, len(names)) for k, i in enumerate(order)}
    g = np.array([group_of[s] for s in speakers])
    y = np.asarray(y)
    best_c, best = grid[0], -np.inf
    for c in sorted(grid):
        loglik = 0.0
        for k in np.unique(g):
            train, held = g != k, g == k
            probs = VoiceFunctionalsHead.fit(feats[train], y[train], num_classes, c).probs(feats[held])
            loglik += float(np.log(np.clip(probs[np.arange(held.sum()), y[held]], 1e-9, 1.0)).sum())
        if loglik > best:
            best_c, best = c, loglik
    return best_c


def combine_voice(cnn_probs: np.ndarray | None, functional_probs: np.ndarray, weight: float) -> np.ndarray:
    """Weighted geometric mean of the CNN's and the functionals head's probabilities (weight on the head).
    `cnn_probs` may be None when the weight is 1: the CNN takes no part then."""
    log = weight * np.log(np.clip(functional_probs, 1e-9, 1.0))
    if weight < 1.0:
        if cnn_probs is None:
            raise ValueError(f"the CNN's probabilities are needed with a functionals weight of {weight} (< 1)")
        log = log + (1.0 - weight) * np.log(np.clip(cnn_probs, 1e-9, 1.0))
    log -= log.max(axis=1, keepdims=True)
    e = np.exp(log)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
