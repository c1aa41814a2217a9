"""Speech clips (RAVDESS, EmoDB, CREMA-D, a manifest) -> emotion, through the log-mel CNN."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...data import DatasetLayoutError, Item
from ...features import MelConfig, SAMPLE_RATE, fit_length, log_mel
from ...models import EmotionModel, ModelConfig, VoiceNetConfig
from ..augment import augment_waveforms, spec_augment
from ..recipe import Recipe
from .base import Task, _cache_key


class VoiceTask(Task):
    """Speech clips (RAVDESS, EmoDB, CREMA-D, manifest) -> emotion, validated on held-out speakers."""

    modality = "voice"

    def __init__(self, recipe: Recipe, cache_dir: Path):
        super().__init__(recipe, cache_dir)
        from ...data import get_dataset, split_by_speakers

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
                from ...data import speaker_folds

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
        """The recipe's `[model] functionals` table, checked: feature_set, c (> 0, or a list), weight
        (0..1), and optionally `calibrated = { c, weight, band_levels }`: the regression on per-speaker
        standardised functionals that a calibrated analysis reads, its weight against the CNN, and
        whether it reads the band levels (`features.spectral_band_level_columns`; default true)."""
        if not given:
            return None
        from ...features import ACOUSTIC_FEATURE_SETS

        unknown = set(given) - {"feature_set", "c", "weight", "calibrated"}
        if unknown:
            raise ValueError(f"[model] functionals: unknown key(s) {sorted(unknown)}; expected feature_set, c, weight, "
                             "calibrated")
        feature_set = str(given.get("feature_set", "ComParE_2016"))
        if feature_set not in ACOUSTIC_FEATURE_SETS:
            raise ValueError(f"[model] functionals.feature_set must be one of {', '.join(ACOUSTIC_FEATURE_SETS)}")
        out: dict[str, Any] = {"feature_set": feature_set, **_regression_settings(given, "[model] functionals")}
        calibrated = given.get("calibrated")
        if calibrated is not None:
            if not isinstance(calibrated, dict) or set(calibrated) - {"c", "weight", "band_levels"}:
                raise ValueError("[model] functionals.calibrated must be a table of c, weight and band_levels")
            band_levels = calibrated.get("band_levels", True)
            if not isinstance(band_levels, bool) or (not band_levels and feature_set != "spectral_v1"):
                raise ValueError("[model] functionals.calibrated.band_levels must be true or false (false only "
                                 "with feature_set spectral_v1)")
            out["calibrated"] = {**_regression_settings(calibrated, "[model] functionals.calibrated"),
                                 "band_levels": band_levels}
        return out

    def _functionals(self, items: list[Item], wavs: list[np.ndarray]) -> np.ndarray:
        """Acoustic functionals of whole clips, cached per file (path, size, mtime) and feature set across runs and folds."""
        from ...features import acoustic_functionals

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
        """The functionals head of this recipe, fitted on the training speakers' whole clips (and its
        calibrated regression, on the same clips standardised per speaker). With a list of c values,
        the one with the best speaker-held-out likelihood within the training speakers
        (`select_functionals_c`) is used, and recorded as `c`."""
        from ...models.voice import VoiceFunctionalsHead, fit_calibrated_head

        feats = self._functionals(train_items, self.train_wavs)
        speakers = [i.speaker for i in train_items]
        n = len(self.labels)
        _choose_c(self.functionals, feats, self.train_y, speakers, n)
        head = VoiceFunctionalsHead.fit(feats, self.train_y, n, self.functionals["c"])
        calibrated = self.functionals.get("calibrated")
        if calibrated is not None:
            from ...features import spectral_band_level_columns

            ignore = None if calibrated["band_levels"] else spectral_band_level_columns()
            head.calibrated, calibrated["c"] = fit_calibrated_head(feats, self.train_y, speakers, n,
                                                                   calibrated.get("c_grid", calibrated["c"]), ignore)
        return head

    def attach_functionals(self, model: EmotionModel) -> None:
        """Give `model`'s voice part this task's fitted functionals head (and its config entry)."""
        from ...models.voice import VoiceFunctionalsHead

        head = self.functionals_head
        model.config.voice["functionals"] = {**self.functionals, "dim": head.dim}
        model.voice_functionals = VoiceFunctionalsHead(head.dim, len(self.labels), calibrated=head.calibrated is not None)
        model.voice_functionals.load_state_dict(head.state_dict())

    def data_summary(self) -> dict[str, Any]:
        return {**super().data_summary(), "train_speakers": self.train_speakers, "val_speakers": self.val_speakers}

    def _cached(self, items: list[Item]) -> list[np.ndarray]:
        from ...media import read_audio

        paths = [str(item.path) for item in items]
        # a segment of a file (a manifest's start/end) is keyed as such; whole files keep their keys
        names = [p if item.start is None and item.end is None else f"{p}#{item.start or 0.0}-{item.end}"
                 for p, item in zip(paths, items)]
        key = _cache_key("voice", names, {"sr": SAMPLE_RATE})
        file = self.cache_dir / f"voice-{key}.npz"
        if file.exists():
            data = np.load(file)
            flat, offsets = data["flat"], data["offsets"]
            return [flat[offsets[i] : offsets[i + 1]].astype(np.float32) / 32767.0 for i in range(len(paths))]
        wavs = [read_audio(p, start=item.start or 0.0, end=item.end, sample_rate=SAMPLE_RATE)
                for p, item in zip(paths, items)]
        offsets = np.cumsum([0] + [len(w) for w in wavs])
        flat = np.concatenate([np.round(np.clip(w, -1, 1) * 32767).astype(np.int16) for w in wavs])
        np.savez(file, flat=flat, offsets=offsets)
        # the cached (16-bit) samples, as a later run reads them: a first run and a run from the
        # cache then train on the same numbers (they differed by the rounding before)
        return [flat[offsets[i] : offsets[i + 1]].astype(np.float32) / 32767.0 for i in range(len(paths))]

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


def _regression_settings(given: dict[str, Any], where: str) -> dict[str, Any]:
    """`c` (> 0; a list becomes `c_grid`, its smallest value `c` until one is chosen) and `weight` (0..1)."""
    c = given.get("c", 0.001)
    try:
        grid = sorted({float(v) for v in c}) if isinstance(c, list) else [float(c)]
        weight = float(given.get("weight", 0.5))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: c must be a number or a list of numbers, weight a number") from None
    if not grid or min(grid) <= 0 or not 0.0 <= weight <= 1.0:
        raise ValueError(f"{where}: c must be > 0 (one value or a list) and weight between 0 and 1")
    out: dict[str, Any] = {"c": grid[0], "weight": weight}
    if len(grid) > 1:
        out["c_grid"] = grid
    return out


def _choose_c(settings: dict[str, Any], feats: np.ndarray, y: np.ndarray, speakers: list[str], num_classes: int) -> None:
    """Set `settings["c"]` to the value of its `c_grid` (if any) that best predicts held-out training speakers."""
    from ...models.voice import select_functionals_c

    grid = settings.get("c_grid")
    if grid:
        settings["c"] = select_functionals_c(feats, y, speakers, num_classes, grid)
