"""Tasks: what each modality trains on, how batches are made, and how a model is scored.

A task owns its data (decoded once into a feature cache), its augmentation, its loss and
its validation predictions; the loop in `loop.py` is the same for all of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..data import DatasetLayoutError, Item
from ..features import (FaceConfig, MelConfig, SAMPLE_RATE, dialogue_contexts, fit_length, load_face_images, log_mel,
                        normalize_faces)
from ..labels import EMOTIONS, SENTIMENTS
from ..models import EmotionModel, FaceNetConfig, ModelConfig, TextHeads, TextNetConfig, VoiceNetConfig
from .augment import augment_faces, augment_waveforms, spec_augment
from .recipe import Recipe


def _cache_key(kind: str, paths: list[str], extra: dict[str, Any]) -> str:
    h = hashlib.sha1()
    h.update(kind.encode())
    h.update(json.dumps(extra, sort_keys=True).encode())
    for p in paths:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class Task:
    """Base class: subclasses fill in the data, batches, loss and predictions."""

    modality: str = ""

    def __init__(self, recipe: Recipe, cache_dir: Path):
        self.recipe = recipe
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.labels = list(recipe.model.get("labels", EMOTIONS))
        self.label_index = {name: i for i, name in enumerate(self.labels)}
        self.skipped: dict[str, int] = {}

    # to be provided by subclasses
    train_y: np.ndarray
    val_y: np.ndarray

    def build_model(self) -> EmotionModel:
        raise NotImplementedError

    def train_batches(self, epoch: int, generator: torch.Generator, rank: int = 0, world: int = 1) -> Iterator[tuple]:
        raise NotImplementedError

    def loss(self, part: torch.nn.Module, batch: tuple, class_weights: torch.Tensor | None, smoothing: float) -> torch.Tensor:
        raise NotImplementedError

    def predict_val(self, model: EmotionModel) -> np.ndarray:
        raise NotImplementedError

    def trainable(self, model: EmotionModel) -> torch.nn.Module:
        """The module whose parameters are optimised (by default the modality's net)."""
        return getattr(model, self.modality)

    def param_groups(self, module: torch.nn.Module, lr: float) -> list[dict[str, Any]]:
        return [{"params": [p for p in module.parameters() if p.requires_grad], "lr": lr}]

    def before_save(self, model: EmotionModel) -> None:
        """Bring weights that live outside the model's own modules into it (no-op by default)."""

    def on_epoch_start(self, model: Any, epoch: int) -> None:
        """Apply per-epoch schedules (e.g. unfreezing a backbone); no-op by default."""

    def save(self, model: Any, directory: Path, meta: dict[str, Any]) -> None:
        """Write `model` as a model folder, with `meta` (recipe, epoch, validation scores) in its config."""
        model.config.trained = {self.modality: True}
        model.config.extra = meta
        self.before_save(model)
        model.save_pretrained(directory)

    def final_report(self, best: Any) -> dict[str, Any] | None:
        """Extra validation figures of the best checkpoint for metrics.json (none by default)."""
        return None

    def load_saved(self, directory: Path) -> Any:
        """The model folder that `save` wrote, loaded back (for --resume)."""
        from ..models import load_model

        return load_model(directory, load_text_encoder=self.modality == "text")

    def data_summary(self) -> dict[str, Any]:
        return {
            "train_n": int(len(self.train_y)),
            "val_n": int(len(self.val_y)),
            "train_counts": {self.labels[i]: int(c) for i, c in enumerate(np.bincount(self.train_y, minlength=len(self.labels)))},
            "skipped": self.skipped,
        }

    def _indices(self, generator: torch.Generator, rank: int, world: int, balance: str) -> np.ndarray:
        n = len(self.train_y)
        if balance == "sampler":
            counts = np.bincount(self.train_y, minlength=len(self.labels)).astype(np.float64)
            w = 1.0 / np.maximum(counts[self.train_y], 1)
            idx = torch.multinomial(torch.as_tensor(w), n, replacement=True, generator=generator).numpy()
        else:
            idx = torch.randperm(n, generator=generator).numpy()
        return idx[rank::world]

    def _items_to_y(self, items: list[Item]) -> tuple[list[Item], np.ndarray]:
        kept, ys = [], []
        for item in items:
            if item.label not in self.label_index:
                key = f"label {item.label!r} not in the model's labels"
                self.skipped[key] = self.skipped.get(key, 0) + 1
                continue
            kept.append(item)
            ys.append(self.label_index[item.label])
        return kept, np.asarray(ys, dtype=np.int64)


# --------------------------------------------------------------------------------------
# Faces


class FaceTask(Task):
    """Face crops (FER-2013 or an image folder of crops) -> emotion."""

    modality = "face"

    def __init__(self, recipe: Recipe, cache_dir: Path):
        super().__init__(recipe, cache_dir)
        from ..data.faces import scan_imagefolder

        self.face_cfg = FaceConfig(**recipe.model.get("preprocess", {}))
        root = recipe.data["root"]
        train_scan = scan_imagefolder(root, recipe.data.get("train_split", "train"))
        val_scan = scan_imagefolder(root, recipe.data.get("val_split", "val"))
        for scan in (train_scan, val_scan):
            for reason, count in scan.skipped.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + count
        train_items, self.train_y = self._items_to_y(train_scan.items)
        val_items, self.val_y = self._items_to_y(val_scan.items)
        self.train_x = self._cached(train_items)
        self.val_x = self._cached(val_items)

    def _cached(self, items: list[Item]) -> np.ndarray:
        paths = [str(item.path) for item in items]
        # input_size only changes what the net sees of a cached crop, not the crop itself
        crop_params = {k: v for k, v in self.face_cfg.to_dict().items() if k != "input_size"}
        key = _cache_key("face", paths, crop_params)
        file = self.cache_dir / f"face-{key}.npy"
        if file.exists():
            return np.load(file)
        arr = load_face_images([Path(p) for p in paths], self.face_cfg)
        np.save(file, arr)
        return arr

    def build_model(self) -> EmotionModel:
        face = {**FaceNetConfig.from_dict(self.recipe.model, saved=False).to_dict(), "preprocess": self.face_cfg.to_dict()}
        return EmotionModel(ModelConfig(name=self.recipe.name, labels=self.labels, face=face))

    def train_batches(self, epoch, generator, rank=0, world=1):
        idx = self._indices(generator, rank, world, self.recipe.optim.balance)
        bs = self.recipe.optim.batch_size
        for start in range(0, len(idx) - bs + 1, bs):  # drop the last partial batch (BatchNorm)
            sel = idx[start : start + bs]
            x = normalize_faces(self.train_x[sel], self.face_cfg, center_crop=False)
            x = augment_faces(x, generator, crop=self.face_cfg.input_size, **self.recipe.augment)
            yield x, torch.as_tensor(self.train_y[sel])

    def loss(self, part, batch, class_weights, smoothing):
        x, y = batch
        return F.cross_entropy(part(x), y, weight=class_weights, label_smoothing=smoothing)

    def predict_val(self, model: EmotionModel) -> np.ndarray:
        out = []
        for start in range(0, len(self.val_x), 512):
            out.append(model.face_probs(normalize_faces(self.val_x[start : start + 512], self.face_cfg)))
        return np.concatenate(out)


# --------------------------------------------------------------------------------------
# Voice


class VoiceTask(Task):
    """Speech clips (RAVDESS, EmoDB, CREMA-D, manifest) -> emotion, validated on held-out speakers."""

    modality = "voice"

    def __init__(self, recipe: Recipe, cache_dir: Path):
        super().__init__(recipe, cache_dir)
        from ..data import get_dataset, split_by_speakers

        self.mel_cfg = MelConfig(**recipe.model.get("preprocess", {}))
        self.net_cfg = VoiceNetConfig.from_dict(recipe.model)
        self.segment = int(self.net_cfg.segment_seconds * SAMPLE_RATE)
        items: list[Item] = []
        fold = recipe.data.get("fold")  # 1-based: hold out the speakers of this fold of every source
        folds = int(recipe.data.get("folds", 5))
        val_speakers = set(recipe.data.get("val_speakers", [])) if fold is None else set()
        for source in recipe.data["sources"]:
            spec = get_dataset(source["dataset"])
            scan = spec.scan(source["root"], source.get("split", "all"))
            for reason, count in scan.skipped.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + count
            items.extend(scan.items)
            if fold is not None:
                from ..data import speaker_folds

                if not 1 <= int(fold) <= folds:
                    raise ValueError(f"fold must be between 1 and {folds}, not {fold}")
                _, held_out = speaker_folds(scan.items, folds)[int(fold) - 1]
                val_speakers |= {item.speaker for item in held_out}
        exclude = set(recipe.data.get("exclude_speakers", []))
        items = [item for item in items if item.speaker not in exclude]
        train_items, val_items = split_by_speakers(items, val_speakers)
        if not val_items:
            raise DatasetLayoutError(f"no validation items: none of the speakers {sorted(val_speakers)} was found")
        train_items, self.train_y = self._items_to_y(train_items)
        val_items, self.val_y = self._items_to_y(val_items)
        self.train_wavs = self._cached(train_items)
        self.val_wavs = self._cached(val_items)
        self.train_speakers = sorted({i.speaker for i in train_items})
        self.val_speakers = sorted({i.speaker for i in val_items})
        self.functionals = self._functionals_settings(recipe.model.get("functionals"))
        self.functionals_head = self.fit_functionals_head(train_items) if self.functionals else None

    @staticmethod
    def _functionals_settings(given: dict[str, Any] | None) -> dict[str, Any] | None:
        """The recipe's `[model] functionals` table, checked: feature_set, c (> 0), weight (0..1)."""
        if not given:
            return None
        from ..features import ACOUSTIC_FEATURE_SETS

        unknown = set(given) - {"feature_set", "c", "weight"}
        if unknown:
            raise ValueError(f"[model] functionals: unknown key(s) {sorted(unknown)}; expected feature_set, c, weight")
        c = given.get("c", 0.001)
        try:
            grid = sorted({float(v) for v in c}) if isinstance(c, list) else [float(c)]
            weight = float(given.get("weight", 0.5))
        except (TypeError, ValueError):
            raise ValueError("[model] functionals: c must be a number or a list of numbers, weight a number") from None
        feature_set = str(given.get("feature_set", "ComParE_2016"))
        if feature_set not in ACOUSTIC_FEATURE_SETS:
            raise ValueError(f"[model] functionals.feature_set must be one of {', '.join(ACOUSTIC_FEATURE_SETS)}")
        if not grid or min(grid) <= 0 or not 0.0 <= weight <= 1.0:
            raise ValueError("[model] functionals: c must be > 0 (one value or a list) and weight between 0 and 1")
        out: dict[str, Any] = {"feature_set": feature_set, "c": grid[0], "weight": weight}
        if len(grid) > 1:
            out["c_grid"] = grid
        return out

    def _functionals(self, items: list[Item], wavs: list[np.ndarray]) -> np.ndarray:
        """Acoustic functionals of whole clips, cached per file (path, size, mtime) and feature set across runs and folds."""
        from ..features import acoustic_functionals

        feature_set = self.functionals["feature_set"]
        file = self.cache_dir / f"voice-functionals-{feature_set}.npz"
        stats = [item.path.stat() for item in items]
        keys = [f"{item.path}|{st.st_size}|{st.st_mtime_ns}" for item, st in zip(items, stats)]
        known: dict[str, np.ndarray] = {}
        if file.exists():
            data = np.load(file)
            known = dict(zip(data["keys"].tolist(), data["feats"]))
        todo = [i for i, k in enumerate(keys) if k not in known]
        if todo:
            for i, row in zip(todo, acoustic_functionals([wavs[i] for i in todo], feature_set)):
                known[keys[i]] = row
            tmp = file.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(list(known)), feats=np.stack(list(known.values())))
            tmp.replace(file)
        return np.stack([known[k] for k in keys])

    def fit_functionals_head(self, train_items: list[Item]) -> Any:
        """The functionals head of this recipe, fitted on the training speakers' whole clips. With a
        list of c values, the one with the best speaker-held-out likelihood within the training
        speakers (`select_functionals_c`) is used, and recorded as `c`."""
        from ..models.voice import VoiceFunctionalsHead, select_functionals_c

        feats = self._functionals(train_items, self.train_wavs)
        grid = self.functionals.get("c_grid")
        if grid:
            self.functionals["c"] = select_functionals_c(feats, self.train_y, [i.speaker for i in train_items],
                                                         len(self.labels), grid)
        return VoiceFunctionalsHead.fit(feats, self.train_y, len(self.labels), self.functionals["c"])

    def attach_functionals(self, model: EmotionModel) -> None:
        """Give `model`'s voice part this task's fitted functionals head (and its config entry)."""
        from ..models.voice import VoiceFunctionalsHead

        head = self.functionals_head
        model.config.voice["functionals"] = {**self.functionals, "dim": head.dim}
        model.voice_functionals = VoiceFunctionalsHead(head.dim, len(self.labels))
        model.voice_functionals.load_state_dict(head.state_dict())

    def data_summary(self) -> dict[str, Any]:
        return {**super().data_summary(), "train_speakers": self.train_speakers, "val_speakers": self.val_speakers}

    def _cached(self, items: list[Item]) -> list[np.ndarray]:
        from ..media import read_audio

        paths = [str(item.path) for item in items]
        key = _cache_key("voice", paths, {"sr": SAMPLE_RATE})
        file = self.cache_dir / f"voice-{key}.npz"
        if file.exists():
            data = np.load(file)
            flat, offsets = data["flat"], data["offsets"]
            return [flat[offsets[i] : offsets[i + 1]].astype(np.float32) / 32767.0 for i in range(len(paths))]
        wavs = [read_audio(p, sample_rate=SAMPLE_RATE) for p in paths]
        offsets = np.cumsum([0] + [len(w) for w in wavs])
        flat = np.concatenate([np.round(np.clip(w, -1, 1) * 32767).astype(np.int16) for w in wavs])
        np.savez(file, flat=flat, offsets=offsets)
        return wavs

    def build_model(self) -> EmotionModel:
        net = dataclasses.replace(self.net_cfg, segment_seconds=self.segment / SAMPLE_RATE)  # as many seconds as trained on
        voice = {**net.to_dict(), "preprocess": self.mel_cfg.to_dict()}
        model = EmotionModel(ModelConfig(name=self.recipe.name, labels=self.labels, voice=voice))
        if self.functionals_head is not None:
            self.attach_functionals(model)
        return model

    def train_batches(self, epoch, generator, rank=0, world=1):
        idx = self._indices(generator, rank, world, self.recipe.optim.balance)
        bs = self.recipe.optim.batch_size
        aug = dict(self.recipe.augment)
        spec_cfg = aug.pop("spec_augment", {})
        for start in range(0, len(idx) - bs + 1, bs):
            sel = idx[start : start + bs]
            crops = []
            for i in sel:
                wav = self.train_wavs[i]
                room = max(0, len(wav) - self.segment)
                offset = int(torch.randint(0, room + 1, (1,), generator=generator)) if room else 0  # time shift
                crops.append(fit_length(wav, self.segment, offset))
            wavs = augment_waveforms(torch.as_tensor(np.stack(crops)), generator, **aug)
            mels = spec_augment(log_mel(wavs, self.mel_cfg), generator, **spec_cfg)
            yield mels, torch.as_tensor(self.train_y[sel])

    def loss(self, part, batch, class_weights, smoothing):
        x, y = batch
        return F.cross_entropy(part(x), y, weight=class_weights, label_smoothing=smoothing)

    def predict_val(self, model: EmotionModel) -> np.ndarray:
        return model.clip_voice_probs(self.val_wavs)


# --------------------------------------------------------------------------------------
# Text


class TextTask(Task):
    """Transcripts (MELD) -> emotion + sentiment.

    With `finetune_layers = 0` the sentence encoder is frozen and its embeddings are cached;
    with k > 0 its top k layers train too (their tensors are saved in the model file).
    """

    modality = "text"

    def __init__(self, recipe: Recipe, cache_dir: Path):
        super().__init__(recipe, cache_dir)
        from ..data import get_dataset
        from ..models import SentenceEncoder

        m = recipe.model
        self.net_cfg = TextNetConfig.from_dict(m)
        self.encoder_source = self.net_cfg.encoder
        self.max_length = self.net_cfg.max_length
        self.context_turns = self.net_cfg.context_turns
        self.sentiment_labels = list(SENTIMENTS)
        spec = get_dataset(recipe.data["dataset"])
        train_scan = spec.scan(recipe.data["root"], recipe.data.get("train_split", "train"))
        val_scan = spec.scan(recipe.data["root"], recipe.data.get("val_split", "dev"))
        for scan in (train_scan, val_scan):
            for reason, count in scan.skipped.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + count
        train_ctx = dialogue_contexts(train_scan.items, self.context_turns)
        val_ctx = dialogue_contexts(val_scan.items, self.context_turns)
        train_pairs = [(i, c) for i, c in zip(train_scan.items, train_ctx) if i.label in self.label_index]
        val_pairs = [(i, c) for i, c in zip(val_scan.items, val_ctx) if i.label in self.label_index]
        self.train_y = np.asarray([self.label_index[i.label] for i, _ in train_pairs], dtype=np.int64)
        self.val_y = np.asarray([self.label_index[i.label] for i, _ in val_pairs], dtype=np.int64)
        s_index = {name: k for k, name in enumerate(self.sentiment_labels)}
        self.train_s = np.asarray([s_index[i.sentiment] for i, _ in train_pairs], dtype=np.int64)
        self.val_s = np.asarray([s_index[i.sentiment] for i, _ in val_pairs], dtype=np.int64)
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
            text["finetuned"] = {"layers": self.finetune_layers, "shapes": {n: list(state[n].shape) for n in names}}
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
            y, s = torch.as_tensor(self.train_y[sel]), torch.as_tensor(self.train_s[sel])
            if self.finetune_layers > 0:
                yield TextBatch([self.train_texts[i] for i in sel], [self.train_ctx[i] for i in sel]), y, s
            else:
                yield self.train_u[sel], self.train_c[sel], y, s

    def loss(self, part, batch, class_weights, smoothing):
        if self.finetune_layers > 0:
            texts, y, s = batch
            emo, sent = part(texts)
        else:
            u, c, y, s = batch
            emo, sent = part(u, c)
        w = self.recipe.optim.sentiment_weight
        return F.cross_entropy(emo, y, weight=class_weights, label_smoothing=smoothing) + w * F.cross_entropy(
            sent, s, label_smoothing=smoothing
        )

    @torch.inference_mode()
    def predict_val(self, model: EmotionModel) -> np.ndarray:
        if self.finetune_layers > 0:
            model.encoder.model.eval()
            emo, _ = model.text_probs(self.val_texts, self.val_ctx if self.context_turns > 0 else None)
            return emo
        emo, _ = model.text(self.val_u, self.val_c)
        return torch.softmax(emo, -1).numpy()


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


TASKS: dict[str, type[Task]] = {"face": FaceTask, "voice": VoiceTask, "text": TextTask}
