"""Known datasets by name: what modality they feed, how they are laid out, how to read them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import UnknownDatasetError
from .base import DatasetScan
from .faces import IMAGEFOLDER_LAYOUT, image_splits, scan_fer2013, scan_imagefolder
from .manifest import MANIFEST_LAYOUT, scan_manifest
from .goemotions import GOEMOTIONS_LAYOUT, goemotions_splits, scan_goemotions
from .meld import MELD_LAYOUT, meld_splits, scan_meld
from .speech import CREMAD_LAYOUT, EMODB_LAYOUT, RAVDESS_LAYOUT, scan_cremad, scan_emodb, scan_ravdess

Modality = Literal["face", "voice", "text"]
ALL = "all"


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset reader. `splits(root)` lists the splits present; `scan(root, split)` reads one.

    Speech datasets and manifests have one split, "all": hold speakers out with
    emofusion.data.speaker_folds / leave_one_speaker_out, never with a random split.
    """

    name: str
    modality: Modality
    layout: str
    splits: Callable[[str | Path], list[str]]
    scan: Callable[[str | Path, str], DatasetScan]


def _single_split(name: str, reader: Callable[[str | Path], DatasetScan], is_file: bool = False):
    def splits(root: str | Path) -> list[str]:
        root = Path(root)
        return [ALL] if (root.is_file() if is_file else root.is_dir()) else []

    def scan(root: str | Path, split: str = ALL) -> DatasetScan:
        if split != ALL:
            raise ValueError(
                f"{name} has one split, {ALL!r} (got {split!r}); hold out speakers with "
                "emofusion.data.speaker_folds or split_by_speakers"
            )
        return reader(root)

    return splits, scan


def _spec(name: str, modality: Modality, layout: str, splits, scan) -> DatasetSpec:
    return DatasetSpec(name=name, modality=modality, layout=layout, splits=splits, scan=scan)


DATASETS: dict[str, DatasetSpec] = {
    "fer2013": _spec("fer2013", "face", IMAGEFOLDER_LAYOUT, image_splits, scan_fer2013),
    "imagefolder": _spec("imagefolder", "face", IMAGEFOLDER_LAYOUT, image_splits, scan_imagefolder),
    "ravdess": _spec("ravdess", "voice", RAVDESS_LAYOUT, *_single_split("ravdess", scan_ravdess)),
    "emodb": _spec("emodb", "voice", EMODB_LAYOUT, *_single_split("emodb", scan_emodb)),
    "cremad": _spec("cremad", "voice", CREMAD_LAYOUT, *_single_split("cremad", scan_cremad)),
    "meld": _spec("meld", "text", MELD_LAYOUT, meld_splits, scan_meld),
    "goemotions": _spec("goemotions", "text", GOEMOTIONS_LAYOUT, goemotions_splits, scan_goemotions),
    # A manifest may list any media; "voice" is its default use (audio segments with text).
    "manifest": _spec("manifest", "voice", MANIFEST_LAYOUT, *_single_split("manifest", scan_manifest, is_file=True)),
}


def get_dataset(name: str) -> DatasetSpec:
    """The DatasetSpec called `name` (case-insensitive; "crema-d" and "crema_d" mean cremad)."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    aliases = {"fer": "fer2013", "crema": "cremad", "emodb": "emodb", "berlin": "emodb"}
    key = aliases.get(key, key)
    if key not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[key]
