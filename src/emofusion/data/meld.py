"""MELD transcripts (Friends dialogues), plus the robust text decoding its CSVs need.

MELD's CSVs are not clean UTF-8 in every copy: curly quotes arrive as single cp1252 bytes
(b"\\x92"), as proper UTF-8, or as mojibake (UTF-8 bytes read as cp1252 / latin-1, e.g.
"â€™" or "â\\x80\\x99"). `decode_bytes` and `clean_text` turn all of these into the same
plain text, with curly quotes made ASCII. The manifest reader uses the same helpers.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from pathlib import Path

from ..labels import UnknownLabelError, canonical_emotion, canonical_sentiment
from .base import TEXT_SPLITS, DatasetLayoutError, DatasetScan, Item, text_split

MELD_LAYOUT = (
    "<root>/{train,dev,test}_sent_emo.csv (MELD columns: Sr No., Utterance, Speaker, Emotion, "
    "Sentiment, Dialogue_ID, Utterance_ID, Season, Episode, StartTime, EndTime); optional clips "
    "<root>/<split>_splits/dia{D}_utt{U}.mp4 or <root>/<split>/dia{D}_utt{U}.mp4"
)
MELD_SPLITS = TEXT_SPLITS
_REQUIRED_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")

# ---------------------------------------------------------------------------------------
# Robust text decoding


def _byte_as_text(b: int) -> str:
    try:
        return bytes([b]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8d, 0x8f, 0x90, 0x9d: undefined in cp1252
        return chr(b)


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(_byte_as_text(b) for b in bad), exc.end


_ERRORS = "emofusion-cp1252-fallback"
codecs.register_error(_ERRORS, _cp1252_fallback)


def decode_bytes(data: bytes) -> str:
    """UTF-8 where the bytes are valid UTF-8, cp1252 for each byte that is not; BOM dropped.

    Decoding per invalid byte (not per file) keeps a line that mixes proper UTF-8 and stray
    cp1252 bytes right on both counts.
    """
    text = data.decode("utf-8", errors=_ERRORS)
    return text[1:] if text.startswith("\ufeff") else text


# Characters that stand for a UTF-8 continuation byte (0x80-0xBF) once the bytes were read
# as latin-1 (C1 controls, U+0080-U+00BF) or as cp1252 (€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ).
_CONT_CHARS = "".join(chr(b) for b in range(0x80, 0xC0)) + "".join(
    ch for ch in (_byte_as_text(b) for b in range(0x80, 0xA0)) if ord(ch) > 0xFF
)
_CONT = "[" + re.escape(_CONT_CHARS) + "]"
# a lead byte (as a latin-1 character) followed by exactly the continuation bytes it needs
_MOJIBAKE = re.compile(
    f"[\u00c2-\u00df]{_CONT}|[\u00e0-\u00ef]{_CONT}{{2}}|[\u00f0-\u00f4]{_CONT}{{3}}"
)


def _as_byte(ch: str) -> int:
    if ord(ch) <= 0xFF:
        return ord(ch)
    return ch.encode("cp1252")[0]


def _unmojibake(match: re.Match) -> str:
    chunk = match.group(0)
    try:
        return bytes(_as_byte(ch) for ch in chunk).decode("utf-8")
    except (UnicodeError, ValueError):
        return chunk


_NORMALISE = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u2026": "...",
        "\u00a0": " ",
        "\ufeff": None, "\u200b": None,
        **{chr(c): None for c in range(0x80, 0xA0)},  # C1 controls left over: never text
    }
)


def clean_text(text: str) -> str:
    """Repair mojibake ("â€™" -> "’"), then make curly quotes ASCII and "…" three dots."""
    for _ in range(2):  # twice: text that went through a wrong decoding twice
        repaired = _MOJIBAKE.sub(_unmojibake, text)
        if repaired == text:
            break
        text = repaired
    return " ".join(text.translate(_NORMALISE).split()) if text else text


def read_text_file(path: str | Path) -> str:
    """A text file decoded with `decode_bytes` (never raises on bad bytes)."""
    return decode_bytes(Path(path).read_bytes())


# ---------------------------------------------------------------------------------------
# MELD


def meld_splits(root: str | Path) -> list[str]:
    """MELD splits whose CSV is present under `root`, in train, dev, test order."""
    root = Path(root)
    return [s for s in MELD_SPLITS if (root / f"{s}_sent_emo.csv").is_file()]


def parse_timestamp(value: str) -> float | None:
    """"00:16:16,059" (SRT style; also "." decimals, "H:MM:SS") -> seconds; None if unparseable."""
    m = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2})(?:[,.](\d+))?\s*", value or "")
    if not m:
        return None
    h, mi, s, frac = m.groups()
    seconds = int(h) * 3600 + int(mi) * 60 + int(s)
    if frac:
        seconds += int(frac) / 10 ** len(frac)
    return float(seconds)


def _clip_index(root: Path, split: str) -> dict[str, Path]:
    names = [f"{split}_splits", f"{split}_splits_complete", split]
    if split == "test":
        names.append("output_repeated_splits_test")
    index: dict[str, Path] = {}
    for name in names:
        folder = root / name
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() == ".mp4" and not path.name.startswith("."):
                    index.setdefault(path.stem, path)
    return index


def _int(value: str | None) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def scan_meld(root: str | Path, split: str = "dev") -> DatasetScan:
    """Rows of `<root>/<split>_sent_emo.csv` as items, in CSV (dialogue, utterance) order.

    Item.text is the cleaned utterance, label the canonical emotion (joy -> happy ...),
    sentiment the canonical sentiment, speaker the MELD speaker name, path the utterance's
    clip when present else None. meta: dialogue_id, utterance_id, season, episode, sr_no,
    original_label, and start/end: the utterance's place in the *episode*, in seconds
    (Item.start/end stay None: a MELD clip is already cut to the utterance).
    """
    root = Path(root)
    split = text_split(split, "MELD")
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} is not a folder; expected {MELD_LAYOUT}")
    csv_path = root / f"{split}_sent_emo.csv"
    if not csv_path.is_file():
        found = ", ".join(meld_splits(root)) or "none"
        raise DatasetLayoutError(f"{csv_path} not found (splits found: {found}); expected {MELD_LAYOUT}")
    reader = csv.DictReader(io.StringIO(read_text_file(csv_path), newline=""))
    if reader.fieldnames is None:
        raise DatasetLayoutError(f"{csv_path} is empty; expected {MELD_LAYOUT}")
    reader.fieldnames = [name.strip() for name in reader.fieldnames]
    missing = [c for c in _REQUIRED_COLUMNS if c not in reader.fieldnames]
    if missing:
        raise DatasetLayoutError(f"{csv_path} lacks columns {missing}; expected {MELD_LAYOUT}")
    clips = _clip_index(root, split)
    scan = DatasetScan(root=root, items=[])
    for row in reader:
        dialogue_id, utterance_id = _int(row.get("Dialogue_ID")), _int(row.get("Utterance_ID"))
        if dialogue_id is None or utterance_id is None:
            scan.skip("row without dialogue/utterance id")
            continue
        original = (row.get("Emotion") or "").strip()
        try:
            label = canonical_emotion(original)
        except UnknownLabelError:
            scan.skip(f"unknown label {original!r}")
            continue
        if label is None:
            scan.skip(f"label {original!r} has no target")
            continue
        sentiment = None
        raw_sentiment = (row.get("Sentiment") or "").strip()
        if raw_sentiment:
            try:
                sentiment = canonical_sentiment(raw_sentiment)
            except UnknownLabelError:
                scan.skip(f"unknown sentiment {raw_sentiment!r}")
                continue
        text = clean_text(row.get("Utterance") or "")
        if not text:
            scan.skip("empty utterance")
            continue
        key = f"dia{dialogue_id}_utt{utterance_id}"
        meta = {
            "dialogue_id": dialogue_id,
            "utterance_id": utterance_id,
            "season": _int(row.get("Season")),
            "episode": _int(row.get("Episode")),
            "sr_no": _int(row.get("Sr No.")),
            "start": parse_timestamp(row.get("StartTime") or ""),
            "end": parse_timestamp(row.get("EndTime") or ""),
            "original_label": original,
            "clip": key,
            "split": split,
        }
        speaker = clean_text(row.get("Speaker") or "") or None
        scan.items.append(
            Item(path=clips.get(key), label=label, speaker=speaker, text=text, sentiment=sentiment, meta=meta)
        )
    if not scan.items:
        reasons = dict(scan.skipped) or "no rows"
        raise DatasetLayoutError(f"{csv_path}: no usable rows ({reasons}); expected {MELD_LAYOUT}")
    return scan
