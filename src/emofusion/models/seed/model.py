"""`SeedModel`: encoders + fusion + heads from one config dict, saved as config.json +
model.safetensors (+ tokenizers), reloaded strictly without touching the hub."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import EncoderConfig, EncoderOutput
from .encoders import MODALITY_OF, Encoder, build_encoder
from .fusion import build_fusion, modality_dropout
from .heads import build_head, head_specs, multitask_loss

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "emofusion-seed/1"


@dataclass
class SeedOutput:
    logits: dict[str, torch.Tensor]
    present: torch.Tensor  # (B, M) bool, after modality dropout
    fused: torch.Tensor | None = None  # (B, dim); None for late fusion
    encoder_outputs: dict[str, EncoderOutput | None] = field(default_factory=dict)


def normalize_config(config: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(config)
    for key in ("encoders", "fusion", "heads"):
        if key not in cfg:
            raise ValueError(f"seed model config needs {key!r}")
    cfg["encoders"] = {m: EncoderConfig.from_dict(e).to_dict() | {k: v for k, v in e.items() if k in ("pretrained_from",)}
                       for m, e in cfg["encoders"].items()}
    if isinstance(cfg["fusion"], str):
        cfg["fusion"] = {"type": cfg["fusion"]}
    fusion = cfg["fusion"]
    if fusion["type"] == "xattn" and "pair" not in fusion:
        kinds = {m: MODALITY_OF.get(e["type"]) for m, e in cfg["encoders"].items()}
        video = [m for m, k in kinds.items() if k == "video"]
        audio = [m for m, k in kinds.items() if k == "audio"]
        if not (video and audio):
            raise ValueError("xattn needs a video and an audio encoder, or an explicit `pair`")
        fusion["pair"] = [video[0], audio[0]]
    cfg.setdefault("loss_weights", {})
    order = cfg.pop("modalities", None)
    if order is not None:
        if sorted(order) != sorted(cfg["encoders"]):
            raise ValueError(f"modalities {order} do not match encoders {sorted(cfg['encoders'])}")
        cfg["encoders"] = {m: cfg["encoders"][m] for m in order}
    return cfg


class SeedModel(nn.Module):
    """Multimodal classifier. `forward(batch)` takes name -> encoder inputs (or None / absent
    key for a missing modality) and returns a `SeedOutput` with logits per head.

    config = {
      "encoders": {"video": {...EncoderConfig...}, "audio": {...}, "text": {...}},
      "fusion": {"type": "late"|"concat"|"gated"|"xattn", "dim": 128, "dropout": 0.1,
                 "modality_dropout": 0.0, "learned_weights": false (late), "heads": 4 (xattn),
                 "pair": ["video", "audio"] (xattn; default: first video and audio encoders)},
      "heads": {"emotion": 7, "sentiment": 3},   # or {"emotion": {"num_classes": 7, "hidden": 64}}
      "loss_weights": {"emotion": 1.0, "sentiment": 0.5},
    }
    """

    def __init__(self, config: dict[str, Any], *, _rebuild: bool = False):
        super().__init__()
        self.config = normalize_config(config)
        enc_cfgs = self.config["encoders"]
        if _rebuild:  # weights come from model.safetensors: never re-download the backbone
            enc_cfgs = {m: {**e, "pretrained": None} for m, e in enc_cfgs.items()}
        self.encoders = nn.ModuleDict({m: build_encoder({k: v for k, v in e.items() if k != "pretrained_from"})
                                       for m, e in enc_cfgs.items()})
        self.modalities = list(self.encoders)
        self.heads_spec = head_specs(self.config["heads"])
        dims = {m: enc.out_dim for m, enc in self.encoders.items()}
        fcfg = self.config["fusion"]
        self.modality_dropout_p = float(fcfg.get("modality_dropout", 0.0))
        self.fusion = build_fusion(fcfg, self.modalities, dims, self.heads_spec)
        if self.fusion.produces_logits:
            self.heads = None
        else:
            self.heads = nn.ModuleDict({t: build_head(self.fusion.out_dim, s) for t, s in self.heads_spec.items()})

    # ---- training schedule
    def set_epoch(self, epoch: int) -> None:
        for enc in self.encoders.values():
            enc.set_epoch(epoch)

    # ---- forward
    def forward(self, batch: dict[str, Any], *, generator: torch.Generator | None = None) -> SeedOutput:
        return self.fuse(self.encode(batch), generator=generator)

    def encode(self, batch: dict[str, Any]) -> dict[str, EncoderOutput | None]:
        """Each modality's encoder output (None where `batch` does not give that modality)."""
        unknown = set(batch) - set(self.modalities)
        if unknown:
            raise ValueError(f"inputs for unknown modalities {sorted(unknown)}; model has {self.modalities}")
        return {m: None if batch.get(m) is None else self.encoders[m](batch[m]) for m in self.modalities}

    def fuse(self, outputs: dict[str, EncoderOutput | None], *, generator: torch.Generator | None = None) -> SeedOutput:
        """Fusion and heads over encoder outputs (from `encode`); a None or absent entry is a
        missing modality, so a subset of one `encode` equals `forward` with only that subset."""
        outputs = {m: outputs.get(m) for m in self.modalities}
        given = [o for o in outputs.values() if o is not None]
        if not given:
            raise ValueError("no modality given: at least one input is needed")
        b = given[0].pooled.shape[0]
        device = given[0].pooled.device
        present = torch.tensor([outputs[m] is not None for m in self.modalities], device=device)[None, :].expand(b, -1)
        if self.training and self.modality_dropout_p > 0:
            present = modality_dropout(present, self.modality_dropout_p, generator)
        if self.fusion.produces_logits:
            return SeedOutput(self.fusion(outputs, present), present, None, outputs)
        fused = self.fusion(outputs, present)
        return SeedOutput({t: h(fused) for t, h in self.heads.items()}, present, fused, outputs)

    def loss(self, out: SeedOutput, targets: dict[str, torch.Tensor | None], **kw: Any):
        return multitask_loss(out.logits, targets, self.config.get("loss_weights"), **kw)

    # ---- persistence
    def save_pretrained(self, directory: str | Path) -> Path:
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cfg = copy.deepcopy(self.config)
        for m, enc in self.encoders.items():
            e = enc.export_config()
            if "pretrained_from" in cfg["encoders"][m] and "pretrained_from" not in e:
                e["pretrained_from"] = cfg["encoders"][m]["pretrained_from"]
            tok = getattr(enc, "tokenizer", None)
            if tok is not None:
                rel = f"tokenizer_{m}"
                tok.save_pretrained(str(directory / rel))
                e["tokenizer"] = rel
            cfg["encoders"][m] = e
        cfg["format"] = FORMAT
        cfg["modalities"] = list(self.modalities)  # fusion order; must survive any JSON rewrite
        (directory / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
        save_model(self, str(directory / WEIGHTS_NAME))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "SeedModel":
        from safetensors.torch import load_model

        directory = Path(directory)
        cfg = json.loads((directory / CONFIG_NAME).read_text())
        if cfg.pop("format", FORMAT) != FORMAT:
            raise ValueError(f"{directory} is not a {FORMAT} model")
        tokenizers = {m: e.pop("tokenizer") for m, e in cfg["encoders"].items() if "tokenizer" in e}
        model = cls(cfg, _rebuild=True)
        load_model(model, str(directory / WEIGHTS_NAME), strict=True, device=str(map_location))
        for m, rel in tokenizers.items():
            from transformers import AutoTokenizer

            model.encoders[m].tokenizer = AutoTokenizer.from_pretrained(str(directory / rel))
        model.eval()
        return model


__all__ = ["Encoder", "SeedModel", "SeedOutput", "normalize_config"]
