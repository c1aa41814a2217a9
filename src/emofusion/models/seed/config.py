"""The small configuration objects shared by the seed encoders, fusion and model."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class EncoderConfig:
    """One encoder, as it appears in a seed model's config dict.

    type:            registry name ("r3d18", "resnet18_frames", "videomae", "mel_cnn",
                     "hubert", "wav2vec2", "wavlm", "bert", "minilm").
    pretrained:      hub id or local folder (transformers types) or a local .pth/.safetensors
                     file (r3d18, resnet18_frames); None builds random weights from `config`.
    config:          overrides: transformers config kwargs for transformers types, module
                     kwargs (e.g. {"width": 8, "temporal_pool": "attention"}) for our own.
    proj_dim:        linear projection of pooled and sequence outputs; None keeps the backbone width.
    freeze:          the backbone does not train (the projection always does).
    unfreeze_after:  epochs after which the backbone trains (set_epoch(e) with e >= this);
                     implies frozen before that, whatever `freeze` says.
    freeze_bn:       the backbone's BatchNorm layers normalise with their running statistics
                     and never update them (eval mode) while their weights train: for small
                     batches, or distributed training where each process sees part of a batch.
    """

    type: str
    pretrained: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    proj_dim: int | None = None
    freeze: bool = False
    unfreeze_after: int | None = None
    freeze_bn: bool = False

    @classmethod
    def from_dict(cls, d: "EncoderConfig | dict[str, Any]") -> "EncoderConfig":
        if isinstance(d, EncoderConfig):
            return copy.deepcopy(d)
        known = {"type", "pretrained", "config", "proj_dim", "freeze", "unfreeze_after", "freeze_bn"}
        unknown = set(d) - known - {"pretrained_from", "tokenizer"}
        if unknown:
            raise ValueError(f"unknown encoder config keys: {sorted(unknown)}")
        return cls(**{k: copy.deepcopy(v) for k, v in d.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EncoderOutput:
    """What every encoder returns.

    pooled:   (B, D) one vector per item (padding excluded).
    sequence: (B, T, D) per-step features for cross-attention, or None.
    mask:     (B, T) bool, True on real steps, or None when `sequence` is None.
    """

    pooled: torch.Tensor
    sequence: torch.Tensor | None = None
    mask: torch.Tensor | None = None
