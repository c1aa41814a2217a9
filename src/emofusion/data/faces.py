"""Face image datasets: FER-2013 and any `<split>/<label>/*.jpg|png` image folder."""

from __future__ import annotations

from pathlib import Path

from ..labels import UnknownLabelError, canonical_emotion
from .base import DatasetLayoutError, DatasetScan, Item

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}
IMAGEFOLDER_LAYOUT = "<root>/<split>/<label>/*.jpg|png (e.g. fer2013/train/happy/0001.jpg)"


def image_splits(root: str | Path) -> list[str]:
    """Split folders under an image-folder root (those holding label folders with images)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and any(q.is_dir() for q in p.iterdir())
    )


def scan_imagefolder(root: str | Path, split: str) -> DatasetScan:
    """Read `<root>/<split>/<label>/*` images; labels go through the synonym table.

    Label folders with no target (e.g. CK+ `contempt`) are skipped and counted; an unknown
    label folder is an error, since guessing would corrupt the metrics.
    """
    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        found = ", ".join(image_splits(root)) or "none"
        raise DatasetLayoutError(f"{split_dir} is not a folder; expected {IMAGEFOLDER_LAYOUT} (splits found: {found})")
    scan = DatasetScan(root=root, items=[])
    label_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not label_dirs:
        raise DatasetLayoutError(f"{split_dir} has no label folders; expected {IMAGEFOLDER_LAYOUT}")
    for label_dir in label_dirs:
        try:
            label = canonical_emotion(label_dir.name)
        except UnknownLabelError as exc:
            raise DatasetLayoutError(f"{label_dir}: {exc}") from None
        for path in sorted(label_dir.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                scan.skip(f"not an image ({path.suffix or 'no suffix'})")
                continue
            if label is None:
                scan.skip(f"label {label_dir.name!r} has no target")
                continue
            scan.items.append(Item(path=path, label=label, meta={"original_label": label_dir.name}))
    if not scan.items:
        raise DatasetLayoutError(f"{split_dir}: no usable images; expected {IMAGEFOLDER_LAYOUT}")
    return scan


def scan_fer2013(root: str | Path, split: str = "val") -> DatasetScan:
    """FER-2013 as an image folder (`train`, `val`; PublicTest is `val`)."""
    return scan_imagefolder(root, split)
