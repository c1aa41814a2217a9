"""Classification metrics on plain numpy, JSON-serialisable, plus confusion-matrix plots.

`classification_report(y_true, probs, labels)` is what training, `evaluate` and the model
card report. Conventions (they match scikit-learn's defaults, which the tests check):

- prediction = argmax of probs; ties go to the lower class index.
- precision of a class never predicted is 0; recall of a class absent from y_true is 0.
- `uar` (unweighted average recall, = balanced accuracy) averages recall over the classes
  present in y_true.
- `macro_f1` averages F1 over the classes present in y_true or predicted; `weighted_f1`
  weights F1 by support.
- `roc_auc_ovr` is the unweighted mean of one-vs-rest AUCs over classes that have both
  positives and negatives (None when no class has); per-class AUC None when undefined.
- `ece`: expected calibration error of the top-1 confidence, with `n_bins` equal-width bins
  (lo, hi] over [0, 1] (a confidence of exactly 0 falls in the first bin):
  ECE = sum_b |accuracy_b - mean confidence_b| * n_b / N.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _check(y_true: Sequence[int], probs: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("no examples (n=0): nothing to report")
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {p.shape}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"{y.shape[0]} labels but {p.shape[0]} rows of probs")
    if p.shape[1] != len(labels):
        raise ValueError(f"probs has {p.shape[1]} columns but {len(labels)} label names")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or infinity")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("y_true must be integer class indices")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"y_true holds class indices outside 0..{p.shape[1] - 1}")
    return y.astype(np.int64), p


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """(C, C) counts: rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    _, first, inverse, counts = np.unique(x[order], return_index=True, return_inverse=True, return_counts=True)
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = (first + (counts + 1) / 2.0)[inverse]
    return ranks


def binary_roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U, ties count 1/2); None without both classes."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_calibration_error(
    y_true: Sequence[int], probs: np.ndarray, n_bins: int = 15
) -> tuple[float, list[dict[str, Any]]]:
    """ECE of the top-1 confidence, and the per-bin table (a reliability diagram's data)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bins (lo, hi]: the index is the number of inner edges strictly below the confidence
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    ece = 0.0
    table = []
    for b in range(n_bins):
        mask = index == b
        count = int(mask.sum())
        row: dict[str, Any] = {"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count}
        if count:
            acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
            ece += abs(acc - conf) * count / len(y)
            row.update(accuracy=acc, confidence=conf)
        else:
            row.update(accuracy=None, confidence=None)
        table.append(row)
    return float(ece), table


def classification_report(
    y_true: Sequence[int], probs: np.ndarray, labels: Sequence[str], n_bins: int = 15
) -> dict[str, Any]:
    """Accuracy, UAR, F1s, per-class scores, confusion matrix, ROC AUC and ECE as a dict.

    y_true: class indices (N,); probs: (N, C) scores (probabilities for a meaningful ECE);
    labels: the C class names. Raises ValueError for n=0 or mismatched shapes.
    """
    labels = [str(name) for name in labels]
    y, p = _check(y_true, probs, labels)
    n, c = p.shape
    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, c)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    present = support > 0
    seen = present | (predicted > 0)
    aucs = [binary_roc_auc(y == k, p[:, k]) for k in range(c)]
    defined = [a for a in aucs if a is not None]
    ece, bins = expected_calibration_error(y, p, n_bins)
    per_class = {
        name: {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
            "roc_auc": aucs[k],
        }
        for k, name in enumerate(labels)
    }
    return {
        "n": int(n),
        "labels": labels,
        "accuracy": float(tp.sum() / n),
        "uar": float(recall[present].mean()),
        "macro_f1": float(f1[seen].mean()),
        "weighted_f1": float((f1 * support).sum() / n),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "roc_auc_ovr": float(np.mean(defined)) if defined else None,
        "ece": ece,
        "n_bins": int(n_bins),
        "calibration_bins": bins,
    }


# ---------------------------------------------------------------------------------------
# Plots


def confusion_matrix_figure(
    cm: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[str], title: str | None = None
) -> Figure:
    """A matplotlib Figure of the confusion matrix (rows = true): colours row-normalised,
    cells annotated with counts. No pyplot state is touched (safe in threads / TensorBoard)."""
    from matplotlib.figure import Figure

    counts = np.asarray(cm, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(labels):
        raise ValueError(f"cm must be ({len(labels)}, {len(labels)}), got shape {counts.shape}")
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    size = max(4.0, 0.6 * len(labels) + 2.0)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            colour = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[str], path: str | Path, title: str | None = None
) -> Path:
    """Save the confusion-matrix figure (PNG, SVG, PDF by suffix) to `path`; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = confusion_matrix_figure(cm, labels, title=title)
    fig.savefig(path, dpi=120)
    return path
