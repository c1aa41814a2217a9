"""GoEmotions (Reddit comments): Ekman emotions, sentiment from its groups.

The corpus comes as three folders that label the same comments three ways. This reader takes
the emotion from `ekman` (anger, disgust, fear, joy, neutral, sadness, surprise: our seven) and
the sentiment from `group` (positive, negative, neutral; `ambiguous` has no sentiment).

A comment with several Ekman labels (about 9% of each split) is skipped and counted: its one
right answer is unknown, so it can neither be scored nor taught as a single label; single-label
rows are the corpus's clean comparison. A comment is its own dialogue (no context).
"""

from __future__ import annotations

from pathlib import Path

from ..labels import canonical_emotion, canonical_sentiment
from .base import TEXT_SPLITS, DatasetLayoutError, DatasetScan, Item, text_split
from .meld import clean_text, decode_bytes

GOEMOTIONS_LAYOUT = (
    "<root>/ekman/{train,dev,test}.tsv and <root>/ekman/labels.txt (emotion), optionally "
    "<root>/group/<split>.tsv and labels.txt (sentiment); each row: text<TAB>label ids "
    "(comma-separated)<TAB>comment id"
)
GOEMOTIONS_SPLITS = TEXT_SPLITS
MULTI_LABEL = "multi-label row (several Ekman emotions)"


def goemotions_splits(root: str | Path) -> list[str]:
    """GoEmotions splits whose Ekman file is present under `root`, in train, dev, test order."""
    return [s for s in GOEMOTIONS_SPLITS if (Path(root) / "ekman" / f"{s}.tsv").is_file()]


def _labels(folder: Path) -> list[str]:
    file = folder / "labels.txt"
    if not file.is_file():
        raise DatasetLayoutError(f"{file} is missing; expected {GOEMOTIONS_LAYOUT}")
    return [line.strip() for line in decode_bytes(file.read_bytes()).splitlines() if line.strip()]


def _rows(file: Path) -> list[tuple[str, list[int], str]]:
    rows = []
    for number, line in enumerate(decode_bytes(file.read_bytes()).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise DatasetLayoutError(f"{file} line {number}: expected text<TAB>label ids<TAB>comment id, "
                                     f"found {len(parts)} field(s)")
        text, ids, comment = parts
        try:
            label_ids = [int(x) for x in ids.split(",")]
        except ValueError:
            raise DatasetLayoutError(f"{file} line {number}: label ids {ids!r} are not integers") from None
        rows.append((text, label_ids, comment))
    return rows


def _sentiments(root: Path, split: str) -> dict[str, str]:
    """Comment id -> sentiment from the `group` labels (single positive / negative / neutral)."""
    folder = root / "group"
    file = folder / f"{split}.tsv"
    if not file.is_file():
        return {}
    names = _labels(folder)
    out = {}
    for _, ids, comment in _rows(file):
        if len(ids) == 1 and names[ids[0]] != "ambiguous":
            out[comment] = canonical_sentiment(names[ids[0]])
    return out


def scan_goemotions(root: str | Path, split: str = "dev") -> DatasetScan:
    """The single-label comments of one split (multi-label ones skipped and counted)."""
    root = Path(root)
    split = text_split(split, "GoEmotions")
    file = root / "ekman" / f"{split}.tsv"
    if not file.is_file():
        raise DatasetLayoutError(f"{file} not found; expected {GOEMOTIONS_LAYOUT}")
    names = _labels(root / "ekman")
    emotions = [canonical_emotion(name) for name in names]
    sentiments = _sentiments(root, split)
    scan = DatasetScan(root=root, items=[])
    for text, ids, comment in _rows(file):
        if any(not 0 <= i < len(names) for i in ids):
            raise DatasetLayoutError(f"{file}: comment {comment} has label id(s) {ids} outside labels.txt "
                                     f"(0-{len(names) - 1})")
        if len(ids) > 1:
            scan.skip(MULTI_LABEL)
            continue
        scan.items.append(Item(path=None, label=emotions[ids[0]], speaker=None, text=clean_text(text),
                               sentiment=sentiments.get(comment), meta={"comment_id": comment}))
    return scan
