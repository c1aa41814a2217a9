"""Utterances with their dialogue context (MELD, GoEmotions, ...) -> emotion and sentiment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...data import DatasetScan, Item
from ...features import dialogue_contexts
from ...labels import SENTIMENTS
from ...models import EmotionModel, ModelConfig, TextHeads, TextNetConfig
from ..recipe import Recipe
from .base import Task, _cache_key

IGNORE = -100  # a target that takes no part in a loss


class TextTask(Task):
    """Transcripts of one or more corpora (MELD, GoEmotions, manifests) -> emotion + sentiment.

    With `finetune_layers = 0` the sentence encoder is frozen and its embeddings are cached;
    with k > 0 its top k layers train too (their tensors are saved in the model file).
    """

    modality = "text"

    def __init__(self, recipe: Recipe, cache_dir: Path):
        super().__init__(recipe, cache_dir)
        from ...data import get_dataset
        from ...models import SentenceEncoder

        m = recipe.model
        self.net_cfg = TextNetConfig.from_dict(m)
        self.encoder_source = self.net_cfg.encoder
        self.max_length = self.net_cfg.max_length
        self.context_turns = self.net_cfg.context_turns
        self.sentiment_labels = list(SENTIMENTS)
        train_pairs: list[tuple[Item, str]] = []
        val_pairs: list[tuple[Item, str]] = []
        train_weights: list[float] = []
        val_source: list[str] = []
        for source in text_sources(recipe.data):
            spec = get_dataset(source["dataset"])
            train_split = source.get("train_split", "train")
            # train_split = false: a corpus that is only validated on (e.g. kept in view while
            # fine-tuning on another)
            train_scan = spec.scan(source["root"], train_split) if train_split is not False else DatasetScan(Path(), [])
            val_scan = spec.scan(source["root"], source.get("val_split", "dev"))
            for scan in (train_scan, val_scan):
                for reason, count in scan.skipped.items():
                    key = f"{spec.name}: {reason}"
                    self.skipped[key] = self.skipped.get(key, 0) + count
            kept_train = self._labelled(train_scan.items, dialogue_contexts(train_scan.items, self.context_turns))
            kept_val = self._labelled(val_scan.items, dialogue_contexts(val_scan.items, self.context_turns))
            train_pairs += kept_train
            val_pairs += kept_val
            train_weights += [float(source.get("loss_weight", 1.0))] * len(kept_train)
            val_source += [spec.name] * len(kept_val)
        self.train_y = np.asarray([self.label_index[i.label] for i, _ in train_pairs], dtype=np.int64)
        self.val_y = np.asarray([self.label_index[i.label] for i, _ in val_pairs], dtype=np.int64)
        self.train_w = torch.tensor(train_weights, dtype=torch.float32)
        names = np.asarray(val_source)
        self.val_groups = {name: np.flatnonzero(names == name) for name in dict.fromkeys(val_source)}
        s_index = {name: k for k, name in enumerate(self.sentiment_labels)}
        # no sentiment truth (e.g. a GoEmotions comment labelled "ambiguous"): left out of that loss
        self.train_s = np.asarray([s_index.get(i.sentiment or "", IGNORE) for i, _ in train_pairs], dtype=np.int64)
        self.val_s = np.asarray([s_index.get(i.sentiment or "", IGNORE) for i, _ in val_pairs], dtype=np.int64)
        self.encoder = SentenceEncoder(self.encoder_source, max_length=self.max_length)
        self.finetune_layers = int(m.get("finetune_layers", 0))
        self.encoder_lr = float(m.get("encoder_lr", 5e-5))
        if self.finetune_layers > 0:
            # the top layers train, so texts are encoded at every step (nothing to cache)
            self.train_texts = [i.text or "" for i, _ in train_pairs]
            self.train_ctx = [c for _, c in train_pairs]
            self.val_texts = [i.text or "" for i, _ in val_pairs]
            self.val_ctx = [c for _, c in val_pairs]
        else:
            self.train_u, self.train_c = self._embed([i.text or "" for i, _ in train_pairs], [c for _, c in train_pairs])
            self.val_u, self.val_c = self._embed([i.text or "" for i, _ in val_pairs], [c for _, c in val_pairs])

    def _labelled(self, items: list[Item], contexts: list[str]) -> list[tuple[Item, str]]:
        """(item, context) for the items whose label the model has."""
        return [(items[k], contexts[k]) for k in self._known(items)]

    def _embed(self, texts: list[str], contexts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        key = _cache_key("text", texts + ["\x01"] + contexts, {"enc": self.encoder_source, "max": self.max_length})
        file = self.cache_dir / f"text-{key}.pt"
        if file.exists():
            data = torch.load(file)
            return data["u"], data["c"]
        # encode() runs under inference_mode: clone into normal tensors that autograd accepts
        u = self.encoder.encode(texts).clone()
        c = self.encoder.encode(contexts).clone() if self.context_turns > 0 else torch.zeros_like(u)
        if self.context_turns > 0:
            c[torch.tensor([not x for x in contexts], dtype=torch.bool)] = 0.0
        torch.save({"u": u, "c": c}, file)
        return u, c

    def build_model(self) -> EmotionModel:
        text = {
            "encoder": self.encoder_source,
            "embed_dim": self.encoder.dim,
            "max_length": self.max_length,
            "hidden": self.net_cfg.hidden,
            "dropout": self.net_cfg.dropout,
            "use_context": self.context_turns > 0,
            "context_turns": self.context_turns,
        }
        if self.finetune_layers > 0:
            names = top_layer_tensors(self.encoder.model, self.finetune_layers)
            state = self.encoder.model.state_dict()
            # stored in float16: half the model file (the encoder trains and runs in float32)
            text["finetuned"] = {"layers": self.finetune_layers, "shapes": {n: list(state[n].shape) for n in names},
                                 "dtype": "float16"}
        model = EmotionModel(ModelConfig(name=self.recipe.name, labels=self.labels, text=text), load_text_encoder=False)
        model.attach_encoder(self.encoder)
        return model

    def trainable(self, model: EmotionModel) -> torch.nn.Module:
        if self.finetune_layers <= 0:
            return super().trainable(model)
        assert model.text is not None
        return TextFinetune(model.text, model.encoder, self.finetune_layers)

    def param_groups(self, module: torch.nn.Module, lr: float) -> list[dict[str, Any]]:
        if not isinstance(module, TextFinetune):
            return super().param_groups(module, lr)
        return [
            {"params": list(module.heads.parameters()), "lr": lr},
            {"params": [p for p in module.encoder_model.parameters() if p.requires_grad], "lr": self.encoder_lr},
        ]

    def before_save(self, model: EmotionModel) -> None:
        if self.finetune_layers > 0:
            assert model.text_encoder_delta is not None
            model.text_encoder_delta.capture(model.encoder.model)

    def train_batches(self, epoch, generator, rank=0, world=1):
        idx = self._indices(generator, rank, world, self.recipe.optim.balance)
        bs = self.recipe.optim.batch_size
        for start in range(0, len(idx), bs):
            sel = torch.as_tensor(idx[start : start + bs])
            y, s, w = torch.as_tensor(self.train_y[sel]), torch.as_tensor(self.train_s[sel]), self.train_w[sel]
            if self.finetune_layers > 0:
                yield TextBatch([self.train_texts[i] for i in sel], [self.train_ctx[i] for i in sel]), y, s, w
            else:
                yield self.train_u[sel], self.train_c[sel], y, s, w

    def loss(self, part, batch, class_weights, smoothing):
        if self.finetune_layers > 0:
            texts, y, s, w = batch
            emo, sent = part(texts)
        else:
            u, c, y, s, w = batch
            emo, sent = part(u, c)
        emotion = F.cross_entropy(emo, y, weight=class_weights, label_smoothing=smoothing, reduction="none")
        sentiment = F.cross_entropy(sent, s, label_smoothing=smoothing, reduction="none", ignore_index=IGNORE)
        has_sentiment = (s != IGNORE).to(w.dtype)
        total = (w * emotion).sum() / w.sum()
        if has_sentiment.any():
            total = total + self.recipe.optim.sentiment_weight * (w * has_sentiment * sentiment).sum() / (w * has_sentiment).sum()
        return total

    @torch.inference_mode()
    def predict_val(self, model: EmotionModel) -> np.ndarray:
        if self.finetune_layers > 0:
            model.encoder.model.eval()
            emo, _ = model.text_probs(self.val_texts, self.val_ctx if self.context_turns > 0 else None)
            return emo
        emo, _ = model.text(self.val_u, self.val_c)
        return torch.softmax(emo, -1).numpy()


def text_sources(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The corpora of a text recipe's [data]: its `sources` list, or the table itself when it names
    one `dataset`. Each: dataset, root, train_split ("train"; false: validation only), val_split
    ("dev"), loss_weight (1.0)."""
    sources = data.get("sources")
    if sources is None:
        if "dataset" not in data:
            raise ValueError("a text recipe's [data] needs `dataset` and `root`, or `sources`")
        return [data]
    if not sources or any("dataset" not in s or "root" not in s for s in sources):
        raise ValueError("each of [data].sources needs `dataset` and `root`")
    for s in sources:
        if float(s.get("loss_weight", 1.0)) <= 0:
            raise ValueError(f"loss_weight of {s['dataset']} must be > 0")
    return list(sources)


class TextBatch:
    """Texts of a training batch (and their dialogue context); moved to a device as is."""

    def __init__(self, texts: list[str], contexts: list[str]):
        self.texts, self.contexts = texts, contexts

    def to(self, *args, **kwargs) -> "TextBatch":
        return self


def top_layer_tensors(encoder_model: torch.nn.Module, layers: int) -> list[str]:
    """State-dict names of the encoder's top `layers` transformer layers."""
    total = int(encoder_model.config.num_hidden_layers)
    prefixes = tuple(f"encoder.layer.{i}." for i in range(total - layers, total))
    names = [n for n in encoder_model.state_dict() if n.startswith(prefixes)]
    if not names:
        raise ValueError(f"cannot find the top {layers} layers in the text encoder (expected encoder.layer.N.*)")
    return names


class TextFinetune(torch.nn.Module):
    """Heads plus the sentence encoder with only its top `layers` layers trainable."""

    def __init__(self, heads: TextHeads, encoder: Any, layers: int):
        super().__init__()
        self.heads = heads
        self.encoder_model = encoder.model  # registered, so the trained layers are in this state dict
        object.__setattr__(self, "_encoder", encoder)
        trainable = set(top_layer_tensors(encoder.model, layers))
        for name, param in self.encoder_model.named_parameters():
            param.requires_grad = name in trainable

    def forward(self, batch: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        u = self._encoder.embed(batch.texts)
        c = None
        if self.heads.use_context:
            c = self._encoder.embed(batch.contexts)
            c = c * torch.tensor([bool(x) for x in batch.contexts], dtype=c.dtype).unsqueeze(-1)
        return self.heads(u, c)
