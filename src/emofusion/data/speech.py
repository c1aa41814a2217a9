"""Speech emotion datasets whose labels live in the file names: RAVDESS, EmoDB, CREMA-D.

Every reader returns all of a dataset's usable clips as one split; evaluation must hold out
speakers (see emofusion.data.splits), never random clips.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ..labels import EMODB_CODES, RAVDESS_CODES, UnknownLabelError, canonical_emotion
from .base import DatasetLayoutError, DatasetScan, Item

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
VIDEO_SUFFIXES = {".mp4", ".flv", ".avi", ".mkv", ".mov", ".webm"}

RAVDESS_LAYOUT = (
    "<root>/Actor_XX/MM-VC-EE-II-SS-RR-AA.wav|mp4, e.g. Actor_01/03-01-05-02-01-01-01.wav "
    "(MM modality 01 audio-visual, 02 video-only, 03 audio-only; VC 01 speech, 02 song; "
    "EE emotion 01-08; II intensity 01 normal, 02 strong; SS statement; RR repetition; AA actor)"
)
EMODB_LAYOUT = (
    "<root>/wav/*.wav or <root>/*.wav named like 03a01Fa.wav (2 digits speaker, 3 chars text, "
    "1 letter emotion W/L/E/A/F/T/N, 1 letter version)"
)
CREMAD_LAYOUT = (
    "<root>/AudioWAV/1001_DFA_ANG_XX.wav (or the wavs directly under <root>), named "
    "<actor>_<sentence>_<emotion ANG/DIS/FEA/HAP/NEU/SAD>_<intensity LO/MD/HI/XX>.wav; "
    "optional videos <root>/VideoFlash/<same name>.flv|mp4"
)

_RAVDESS_MODALITY = {"01": "audio-visual", "02": "video-only", "03": "audio-only"}
_RAVDESS_CHANNEL = {"01": "speech", "02": "song"}
_RAVDESS_INTENSITY = {"01": "normal", "02": "strong"}
_RAVDESS_STATEMENT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
_RAVDESS_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")

_EMODB_NAMES = {
    "W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness", "N": "neutral",
}
_EMODB_NAME = re.compile(r"(\d\d)([a-z]\d\d)([A-Za-z])([a-z]?)")
# Speaker sex from the EmoDB documentation (speaker id -> sex).
_EMODB_SEX = {
    "03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
    "12": "male", "13": "female", "14": "female", "15": "male", "16": "female",
}

_CREMAD_NAME = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")
_CREMAD_INTENSITY = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}


def _require_dir(root: Path, layout: str) -> None:
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} is not a folder; expected {layout}")


def _finish(scan: DatasetScan, where: Path, layout: str, what: str) -> DatasetScan:
    if not scan.items:
        detail = f" (skipped: {dict(scan.skipped)})" if scan.skipped else ""
        raise DatasetLayoutError(f"{where}: no usable {what}{detail}; expected {layout}")
    return scan


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")  # ".DS_Store", AppleDouble "._03-01-...wav"


# ---------------------------------------------------------------------------------------
# RAVDESS


def scan_ravdess(root: str | Path) -> DatasetScan:
    """RAVDESS clips (.wav audio-only and .mp4 audio-visual / video-only) under `root`.

    Files are found at any depth (e.g. `Actor_01/...` or `Video_Speech_Actor_01/Actor_01/...`);
    the actor comes from the file name. Labels: calm -> neutral through the synonym table.
    meta: modality, vocal_channel, intensity, statement, statement_text, repetition, actor,
    sex (odd actor = male), original_label. Items are sorted by actor, then file name.
    """
    root = Path(root)
    _require_dir(root, RAVDESS_LAYOUT)
    scan = DatasetScan(root=root, items=[])
    keyed: list[tuple[tuple, Item]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        if _is_hidden(path):
            scan.skip("hidden file")
            continue
        if suffix not in {".wav", ".mp4"}:
            scan.skip(f"not a .wav/.mp4 file ({suffix or 'no suffix'})")
            continue
        m = _RAVDESS_NAME.fullmatch(path.stem)
        if not m:
            scan.skip("name not MM-VC-EE-II-SS-RR-AA")
            continue
        modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
        if (
            modality not in _RAVDESS_MODALITY
            or channel not in _RAVDESS_CHANNEL
            or intensity not in _RAVDESS_INTENSITY
            or statement not in _RAVDESS_STATEMENT
            or int(actor) < 1
        ):
            scan.skip("name field out of range")
            continue
        if emotion not in RAVDESS_CODES:
            scan.skip(f"unknown emotion code {emotion!r}")
            continue
        original = RAVDESS_CODES[emotion]
        label = canonical_emotion(original)
        if label is None:
            scan.skip(f"label {original!r} has no target")
            continue
        actor_no = int(actor)
        meta = {
            "modality": _RAVDESS_MODALITY[modality],
            "vocal_channel": _RAVDESS_CHANNEL[channel],
            "intensity": _RAVDESS_INTENSITY[intensity],
            "statement": int(statement),
            "statement_text": _RAVDESS_STATEMENT[statement],
            "repetition": int(repetition),
            "actor": actor_no,
            "sex": "male" if actor_no % 2 else "female",
            "original_label": original,
        }
        item = Item(path=path, label=label, speaker=f"ravdess_{actor}", meta=meta)
        keyed.append(((actor_no, path.name, str(path)), item))
    scan.items = [item for _, item in sorted(keyed, key=lambda kv: kv[0])]
    return _finish(scan, root, RAVDESS_LAYOUT, "RAVDESS .wav/.mp4 files")


# ---------------------------------------------------------------------------------------
# EmoDB


def scan_emodb(root: str | Path) -> DatasetScan:
    """Berlin EmoDB: `<root>/wav/*.wav` (or `<root>/*.wav`), e.g. `03a01Fa.wav`.

    Boredom (`L`) has no target in our label set: skipped and counted. speaker "emodb_03";
    meta: text_code, version, sex, original_label (the letter).
    """
    root = Path(root)
    _require_dir(root, EMODB_LAYOUT)
    folder = root / "wav" if (root / "wav").is_dir() else root
    scan = DatasetScan(root=root, items=[])
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if _is_hidden(path):
            scan.skip("hidden file")
            continue
        if path.suffix.lower() != ".wav":
            scan.skip(f"not a .wav file ({path.suffix or 'no suffix'})")
            continue
        m = _EMODB_NAME.fullmatch(path.stem)
        if not m:
            scan.skip("name not like 03a01Fa.wav")
            continue
        speaker, text_code, code, version = m.groups()
        if code not in EMODB_CODES:
            scan.skip(f"unknown emotion code {code!r}")
            continue
        label = EMODB_CODES[code]
        if label is None:
            scan.skip(f"label {code!r} ({_EMODB_NAMES.get(code, '?')}) has no target")
            continue
        meta = {
            "text_code": text_code,
            "version": version,
            "sex": _EMODB_SEX.get(speaker),
            "original_label": code,
        }
        scan.items.append(Item(path=path, label=label, speaker=f"emodb_{speaker}", meta=meta))
    return _finish(scan, folder, EMODB_LAYOUT, "EmoDB .wav files")


# ---------------------------------------------------------------------------------------
# CREMA-D


def _cremad_demographics(root: Path) -> dict[str, dict[str, str]]:
    path = root / "VideoDemographics.csv"
    if not path.is_file():
        return {}
    rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8", errors="replace"), newline=""))
    out = {}
    for row in rows:
        actor = (row.get("ActorID") or "").strip()
        if actor:
            out[actor] = {k: (v or "").strip() for k, v in row.items() if k and k != "ActorID"}
    return out


def scan_cremad(root: str | Path) -> DatasetScan:
    """CREMA-D: `<root>/AudioWAV/1001_DFA_ANG_XX.wav` (or the wavs directly under `root`).

    speaker "cremad_1001"; meta: sentence, intensity (LO/MD/HI/XX), original_label, and
    video (the matching `VideoFlash/` or `VideoMP4/` .flv/.mp4) when present; sex and age
    when `VideoDemographics.csv` is there.
    """
    root = Path(root)
    _require_dir(root, CREMAD_LAYOUT)
    folder = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
    videos: dict[str, Path] = {}
    for name in ("VideoFlash", "VideoMP4"):
        vdir = root / name
        if vdir.is_dir():
            for v in sorted(vdir.iterdir()):
                if v.suffix.lower() in (".flv", ".mp4") and not _is_hidden(v):
                    # prefer mp4 (PyAV reads both; mp4 seeks better)
                    if v.stem not in videos or v.suffix.lower() == ".mp4":
                        videos[v.stem] = v
    demographics = _cremad_demographics(root)
    scan = DatasetScan(root=root, items=[])
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if _is_hidden(path):
            scan.skip("hidden file")
            continue
        if path.suffix.lower() != ".wav":
            if path.name != "VideoDemographics.csv":
                scan.skip(f"not a .wav file ({path.suffix or 'no suffix'})")
            continue
        m = _CREMAD_NAME.fullmatch(path.stem)
        if not m:
            scan.skip("name not like 1001_DFA_ANG_XX.wav")
            continue
        actor, sentence, code, intensity = m.groups()
        if intensity not in _CREMAD_INTENSITY:
            scan.skip(f"unknown intensity {intensity!r}")
            continue
        try:
            label = canonical_emotion(code)
        except UnknownLabelError:
            scan.skip(f"unknown emotion code {code!r}")
            continue
        if label is None:
            scan.skip(f"label {code!r} has no target")
            continue
        meta: dict = {"sentence": sentence, "intensity": intensity, "original_label": code}
        if path.stem in videos:
            meta["video"] = videos[path.stem]
        demo = demographics.get(actor)
        if demo:
            if demo.get("Sex"):
                meta["sex"] = demo["Sex"].lower()
            if demo.get("Age"):
                meta["age"] = demo["Age"]
        scan.items.append(Item(path=path, label=label, speaker=f"cremad_{actor}", meta=meta))
    return _finish(scan, folder, CREMAD_LAYOUT, "CREMA-D .wav files")
