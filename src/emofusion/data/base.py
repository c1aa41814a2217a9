"""What every dataset reader returns: items with canonical labels, and what was skipped."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetLayoutError  # noqa: F401  (re-exported: the error family lives in emofusion.errors)


@dataclass(frozen=True)
class Item:
    """One labelled example. `path` is an image, audio or video file; None for text-only rows."""

    path: Path | None
    label: str  # canonical emotion (see emofusion.labels)
    speaker: str | None = None
    text: str | None = None
    sentiment: str | None = None
    start: float | None = None
    end: float | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class DatasetScan:
    """The items a reader found under `root`, and a count of skipped files per reason."""

    root: Path
    items: list[Item]
    skipped: Counter = field(default_factory=Counter)

    def label_counts(self) -> dict[str, int]:
        return dict(Counter(item.label for item in self.items))

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1


#: The official train / dev / test splits of a text corpus (MELD, GoEmotions), and the other
#: names users give them.
TEXT_SPLITS = ("train", "dev", "test")
_SPLIT_ALIASES = {"train": "train", "dev": "dev", "val": "dev", "valid": "dev", "validation": "dev", "test": "test"}


def text_split(split: str, corpus: str) -> str:
    """`split` as one of TEXT_SPLITS ("val", "valid", "validation" mean "dev"); ValueError naming
    `corpus` for anything else."""
    key = split.strip().lower()
    if key not in _SPLIT_ALIASES:
        raise ValueError(f"unknown {corpus} split {split!r}; use one of {list(TEXT_SPLITS)} (or 'val' for 'dev')")
    return _SPLIT_ALIASES[key]
