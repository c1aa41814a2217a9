"""The voice net: a log-mel spectrogram -> emotion logits."""

from __future__ import annotations

import torch
from torch import nn


class VoiceNet(nn.Module):
    """2-D CNN over (mel, time) with global pooling, so any clip length works."""

    def __init__(self, num_classes: int, channels: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.3,
                 convs_per_block: int = 1):
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
