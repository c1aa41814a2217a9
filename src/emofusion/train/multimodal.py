"""Training a seed architecture (`emofusion.models.seed.SeedModel`) on aligned clips.

A recipe with `task = "multimodal"` names its data like a voice recipe (sources of
speech/video datasets, speakers held out for validation) and its model as a seed config:

    [data]
    sources = [{ dataset = "ravdess", root = "..." }, { dataset = "cremad", root = "..." }]
    val_speakers = ["ravdess_23", "ravdess_24"]   # or --fold K of each source's speaker folds
    # a dataset with its own splits validates on one of them instead of held-out speakers:
    # sources = [{ dataset = "meld", root = "...", split = "train", val_split = "dev" }]

    [model]
    labels = ["neutral", "happy", "sad", "angry"]
    modalities = ["video", "audio"]           # which encoders (of [model.encoders]) to use
    preprocess = { frames = 8, size = 32, audio_seconds = 1.0 }
    [model.encoders.video]  type = "r3d18", config = { width = 8 }, proj_dim = 32
    [model.encoders.audio]  type = "mel_cnn", config = { channels = [8, 16], dim = 32 }
    [model.fusion]          type = "xattn", dim = 32, modality_dropout = 0.2
    [model.heads]           emotion = 4, sentiment = 3      # sentiment: optional
    [model.loss_weights]    emotion = 1.0, sentiment = 0.5  # the weighted multitask loss

Items with a sentiment (Item.sentiment: MELD, or a manifest's `sentiment` column) train the
sentiment head too; items without one are left out of its loss (target -100).

Each source's items become audio-visual items (emofusion.data.av.multimodal_items: RAVDESS's
audio-visual 01-*.mp4 files, CREMA-D's video with its .wav, MELD's utterance clips).
Each clip is decoded once (frames sampled evenly over the clip, RGB, resized; 16 kHz mono
audio; the item's text) into a feature cache; epochs read the cache.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import DatasetLayoutError, Item
from ..features import SAMPLE_RATE
from ..labels import SENTIMENTS
from ..models.seed import MODALITY_OF, SeedModel
from ..models.seed.preprocess import DEFAULT_PREPROCESS, clip_frames, fit_audio, normalize_video  # noqa: F401 (shared with analysis)
from .recipe import Recipe
from .tasks import Task, _cache_key

IGNORE_INDEX = -100  # target of an item without a label for a head (e.g. no sentiment)


def sentiment_targets(items: list[Item]) -> np.ndarray:
    """Sentiment class index of each item (SENTIMENTS order), IGNORE_INDEX where it has none."""
    index = {name: k for k, name in enumerate(SENTIMENTS)}
    return np.asarray([index.get(i.sentiment, IGNORE_INDEX) if i.sentiment else IGNORE_INDEX for i in items],
                      dtype=np.int64)


class MultimodalTask(Task):
    """Aligned clips (video + its audio track + optional transcript) -> emotion (+ sentiment), validated
    on held-out speakers or on a source's own validation split."""

    modality = "multimodal"

    def __init__(self, recipe: Recipe, cache_dir: Path):
        super().__init__(recipe, cache_dir)
        from ..data import get_dataset, split_by_speakers, speaker_folds

        m = recipe.model
        for key in ("encoders", "fusion", "heads"):
            if key not in m:
                raise DatasetLayoutError(f"a multimodal recipe needs [model.{key}] (a seed model config)")
        self.modalities = list(m.get("modalities", list(m["encoders"])))
        unknown = set(self.modalities) - set(m["encoders"])
        if unknown:
            raise ValueError(f"modalities {sorted(unknown)} have no [model.encoders] entry")
        self.kinds = {name: MODALITY_OF.get(m["encoders"][name]["type"], "?") for name in self.modalities}
        self.pre = {**DEFAULT_PREPROCESS, **m.get("preprocess", {})}
        self.need_video = "video" in self.kinds.values()
        self.need_audio = "audio" in self.kinds.values()
        items: list[Item] = []  # sources validated on held-out speakers
        split_train: list[Item] = []  # sources validated on a split of their own (val_split)
        split_val: list[Item] = []
        fold = recipe.data.get("fold")
        folds = int(recipe.data.get("folds", 5))
        val_speakers = set(recipe.data.get("val_speakers", [])) if fold is None else set()
        for source in recipe.data["sources"]:
            spec = get_dataset(source["dataset"])
            if source.get("val_split"):
                split_train.extend(self._scan(spec, source, source.get("split", "train")))
                split_val.extend(self._scan(spec, source, source["val_split"]))
                continue
            scanned = self._scan(spec, source, source.get("split", "all"))
            items.extend(scanned)
            if fold is not None:
                if not 1 <= int(fold) <= folds:
                    raise ValueError(f"fold must be between 1 and {folds}, not {fold}")
                _, held_out = speaker_folds(scanned, folds)[int(fold) - 1]
                val_speakers |= {item.speaker for item in held_out}
        if items and (val_speakers or fold is not None or not split_val):
            train_items, val_items = split_by_speakers(items, val_speakers)
        elif val_speakers or fold is not None:
            raise ValueError("val_speakers and --fold hold out speakers of sources without a val_split; "
                             "every source here validates on its own val_split")
        else:
            train_items, val_items = items, []
        train_items, val_items = train_items + split_train, val_items + split_val
        if not val_items:
            raise DatasetLayoutError(f"no validation items: none of the speakers {sorted(val_speakers)} was found")
        train_items, self.train_y = self._items_to_y(train_items)
        val_items, self.val_y = self._items_to_y(val_items)
        if len(self.train_y) == 0:
            raise DatasetLayoutError("no training items left after holding out the validation speakers")
        self.train_s = sentiment_targets(train_items)
        self.val_s = sentiment_targets(val_items)
        self.train_data = self._cached(train_items)
        self.val_data = self._cached(val_items)
        self.train_speakers = sorted({str(i.speaker) for i in train_items})
        self.val_speakers = sorted({str(i.speaker) for i in val_items})

    # ---- data
    def _scan(self, spec: Any, source: dict[str, Any], split: str) -> list[Item]:
        """The audio-visual items of one split of one source; skipped files are counted."""
        from ..data.av import multimodal_items
        from ..data.registry import ALL

        if split == ALL and Path(source["root"]).is_dir():
            present = spec.splits(source["root"])
            if present and ALL not in present:
                raise DatasetLayoutError(
                    f"{spec.name} at {source['root']} has splits {present}: give the source a split, and a "
                    f'val_split to validate on another (e.g. split = "train", val_split = "dev")')
        scan = multimodal_items(spec.name, spec.scan(source["root"], split), video=self.need_video, audio=self.need_audio)
        for reason, count in scan.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        return scan.items

    def _cached(self, items: list[Item]) -> dict[str, Any]:
        """frames (N, T, S, S, 3) uint8, audio (N, L) int16 + lengths, texts; decoded once."""
        from ..media import MediaError, read_audio

        frames_n, size, seconds = int(self.pre["frames"]), int(self.pre["size"]), float(self.pre["audio_seconds"])
        length = int(round(seconds * SAMPLE_RATE))
        paths = [str(i.path) for i in items]
        extra: dict[str, Any] = {"pre": self.pre, "spans": [(i.start, i.end) for i in items]}
        if any("audio_path" in i.meta for i in items):
            extra["audio_paths"] = [str(i.meta.get("audio_path", "")) for i in items]
        if not (self.need_video and self.need_audio):  # what was decoded (zeros for the rest)
            extra["decoded"] = [self.need_video, self.need_audio]
        key = _cache_key("multimodal", paths, extra)
        file = self.cache_dir / f"multimodal-{key}.npz"
        texts = [i.text or "" for i in items]
        if file.exists():
            data = np.load(file)
            return {"frames": data["frames"], "audio": data["audio"], "lengths": data["lengths"], "texts": texts}
        frames = np.zeros((len(items), frames_n, size, size, 3), np.uint8)
        audio = np.zeros((len(items), length), np.int16)
        lengths = np.zeros(len(items), np.int64)
        for k, item in enumerate(items):
            start = item.start or 0.0
            try:
                if self.need_video:
                    frames[k] = clip_frames(item.path, frames_n, size, start, item.end)
                if not self.need_audio:
                    lengths[k] = 1
                    continue
                wav, lengths[k] = fit_audio(read_audio(item.meta.get("audio_path", item.path), start=start,
                                                       end=item.end if item.end is not None else start + seconds), length)
            except MediaError as exc:
                raise DatasetLayoutError(f"{item.path}: {exc}") from None
            audio[k] = np.round(np.clip(wav, -1, 1) * 32767).astype(np.int16)
        # write then rename: processes of a distributed run decode the same clips side by side,
        # and none may read another's half-written file
        tmp = file.with_name(f".{file.stem}.{os.getpid()}.npz")
        np.savez(tmp, frames=frames, audio=audio, lengths=lengths)
        os.replace(tmp, file)
        return {"frames": frames, "audio": audio, "lengths": lengths, "texts": texts}

    def inputs(self, data: dict[str, Any], idx: np.ndarray, model: SeedModel | None = None) -> dict[str, Any]:
        """The model's inputs for items `idx` of `data`, one entry per configured modality."""
        out: dict[str, Any] = {}
        for name in self.modalities:
            kind = self.kinds[name]
            if kind == "video":
                out[name] = {"video": normalize_video(data["frames"][idx])}
            elif kind == "audio":
                wav = torch.from_numpy(data["audio"][idx].astype(np.float32) / 32767.0)
                out[name] = {"audio": wav, "lengths": torch.from_numpy(data["lengths"][idx])}
            elif kind == "text":
                encoder = (model or self._model).encoders[name]
                out[name] = encoder.tokenize([data["texts"][i] for i in idx])
        return out

    def data_summary(self) -> dict[str, Any]:
        return {**super().data_summary(), "train_speakers": self.train_speakers, "val_speakers": self.val_speakers,
                "modalities": self.modalities,
                "train_sentiment_n": int((self.train_s != IGNORE_INDEX).sum()),
                "val_sentiment_n": int((self.val_s != IGNORE_INDEX).sum())}

    # ---- model
    def build_model(self) -> SeedModel:
        m = self.recipe.model
        config = {
            "encoders": {name: copy.deepcopy(m["encoders"][name]) for name in self.modalities},
            "fusion": copy.deepcopy(m["fusion"]),
            "heads": copy.deepcopy(m["heads"]),
            "loss_weights": copy.deepcopy(m.get("loss_weights", {})),
            "modalities": self.modalities,
        }
        model = SeedModel(config)
        heads = model.heads_spec
        if heads["emotion"]["num_classes"] != len(self.labels):
            raise ValueError(f"the emotion head has {heads['emotion']['num_classes']} classes but labels "
                             f"has {len(self.labels)}")
        self._model = model
        return model

    def trainable(self, model: SeedModel) -> torch.nn.Module:
        return model

    def on_epoch_start(self, model: SeedModel, epoch: int) -> None:
        model.set_epoch(epoch)

    def train_batches(self, epoch, generator, rank=0, world=1):
        idx = self._indices(generator, rank, world, self.recipe.optim.balance)
        bs = self.recipe.optim.batch_size
        for start in range(0, len(idx) - bs + 1, bs):  # full batches only: every rank takes as many steps
            sel = idx[start : start + bs]
            yield (self.inputs(self.train_data, sel), torch.from_numpy(self.train_y[sel]),
                   torch.from_numpy(self.train_s[sel]))

    def loss(self, part, batch, class_weights, smoothing):
        """The seed model's weighted multitask loss: emotion (class-weighted) plus sentiment on the
        items that have one (weights from [model] loss_weights; a head without targets adds 0)."""
        inputs, y, s = batch
        out = part(inputs)
        total, _ = self._model.loss(out, {"emotion": y, "sentiment": s}, ignore_index=IGNORE_INDEX,
                                    label_smoothing=smoothing, class_weights={"emotion": class_weights})
        return total

    @torch.no_grad()
    def predict_probs(self, model: SeedModel, data: dict[str, Any], modalities: list[str] | None = None) -> np.ndarray:
        """Emotion probabilities for every item of `data`, with only `modalities` given (default: all)."""
        model.eval()
        keep = set(modalities or self.modalities)
        probs = []
        n = len(data["frames"])
        for start in range(0, n, 64):
            idx = np.arange(start, min(n, start + 64))
            inputs = {k: v for k, v in self.inputs(data, idx, model).items() if k in keep}
            probs.append(torch.softmax(model(inputs).logits["emotion"], dim=-1).numpy())
        return np.concatenate(probs) if probs else np.zeros((0, len(self.labels)), np.float32)

    def predict_val(self, model: SeedModel) -> np.ndarray:
        return self.predict_probs(model, self.val_data)

    # ---- checkpoints
    def save(self, model: SeedModel, directory: Path, meta: dict[str, Any]) -> None:
        model.config["labels"] = list(self.labels)
        model.config["preprocess"] = dict(self.pre)
        model.config["trained"] = True
        model.config["extra"] = meta
        model.save_pretrained(directory)

    def final_report(self, best: SeedModel) -> dict[str, Any]:
        return modality_report(self, best)

    def load_saved(self, directory: Path) -> SeedModel:
        return SeedModel.from_pretrained(directory)


def modality_report(task: MultimodalTask, model: SeedModel) -> dict[str, Any]:
    """Validation accuracy with all modalities and with each one alone (missing-modality inference)."""
    from ..metrics import classification_report

    out = {}
    for name, mods in [("all", None)] + [(m, [m]) for m in task.modalities]:
        report = classification_report(task.val_y, task.predict_probs(model, task.val_data, mods), task.labels)
        out[name] = {"accuracy": report["accuracy"], "uar": report["uar"], "n": report["n"]}
    return json.loads(json.dumps(out))
