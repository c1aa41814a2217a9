"""A manifest of your own data: a CSV (with header) or JSON-lines file, one example a row."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from ..labels import UnknownLabelError, canonical_emotion, canonical_sentiment
from .base import DatasetLayoutError, DatasetScan, Item
from .meld import clean_text, read_text_file

log = logging.getLogger(__name__)

MANIFEST_LAYOUT = (
    "a .csv file with a header row, or a .jsonl file with one JSON object a line; fields: "
    "path (required; relative paths are resolved against the manifest's folder), label "
    "(required, an emotion name), and optional start, end (seconds), text, speaker, sentiment"
)
_KNOWN = ("path", "label", "start", "end", "text", "speaker", "sentiment")
_JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}


class _BadRow(Exception):
    """A row to skip; the message is the generic reason counted in DatasetScan.skipped."""


def _rows_csv(text: str):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        return
    reader.fieldnames = [(name or "").strip().lower() for name in reader.fieldnames]
    if "path" not in reader.fieldnames or "label" not in reader.fieldnames:
        raise DatasetLayoutError(
            f"manifest header {reader.fieldnames} lacks 'path' and/or 'label'; expected {MANIFEST_LAYOUT}"
        )
    for row in reader:
        if all(not (v or "").strip() for k, v in row.items() if k is not None):
            continue  # blank line
        if None in row:  # more cells than header names
            yield reader.line_num, _BadRow("row with more cells than the header")
            continue
        yield reader.line_num, row


def _rows_jsonl(text: str):
    stripped = text.lstrip()
    if stripped.startswith("["):  # a .json file holding one array of objects
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DatasetLayoutError(f"manifest is not valid JSON ({exc}); expected {MANIFEST_LAYOUT}") from None
        for i, obj in enumerate(data, start=1):
            yield i, obj if isinstance(obj, dict) else _BadRow("row that is not a JSON object")
        return
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            yield line_no, _BadRow("bad JSON line")
            continue
        yield line_no, obj if isinstance(obj, dict) else _BadRow("row that is not a JSON object")


def _str(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _float(value: Any, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise _BadRow(f"bad number in {name}") from None
    if not math.isfinite(out) or out < 0:
        raise _BadRow(f"bad number in {name}")
    return out


def _item(row: dict[str, Any], base: Path) -> Item:
    row = {str(k).strip().lower(): v for k, v in row.items()}
    raw_path = _str(row.get("path"))
    if not raw_path:
        raise _BadRow("row without path")
    raw_label = _str(row.get("label"))
    if not raw_label:
        raise _BadRow("row without label")
    start, end = _float(row.get("start"), "start"), _float(row.get("end"), "end")
    if start is not None and end is not None and end <= start:
        raise _BadRow("end not after start")
    try:
        label = canonical_emotion(raw_label)
    except UnknownLabelError:
        raise _BadRow(f"unknown label {raw_label!r}") from None
    if label is None:
        raise _BadRow(f"label {raw_label!r} has no target")
    sentiment = None
    raw_sentiment = _str(row.get("sentiment"))
    if raw_sentiment:
        try:
            sentiment = canonical_sentiment(raw_sentiment)
        except UnknownLabelError:
            raise _BadRow(f"unknown sentiment {raw_sentiment!r}") from None
    path = Path(raw_path).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise _BadRow("file not found")
    text = clean_text(_str(row.get("text"))) or None
    speaker = _str(row.get("speaker")) or None
    meta = {k: v for k, v in row.items() if k not in _KNOWN and k}
    meta["original_label"] = raw_label
    return Item(
        path=path, label=label, speaker=speaker, text=text, sentiment=sentiment, start=start, end=end, meta=meta
    )


def scan_manifest(path: str | Path) -> DatasetScan:
    """Read a manifest (.csv with header, or .jsonl / .json / .ndjson) into items.

    Bad rows never raise: each is skipped and counted under a generic reason ("row without
    path", "row without label", "bad number in start", "bad JSON line", "unknown label 'x'",
    "label 'x' has no target", "file not found" ...); the line numbers go to the debug log.
    A missing or empty manifest, or one where every row is bad, is a DatasetLayoutError.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"manifest {path} is not a file; expected {MANIFEST_LAYOUT}")
    suffix = path.suffix.lower()
    text = read_text_file(path)
    if suffix == ".csv":
        rows = _rows_csv(text)
    elif suffix in _JSONL_SUFFIXES:
        rows = _rows_jsonl(text)
    else:
        raise DatasetLayoutError(f"manifest {path}: unknown suffix {suffix!r}; expected {MANIFEST_LAYOUT}")
    base = path.resolve().parent
    scan = DatasetScan(root=path, items=[])
    for line_no, row in rows:
        try:
            if isinstance(row, _BadRow):
                raise row
            scan.items.append(_item(row, base))
        except _BadRow as bad:
            log.debug("%s line %d skipped: %s", path, line_no, bad)
            scan.skip(str(bad))
    if not scan.items:
        detail = f"every row was skipped ({dict(scan.skipped)})" if scan.skipped else "no rows"
        raise DatasetLayoutError(f"manifest {path}: {detail}; expected {MANIFEST_LAYOUT}")
    return scan
