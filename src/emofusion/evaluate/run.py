"""Evaluation runs: one model on a dataset (optionally some speakers), or the fold models of a
cross-validation each on its own held-out speakers, pooled."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import DatasetLayoutError, DatasetSpec, Item, get_dataset
from ..errors import EvaluationError
from ..models.loading import load_model
from .predict import predict_items, require_net, summarise_skips

if TYPE_CHECKING:
    from ..models import EmotionModel

ALL = "all"
DEFAULT_SPLITS = {"fer2013": "val", "meld": "dev", "goemotions": "dev"}

# --------------------------------------------------------------------------------------
# Reading datasets


@dataclass
class _Data:
    """Items of one or more splits, in order, with what the readers skipped."""

    splits: list[str]
    items: list[Item] = field(default_factory=list)
    split_of: list[str] = field(default_factory=list)
    contexts: list[str] | None = None  # text: dialogue history, computed per split
    skipped: Counter = field(default_factory=Counter)

    def subset(self, keep: list[int]) -> "_Data":
        return _Data(
            splits=[s for s in self.splits if any(self.split_of[i] == s for i in keep)],
            items=[self.items[i] for i in keep],
            split_of=[self.split_of[i] for i in keep],
            contexts=None if self.contexts is None else [self.contexts[i] for i in keep],
            skipped=Counter(self.skipped),
        )


def _spec(dataset: str | DatasetSpec) -> DatasetSpec:
    return dataset if isinstance(dataset, DatasetSpec) else get_dataset(dataset)


def _read(spec: DatasetSpec, root: Path, split: str, context_turns: int = 0) -> _Data:
    if not root.exists():
        raise DatasetLayoutError(f"{root} does not exist; expected {spec.layout}")
    if split == ALL:
        names = spec.splits(root)
        if not names:
            loose = sum(1 for p in root.iterdir() if p.is_file()) if root.is_dir() else 0
            found = f" ({loose} files directly under it, no split folders)" if loose else ""
            raise DatasetLayoutError(f"{root}: no {spec.name} splits found{found}; expected {spec.layout}")
    else:
        names = [split]
    data = _Data(splits=list(names), contexts=[] if spec.modality == "text" else None)
    for name in names:
        scan = spec.scan(root, name)
        data.skipped.update(scan.skipped)
        data.items.extend(scan.items)
        data.split_of.extend([name] * len(scan.items))
        if data.contexts is not None:
            from ..features import dialogue_contexts

            data.contexts.extend(dialogue_contexts(scan.items, context_turns))
    return data


def _select_speakers(data: _Data, speakers: list[str] | None, what: str = "--speakers") -> _Data:
    if speakers is None:
        return data
    wanted = {str(s).strip() for s in speakers if str(s).strip()}
    if not wanted:
        raise EvaluationError(f"{what} is empty")
    known = sorted({item.speaker for item in data.items if item.speaker})
    if not known:
        raise EvaluationError(f"{what} given, but the items of this dataset carry no speaker ids")
    unknown = sorted(wanted - set(known))
    if unknown:
        shown = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "")
        raise EvaluationError(f"speakers {unknown} not in the data; speakers found: {shown}")
    return data.subset([i for i, item in enumerate(data.items) if item.speaker in wanted])



def _model_info(model: "EmotionModel", modality: str) -> dict[str, Any]:
    cfg = model.config
    return {"name": cfg.name, "version": cfg.version, "trained": bool(cfg.trained.get(modality, False))}


def _sentiment_report(model: "EmotionModel", extra: dict[str, Any], rows: np.ndarray | None = None) -> dict | None:
    from ..metrics import classification_report

    if "sentiment_true" not in extra:
        return None
    s_true, s_probs = extra["sentiment_true"], extra["sentiment_probs"]
    if rows is not None:
        s_true, s_probs = s_true[rows], s_probs[rows]
    mask = s_true >= 0
    if not mask.any():
        return None
    return classification_report(s_true[mask], s_probs[mask], model.config.sentiment_labels)


def _report(
    y: np.ndarray, probs: np.ndarray, labels: list[str], sentiment: dict | None = None
) -> dict[str, Any]:
    from ..metrics import classification_report

    out = classification_report(y, probs, labels)
    if sentiment is not None:
        out["sentiment"] = sentiment
    return out


def _per_split(
    model: "EmotionModel", data: _Data, y: np.ndarray, probs: np.ndarray, extra: dict[str, Any]
) -> dict[str, Any]:
    split_of = np.asarray([data.split_of[i] for i in extra["index"]])
    out = {}
    for name in data.splits:
        rows = np.flatnonzero(split_of == name)
        if rows.size:
            out[name] = _report(y[rows], probs[rows], model.config.labels, _sentiment_report(model, extra, rows))
    return out


def evaluate_dataset(
    model: "EmotionModel",
    dataset: str | DatasetSpec,
    root: str | Path,
    split: str = ALL,
    speakers: list[str] | None = None,
    calibrate: str = "off",
) -> dict[str, Any]:
    """Metrics of `model` on `split` (a split name, or "all": every split found) of a dataset.

    `speakers` keeps only the items of those speakers (held-out-speaker evaluation of a
    fold model). `calibrate` "speaker": each voice clip read relative to its speaker's
    baseline over their clips here (`predict_items`). With several splits, each is reported under "splits" and the pooled
    numbers are at the top level. Raises DatasetLayoutError / ValueError (incl.
    EvaluationError) with a reason instead of ever reporting on nothing.
    """
    spec = _spec(dataset)
    root = Path(root).expanduser()
    require_net(model, spec.modality, spec.name)
    turns = model.config.text_net.context_turns
    data = _select_speakers(_read(spec, root, split, turns), speakers)
    if not data.items:
        raise EvaluationError(f"{root}: no items ({summarise_skips(data.skipped)}); expected {spec.layout}")
    y, probs, pred_skipped, extra = predict_items(model, spec.modality, data.items, contexts=data.contexts,
                                                  calibrate=calibrate)
    report = _report(y, probs, model.config.labels, _sentiment_report(model, extra))
    report.update(
        dataset=spec.name,
        modality=spec.modality,
        root=str(root),
        split=split,
        calibrate=calibrate,
        model=_model_info(model, spec.modality),
        skipped=dict((data.skipped + pred_skipped).most_common()),
    )
    if speakers is not None:
        report["speakers"] = sorted({item.speaker for item in data.items if item.speaker})
    if split == ALL and len(data.splits) > 1:
        report["splits"] = _per_split(model, data, y, probs, extra)
    return report


# --------------------------------------------------------------------------------------
# Cross-validation


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def fold_model_dirs(cv_dir: str | Path) -> list[Path]:
    """`cv_dir/fold*/last/` model folders in natural order (fold2 before fold10)."""
    cv_dir = Path(cv_dir).expanduser()
    if not cv_dir.is_dir():
        raise EvaluationError(f"{cv_dir} is not a folder; expected <cv-dir>/fold*/last/ model folders")
    folds = sorted((p / "last" for p in cv_dir.glob("fold*") if (p / "last").is_dir()), key=lambda p: _natural_key(p.parent))
    if not folds:
        raise EvaluationError(f"{cv_dir}: no fold*/last/ model folders; expected <cv-dir>/fold*/last/")
    return folds


def evaluate_cross_validation(
    cv_dir: str | Path, dataset: str | DatasetSpec, root: str | Path, split: str = ALL,
    return_predictions: bool = False, calibrate: str = "off",
) -> dict[str, Any]:
    """Pool held-out-speaker predictions of fold models into one report.

    The last checkpoint of each fold is used, never the best: the best is picked on the
    held-out speakers, so its score would be optimistic. Each `cv_dir/fold*/last/` model
    predicts only its own held-out speakers, read from its
    `config.extra["data"]["val_speakers"]`. Folds must hold out disjoint, non-empty
    speaker sets and share one label list. Held-out speakers that are not in this dataset
    (a fold trained on several sources) are ignored; a fold with none here is listed under
    "folds_unused". Per-fold reports are under "folds"; speakers in the data that no fold
    held out are listed under "unevaluated_speakers".
    """
    spec = _spec(dataset)
    root = Path(root).expanduser()
    dirs = fold_model_dirs(cv_dir)
    owner: dict[str, str] = {}
    folds: list[tuple[str, Any, list[str], Path]] = []
    for d in dirs:
        name = d.parent.name
        model = load_model(d, load_text_encoder=spec.modality == "text")
        require_net(model, spec.modality, spec.name)
        held = (model.config.extra or {}).get("data", {}).get("val_speakers")
        if held is None:
            raise EvaluationError(
                f"fold {name} ({d}): config.extra['data'] has no 'val_speakers'; cannot tell which speakers it held out"
            )
        held = [str(s) for s in held]
        if not held:
            raise EvaluationError(f"fold {name} ({d}): no held-out speakers (val_speakers is empty)")
        for s in held:
            if s in owner:
                raise EvaluationError(f"speaker {s!r} is held out by two folds: {owner[s]} and {name}")
            owner[s] = name
        if folds and list(model.config.labels) != list(folds[0][1].config.labels):
            raise EvaluationError(
                f"fold {name} has labels {model.config.labels}, fold {folds[0][0]} has {folds[0][1].config.labels}"
            )
        folds.append((name, model, held, d))

    first = folds[0][1]
    turns = first.config.text_net.context_turns
    data = _read(spec, root, split, turns)
    speakers_in_data = {item.speaker for item in data.items if item.speaker}
    if not speakers_in_data:
        raise EvaluationError(f"{root}: the items carry no speaker ids; cross-validation needs them")
    ys, ps, s_true, s_probs = [], [], [], []
    skipped: Counter = Counter(data.skipped)
    fold_reports: dict[str, Any] = {}
    unused: dict[str, str] = {}
    for name, model, held, folder in folds:
        # a fold trained on several sources also holds out speakers of the other datasets
        here = sorted(set(held) & speakers_in_data)
        if not here:
            unused[name] = f"none of its held-out speakers ({', '.join(sorted(held)[:10])}) is in this data"
            continue
        part = _select_speakers(data, here, what=f"fold {name} val_speakers")
        contexts = part.contexts
        fold_turns = model.config.text_net.context_turns
        if contexts is not None and fold_turns != turns:  # this fold's own dialogue-history length
            contexts = _select_speakers(_read(spec, root, split, fold_turns), here).contexts
        try:
            y, probs, pred_skipped, extra = predict_items(model, spec.modality, part.items, contexts=contexts,
                                                          calibrate=calibrate)
        except EvaluationError as exc:
            raise EvaluationError(f"fold {name}: {exc}") from None
        skipped.update(pred_skipped)
        rep = _report(y, probs, model.config.labels, _sentiment_report(model, extra))
        rep.update(model=_model_info(model, spec.modality), path=str(folder), speakers=here,
                   held_out_elsewhere=len(set(held) - set(here)), skipped=dict(pred_skipped.most_common()))
        fold_reports[name] = rep
        ys.append(y)
        ps.append(probs)
        if "sentiment_true" in extra:
            s_true.append(extra["sentiment_true"])
            s_probs.append(extra["sentiment_probs"])
    if not fold_reports:
        raise EvaluationError(
            f"no fold's held-out speakers are in {root} (speakers there: {', '.join(sorted(speakers_in_data)[:10])})"
        )
    sentiment = None
    if s_true:
        sentiment = _sentiment_report(first, {"sentiment_true": np.concatenate(s_true), "sentiment_probs": np.concatenate(s_probs)})
    report = _report(np.concatenate(ys), np.concatenate(ps), first.config.labels, sentiment)
    report.update(
        dataset=spec.name,
        modality=spec.modality,
        root=str(root),
        split=split,
        calibrate=calibrate,
        cv_dir=str(Path(cv_dir).expanduser()),
        model={
            "name": first.config.name,
            "version": first.config.version,
            "trained": all(m.config.trained.get(spec.modality, False) for _, m, _, _ in folds),
            "folds": len(folds),
        },
        skipped=dict(skipped.most_common()),
        unevaluated_speakers=sorted(speakers_in_data - set(owner)),
        folds=fold_reports,
        folds_unused=unused,
    )
    if return_predictions:  # pooled out-of-fold predictions (used to fit the fusion weights)
        report["predictions"] = {"y_true": np.concatenate(ys).tolist(), "probs": np.concatenate(ps).tolist()}
    return report
