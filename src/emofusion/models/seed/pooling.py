"""Masked pooling over time and length bookkeeping for padded batches."""

from __future__ import annotations

import torch
from torch import nn


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True on the first `length` steps."""
    steps = torch.arange(max_len, device=lengths.device)
    return steps[None, :] < lengths.to(steps.device)[:, None]


def masked_mean(seq: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, T, D) over the steps where mask (B, T) is True (all steps when None)."""
    if mask is None:
        return seq.mean(dim=1)
    m = mask.to(seq.dtype).unsqueeze(-1)
    return (seq * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class AttentionPool(nn.Module):
    """Softmax-weighted mean over time with a learned scorer; padding gets no weight."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, seq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.score(seq).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1)
        if mask is not None:
            weights = weights * mask.to(weights.dtype)
        return torch.einsum("bt,btd->bd", weights, seq)
