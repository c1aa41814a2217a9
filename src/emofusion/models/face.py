"""The face net: a grayscale face crop -> emotion logits."""

from __future__ import annotations

import torch
from torch import nn


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

    def __init__(self, num_classes: int, channels: tuple[int, ...] = (32, 64, 128, 256), dropout: float = 0.4):
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
