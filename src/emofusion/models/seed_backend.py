"""A seed checkpoint (`SeedModel.save_pretrained`: config.json with format "emofusion-seed/1" +
model.safetensors) as a model the Analyzer runs, so it works wherever a model path is accepted
(`emofusion analyze/batch --model DIR`, `Analyzer(DIR)`, the service's model setting).

One fused network reads the picture, the voice and the words of a window together; it has no
separate face, voice and text nets (`face`, `voice`, `text` are None, as for a model without
such a net, so evaluate and export see none). The Analyzer hands it each window's media
(`WindowInputs`) and gets back (`WindowPrediction`):

- `fused`: the model with every modality present in the window;
- per modality, the same model with only that modality's input (its missing-modality
  inference, the `best_val_by_modality` of training): an honest "what this modality alone
  says", filling the contract's `face` / `voice` / `text` probabilities. Encoders run once per
  window; only fusion and heads run again per modality.

The seed encoders' kinds map to the contract's modalities: video -> `face` (the encoder reads
the whole picture, not a face crop), audio -> `voice`, text -> `text`. Inputs are prepared with
the functions training uses (`emofusion.models.seed.preprocess`) and the checkpoint's saved
`preprocess` settings; text goes through the encoder's saved tokenizer.
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..labels import EMOTIONS, SENTIMENTS
from .config import CONFIG_NAME, WEIGHTS_NAME, ModelConfig
from .fusion import MODALITIES
from .seed import SeedModel
from .seed.model import FORMAT as SEED_FORMAT
from .seed.preprocess import audio_samples, fit_audio, normalize_video, preprocess_settings
from .text import ModelLoadError

#: seed encoder kind -> the analysis contract's modality
SLOT_OF_KIND = {"video": "face", "audio": "voice", "text": "text"}


@dataclass
class WindowInputs:
    """One analysis window's media, as the pipeline decoded it; None where a modality is absent.

    frames: (T, S, S, 3) uint8 RGB, sampled and resized like training (`preprocess.frames`, `size`);
    audio:  the window's 16 kHz mono float32 samples (cut and padded here, like training);
    text:   the transcript text overlapping the window.
    """

    frames: np.ndarray | None = None
    audio: np.ndarray | None = None
    text: str | None = None

    def present(self) -> set[str]:
        """The contract modalities this window has."""
        given = {"face": self.frames is not None, "voice": self.audio is not None, "text": bool(self.text)}
        return {m for m, ok in given.items() if ok}


@dataclass
class WindowPrediction:
    """The model's answer for one window: emotion probabilities (in `labels` order) with all the
    window's modalities (`fused`) and with each alone (`parts`); `sentiment` (negative, neutral,
    positive) per modality alone, only when the checkpoint has a sentiment head."""

    fused: np.ndarray
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    sentiment: dict[str, np.ndarray] = field(default_factory=dict)


class SeedBackend:
    """A loaded seed checkpoint with the surface the Analyzer, the CLI, batch and the service
    read (`config`, `labels`, `modalities`, `is_trained`, `prepare_inference`), plus
    `predict_windows`, which the Analyzer calls instead of per-modality nets (a `JointModel`)."""

    backend = "seed"
    face = None  # no separate nets (see the module docstring)
    voice = None
    text = None

    def __init__(self, net: SeedModel, *, name: str, version: str = "0.0.0"):
        self.net = net.eval()
        self._tokenizing = threading.Lock()  # the service's threads share one model; fast tokenizers are not re-entrant
        cfg = net.config
        heads = net.heads_spec
        if "emotion" not in heads:
            raise ModelLoadError(f"seed model {name!r} has no emotion head (heads: {', '.join(heads)})")
        n = int(heads["emotion"]["num_classes"])
        labels = list(cfg.get("labels") or (EMOTIONS if n == len(EMOTIONS) else []))
        if len(labels) != n:
            raise ModelLoadError(f"seed model {name!r}: its emotion head has {n} classes but its config "
                                 f"names {len(labels)} labels")
        #: contract modality -> the seed model's modality names of that kind
        self.slots: dict[str, list[str]] = defaultdict(list)
        for m, enc in net.encoders.items():
            if enc.modality not in SLOT_OF_KIND:
                raise ModelLoadError(f"seed model {name!r}: encoder {m!r} of unknown kind {enc.modality!r}")
            if enc.modality == "text" and getattr(enc, "tokenizer", None) is None:
                raise ModelLoadError(f"seed model {name!r}: text encoder {m!r} has no saved tokenizer")
            self.slots[SLOT_OF_KIND[enc.modality]].append(m)
        trained = cfg.get("trained", False)

        def part_trained(slot: str) -> bool:
            if isinstance(trained, dict):
                return all(bool(trained.get(m, False)) for m in self.slots[slot])
            return bool(trained)

        self.preprocess = preprocess_settings(cfg.get("preprocess"))
        self.config = ModelConfig(
            name=name, version=version, labels=labels, sentiment_labels=list(SENTIMENTS),
            trained={slot: part_trained(slot) for slot in self.modalities},
            fusion={"type": f"seed-{cfg['fusion']['type']}"}, extra=dict(cfg.get("extra") or {}),
        )

    # -- the model surface the Analyzer, CLI and service read --------------------------------
    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    @property
    def modalities(self) -> list[str]:
        """The contract modalities this model reads (face = its video encoder)."""
        return [m for m in MODALITIES if self.slots.get(m)]

    @property
    def is_trained(self) -> bool:
        return bool(self.modalities) and all(self.config.trained.get(m, False) for m in self.modalities)

    @property
    def text_sentiment(self) -> bool:
        """Whether text results carry the model's own sentiment head (else they map emotions to valence)."""
        return "sentiment" in self.net.heads_spec

    @property
    def frames_per_window(self) -> int:
        return int(self.preprocess["frames"])

    @property
    def frame_size(self) -> int:
        return int(self.preprocess["size"])

    def prepare_inference(self) -> "SeedBackend":
        self.net.eval()
        return self

    def eval(self) -> "SeedBackend":
        return self.prepare_inference()

    # -- inference ---------------------------------------------------------------------------
    def _inputs(self, windows: list[WindowInputs], slots: list[str]) -> dict[str, Any]:
        """The seed model's batch for `windows`, for the modalities in `slots` (all present in each)."""
        batch: dict[str, Any] = {}
        for slot in slots:
            for m in self.slots[slot]:
                if slot == "face":
                    batch[m] = {"video": normalize_video(np.stack([w.frames for w in windows]))}
                elif slot == "voice":
                    length = audio_samples(self.preprocess["audio_seconds"])
                    fitted = [fit_audio(w.audio, length) for w in windows]
                    batch[m] = {"audio": torch.from_numpy(np.stack([a for a, _ in fitted])),
                                "lengths": torch.tensor([n for _, n in fitted], dtype=torch.long)}
                else:
                    with self._tokenizing:
                        batch[m] = self.net.encoders[m].tokenize([str(w.text) for w in windows])
        return batch

    def _decide(self, outputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        logits = self.net.fuse(outputs).logits
        sentiment = logits.get("sentiment")
        return (torch.softmax(logits["emotion"], dim=-1).numpy(),
                None if sentiment is None else torch.softmax(sentiment, dim=-1).numpy())

    @torch.inference_mode()
    def predict_windows(self, windows: list[WindowInputs], batch_size: int = 8) -> list[WindowPrediction | None]:
        """Predictions for each window (None where it has none of this model's modalities).
        Windows with the same modalities present share batches of up to `batch_size`."""
        out: list[WindowPrediction | None] = [None] * len(windows)
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, w in enumerate(windows):
            slots = tuple(m for m in self.modalities if m in w.present())
            if slots:
                groups[slots].append(i)
        for slots, idx in groups.items():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                encoded = self.net.encode(self._inputs([windows[i] for i in chunk], list(slots)))
                fused, fused_sent = self._decide(encoded)
                parts: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
                for slot in slots:
                    if len(slots) == 1:
                        parts[slot] = (fused, fused_sent)
                    else:
                        parts[slot] = self._decide({m: encoded[m] for m in self.slots[slot]})
                for k, i in enumerate(chunk):
                    out[i] = WindowPrediction(
                        fused=fused[k],
                        parts={slot: p[k] for slot, (p, _) in parts.items()},
                        sentiment={slot: s[k] for slot, (_, s) in parts.items() if s is not None},
                    )
        return out

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "SeedBackend":
        """Load a seed checkpoint folder; anything wrong with it is a ModelLoadError."""
        folder = Path(directory)
        cfg_path = folder / CONFIG_NAME
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{cfg_path}: unreadable config: {exc}") from None
        if not isinstance(cfg, dict) or cfg.get("format") != SEED_FORMAT:
            raise ModelLoadError(f"{cfg_path}: not a {SEED_FORMAT} config")
        if not (folder / WEIGHTS_NAME).is_file():
            raise ModelLoadError(f"{folder}: no {WEIGHTS_NAME}")
        try:
            net = SeedModel.from_pretrained(folder)
        except Exception as exc:  # bad config values, mismatched or unreadable weights, a missing tokenizer
            raise ModelLoadError(f"{folder}: cannot load the seed model: {' '.join(str(exc).split())[:500]}") from None
        extra = cfg.get("extra") or {}
        name = str(cfg.get("name") or (extra.get("recipe") if isinstance(extra, dict) else None) or folder.resolve().name)
        return cls(net, name=name, version=str(cfg.get("version") or "0.0.0"))

    def __repr__(self) -> str:
        return f"SeedBackend({self.config.name!r}, modalities={self.modalities})"


__all__ = ["SLOT_OF_KIND", "SeedBackend", "WindowInputs", "WindowPrediction"]
