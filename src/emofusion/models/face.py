"""The face net: a grayscale face crop -> emotion logits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from .settings import settings_from_part, settings_to_part


@dataclass(frozen=True)
class FaceNetConfig:
    """The face net's settings and their defaults: the `face` part of a model's config.json
    (beside `preprocess`, a features.FaceConfig) and of a face recipe's [model] table."""

    channels: tuple[int, ...] = (32, 64, 128, 256)
    dropout: float = 0.4
    tta_flip: bool = True  # average the prediction with that of the mirrored crop

    @classmethod
    def from_dict(cls, part: Mapping[str, Any] | None, saved: bool = True) -> "FaceNetConfig":
        """The settings `part` gives, the defaults for the others. A saved part (config.json)
        without `tta_flip` predates test-time flipping and runs without it; with saved=False
        (a recipe) new models flip by default."""
        return settings_from_part(cls, part, **({"tta_flip": False} if saved else {}))

    def to_dict(self) -> dict[str, Any]:
        """The keys these settings take in config.json's `face` part."""
        return settings_to_part(self)


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class FaceNet(nn.Module):
    """VGG-style CNN: double-conv blocks with pooling, global average pooling, dropout, linear."""

    def __init__(self, num_classes: int, channels: tuple[int, ...] = FaceNetConfig.channels,
                 dropout: float = FaceNetConfig.dropout):
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = 1
        for c_out in channels:
            blocks += [_double_conv(c_in, c_out), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c_in, c_in),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(c_in, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 1, H, W) normalised crops -> (N, num_classes) logits."""
        h = self.features(x)
        h = torch.amax(h, dim=(2, 3)) + torch.mean(h, dim=(2, 3))
        return self.head(h)
