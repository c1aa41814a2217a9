"""Dataset readers (faces, speech, MELD, manifests), the registry, and speaker-independent splits."""

from __future__ import annotations

import os
from pathlib import Path

from .base import DatasetLayoutError, DatasetScan, Item
from .faces import IMAGE_SUFFIXES, image_splits, scan_fer2013, scan_imagefolder
from .goemotions import goemotions_splits, scan_goemotions
from .manifest import scan_manifest
from .meld import meld_splits, scan_meld
from .registry import DATASETS, DatasetSpec, get_dataset
from .speech import scan_cremad, scan_emodb, scan_ravdess
from .splits import leave_one_speaker_out, speaker_folds, split_by_speakers


def default_data_root() -> Path:
    """Where the real datasets live: $EMOFUSION_DATA, else `<repo>/../shared/data`."""
    env = os.environ.get("EMOFUSION_DATA")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[3]  # src/emofusion/data/__init__.py -> repo root
    return repo.parent / "shared" / "data"


__all__ = [
    "DATASETS",
    "DatasetLayoutError",
    "DatasetScan",
    "DatasetSpec",
    "IMAGE_SUFFIXES",
    "Item",
    "default_data_root",
    "get_dataset",
    "goemotions_splits",
    "image_splits",
    "leave_one_speaker_out",
    "meld_splits",
    "scan_cremad",
    "scan_emodb",
    "scan_fer2013",
    "scan_goemotions",
    "scan_imagefolder",
    "scan_manifest",
    "scan_meld",
    "scan_ravdess",
    "speaker_folds",
    "split_by_speakers",
]
