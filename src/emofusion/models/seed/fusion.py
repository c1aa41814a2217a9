"""Fusion over 1, 2 or 3 modalities' `EncoderOutput`s with per-item presence.

Every fusion takes `outputs` (name -> EncoderOutput, or None when that modality is absent
from the whole batch) and `present` (B, M) bool in `self.modalities` order (False where an
item lacks the modality or modality dropout removed it). Absent modalities never enter as
zeros pretending to be data: `late` averages over the present ones, `gated` sums over the
present ones, `concat` and `xattn` put a learned "missing" embedding in the slot.

`late` returns task logits directly; the others return a (B, dim) fused feature for the heads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import EncoderOutput
from .heads import build_head
from .pooling import masked_mean

FUSIONS: dict[str, type["Fusion"]] = {}


def _register(name: str):
    def deco(cls):
        FUSIONS[name] = cls
        cls.kind = name
        return cls

    return deco


def modality_dropout(present: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Drop each present modality of each item with probability p, never all of an item's
    modalities: an item left with none gets back one of its originally present ones at random."""
    if p <= 0:
        return present
    keep = torch.rand(present.shape, generator=generator, device=present.device) >= p
    out = present & keep
    empty = ~out.any(dim=1) & present.any(dim=1)
    if bool(empty.any()):
        # pick one originally present modality uniformly at random for each emptied item
        scores = torch.rand(present.shape, generator=generator, device=present.device).masked_fill(~present, -1.0)
        pick = nn.functional.one_hot(scores.argmax(dim=1), present.shape[1]).bool()
        out = torch.where(empty[:, None], pick, out)
    return out


class Fusion(nn.Module):
    kind = ""
    produces_logits = False

    def __init__(self, modalities: list[str], dims: dict[str, int]):
        super().__init__()
        if not 1 <= len(modalities) <= 3:  # one: a single-modality model through the same code
            raise ValueError("fusion takes 1, 2 or 3 modalities")
        self.modalities = list(modalities)
        self.dims = dict(dims)

    def _check(self, outputs: dict[str, EncoderOutput | None], present: torch.Tensor) -> None:
        if present.shape[1] != len(self.modalities):
            raise ValueError("present must be (B, number of modalities)")
        for i, m in enumerate(self.modalities):
            if outputs.get(m) is None and bool(present[:, i].any()):
                raise ValueError(f"modality {m!r} marked present but has no output")


def _mlp(in_dim: int, dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Dropout(dropout), nn.LayerNorm(dim))


@_register("late")
class LateFusion(Fusion):
    """Per-modality heads; logits averaged over the present modalities, uniformly or with
    learned softmax weights ({"learned_weights": true}) renormalised over the present ones."""

    produces_logits = True

    def __init__(self, modalities, dims, heads: dict[str, dict[str, Any]], learned_weights: bool = False, **_: Any):
        super().__init__(modalities, dims)
        self.heads = nn.ModuleDict({
            m: nn.ModuleDict({t: build_head(dims[m], spec) for t, spec in heads.items()}) for m in self.modalities
        })
        self.weight_logits = nn.Parameter(torch.zeros(len(self.modalities))) if learned_weights else None

    def modality_weights(self, present: torch.Tensor) -> torch.Tensor:
        """(B, M) weights summing to 1 over each item's present modalities."""
        base = self.weight_logits if self.weight_logits is not None else present.new_zeros(present.shape[1], dtype=torch.float32)
        scores = base[None, :].expand(present.shape[0], -1).masked_fill(~present, float("-inf"))
        return torch.softmax(scores, dim=1).nan_to_num(0.0)

    def forward(self, outputs, present):
        self._check(outputs, present)
        w = self.modality_weights(present)
        logits: dict[str, torch.Tensor] = {}
        for i, m in enumerate(self.modalities):
            out = outputs.get(m)
            if out is None:
                continue
            for t, head in self.heads[m].items():
                term = w[:, i : i + 1].to(out.pooled.dtype) * head(out.pooled)
                logits[t] = term if t not in logits else logits[t] + term
        return logits


@_register("concat")
class ConcatFusion(Fusion):
    """Concatenate pooled features (a learned per-modality "missing" vector where absent) -> MLP."""

    def __init__(self, modalities, dims, dim: int = 128, dropout: float = 0.1, **_: Any):
        super().__init__(modalities, dims)
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.randn(dims[m]) * 0.02) for m in self.modalities})
        self.mlp = _mlp(sum(dims[m] for m in self.modalities), dim, dropout)
        self.out_dim = dim

    def forward(self, outputs, present):
        self._check(outputs, present)
        b = present.shape[0]
        parts = []
        for i, m in enumerate(self.modalities):
            out = outputs.get(m)
            miss = self.missing[m][None, :].expand(b, -1)
            parts.append(miss if out is None else torch.where(present[:, i : i + 1], out.pooled, miss.to(out.pooled.dtype)))
        return self.mlp(torch.cat(parts, dim=1))


@_register("gated")
class GatedFusion(Fusion):
    """Project each modality to `dim`, gate it with a learned sigmoid gate (per feature,
    computed from that modality), and average the gated vectors over the present modalities."""

    def __init__(self, modalities, dims, dim: int = 128, dropout: float = 0.1, **_: Any):
        super().__init__(modalities, dims)
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], dim) for m in self.modalities})
        self.gate = nn.ModuleDict({m: nn.Linear(dim, dim) for m in self.modalities})
        self.post = _mlp(dim, dim, dropout)
        self.out_dim = dim

    def forward(self, outputs, present):
        self._check(outputs, present)
        total = None
        for i, m in enumerate(self.modalities):
            out = outputs.get(m)
            if out is None:
                continue
            h = self.proj[m](out.pooled)
            g = torch.sigmoid(self.gate[m](h))
            term = (g * h) * present[:, i : i + 1].to(h.dtype)
            total = term if total is None else total + term
        count = present.sum(dim=1, keepdim=True).clamp_min(1).to(total.dtype)
        return self.post(total / count)


@_register("xattn")
class CrossAttentionFusion(Fusion):
    """Bidirectional cross-attention between two sequence modalities (default the video and
    audio ones): a attends to b and b to a, each with residual + LayerNorm and key padding
    masks; then masked mean pooling. Where the other side is absent the attention term is
    left out (residual only). Pooled results (a learned "missing" vector where absent) and
    the other modalities' projected pooled features are concatenated -> MLP."""

    def __init__(self, modalities, dims, dim: int = 128, heads: int = 4, dropout: float = 0.1,
                 pair: list[str] | None = None, **_: Any):
        super().__init__(modalities, dims)
        if pair is None:
            raise ValueError("xattn needs `pair` (two sequence modalities)")
        self.pair = list(pair)
        if len(self.pair) != 2 or any(p not in self.modalities for p in self.pair):
            raise ValueError(f"xattn pair {self.pair} must name two of {self.modalities}")
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], dim) for m in self.modalities})
        self.attn = nn.ModuleDict({
            p: nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True) for p in self.pair
        })  # attn[a]: a's steps query b's
        self.norm = nn.ModuleDict({p: nn.LayerNorm(dim) for p in self.pair})
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.randn(dim) * 0.02) for m in self.modalities})
        self.mlp = _mlp(dim * len(self.modalities), dim, dropout)
        self.out_dim = dim

    def forward(self, outputs, present):
        self._check(outputs, present)
        b = present.shape[0]
        idx = {m: i for i, m in enumerate(self.modalities)}
        seqs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for m in self.pair:
            out = outputs.get(m)
            if out is None:
                continue
            if out.sequence is None:
                raise ValueError(f"xattn needs a sequence output from the {m!r} encoder")
            mask = out.mask if out.mask is not None else torch.ones(out.sequence.shape[:2], dtype=torch.bool,
                                                                     device=out.sequence.device)
            seqs[m] = (self.proj[m](out.sequence), mask)
        pooled: dict[str, torch.Tensor] = {}
        for a, other in (self.pair, self.pair[::-1]):
            if a not in seqs:
                continue
            q, qmask = seqs[a]
            if other in seqs:
                kv, kvmask = seqs[other]
                # an item with no valid key steps attends to all (then discarded) rather than NaN
                kpm = ~kvmask & kvmask.any(dim=1, keepdim=True)
                att, _ = self.attn[a](q, kv, kv, key_padding_mask=kpm, need_weights=False)
                use = present[:, idx[other]][:, None, None].to(att.dtype)
                q = self.norm[a](q + att * use)
            else:
                q = self.norm[a](q)
            pooled[a] = masked_mean(q, qmask)
        parts = []
        for m in self.modalities:
            out = outputs.get(m)
            miss = self.missing[m][None, :].expand(b, -1)
            if out is None:
                parts.append(miss)
                continue
            v = pooled[m] if m in pooled else self.proj[m](out.pooled)
            parts.append(torch.where(present[:, idx[m] : idx[m] + 1], v, miss.to(v.dtype)))
        return self.mlp(torch.cat(parts, dim=1))


def build_fusion(cfg: dict[str, Any], modalities: list[str], dims: dict[str, int],
                 heads: dict[str, dict[str, Any]]) -> Fusion:
    cfg = dict(cfg)
    kind = cfg.pop("type")
    cfg.pop("modality_dropout", None)
    if kind not in FUSIONS:
        raise ValueError(f"unknown fusion type {kind!r}; known: {sorted(FUSIONS)}")
    if kind == "late":  # "heads" in a fusion config is xattn's attention heads: not late fusion's
        cfg.pop("heads", None)
        return LateFusion(modalities, dims, heads, **cfg)
    return FUSIONS[kind](modalities, dims, **cfg)
