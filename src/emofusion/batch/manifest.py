"""Batch inputs: the command line's paths and CSV / JSON-lines manifests as BatchItems."""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from ..errors import ManifestError

logger = logging.getLogger("emofusion.batch")

MANIFEST_COLUMNS = ("path", "audio", "transcript", "text")


@dataclass(frozen=True)
class BatchItem:
    """One input: `input` is the key written to the output (the string as given); `path`
    (and the optional `audio`, `transcript`) are what is read. `error` marks a row that
    cannot be analysed at all, e.g. a bad manifest line: (code, message)."""

    input: str
    path: Optional[str] = None
    audio: Optional[str] = None
    transcript: Optional[str] = None
    text: Optional[str] = None
    error: Optional[tuple[str, str]] = None

    def task(self) -> dict[str, Any]:
        return {"input": self.input, "path": self.path, "audio": self.audio,
                "transcript": self.transcript, "text": self.text}

    def absolute(self) -> "BatchItem":
        """The same item with its files as absolute paths (for processes with another cwd)."""
        def absolute(p: Optional[str]) -> Optional[str]:
            return os.path.abspath(os.path.expanduser(p)) if p else p

        return BatchItem(self.input, absolute(self.path), absolute(self.audio), absolute(self.transcript),
                         self.text, self.error)


def _resolve(base: Path, value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else base / p)


def read_manifest(manifest: str | os.PathLike) -> list[BatchItem]:
    """The inputs listed in a CSV (header with `path`; optional `audio`, `transcript`, `text`)
    or JSON-lines manifest (objects with those keys). Relative paths are resolved against the
    manifest's folder; `input` stays as written. A row that cannot be used becomes an item
    with an error, keyed `<manifest>:<line>`. Raises ManifestError when the file as a whole
    cannot be read."""
    name = str(manifest)
    path = Path(os.path.expanduser(name))
    if not path.exists():
        raise ManifestError("--manifest", f"{name}: no such file")
    if path.is_dir():
        raise ManifestError("--manifest", f"{name}: is a folder, not a CSV or JSON-lines file")
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError("--manifest", f"{name}: not a UTF-8 text file (CSV or JSON lines)") from None
    except OSError as exc:
        raise ManifestError("--manifest", f"{name}: cannot read it: {exc.strerror or exc}") from None
    if not content.strip():
        raise ManifestError("--manifest", f"{name}: empty manifest")
    base = path.parent
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        kind = "jsonl"
    elif suffix in (".csv", ".tsv"):
        kind = "csv"
    else:
        kind = "jsonl" if content.lstrip().startswith("{") else "csv"
    if kind == "jsonl":
        return _read_jsonl_manifest(name, content, base)
    return _read_csv_manifest(name, content, base, delimiter="\t" if suffix == ".tsv" else ",")


def _bad_row(name: str, line: int, reason: str) -> BatchItem:
    return BatchItem(f"{name}:{line}", error=("invalid_manifest_row", reason))


def _item_from_row(name: str, line: int, row: dict[str, Any], base: Path) -> BatchItem:
    values: dict[str, Optional[str]] = {}
    for key in MANIFEST_COLUMNS:
        value = row.get(key)
        if value is None:
            values[key] = None
            continue
        if not isinstance(value, str):
            return _bad_row(name, line, f"{key!r} must be a string, not {type(value).__name__}")
        value = value.strip()
        values[key] = value or None
    if not values["path"]:
        return _bad_row(name, line, "no 'path' in this row")
    return BatchItem(values["path"], _resolve(base, values["path"]), _resolve(base, values["audio"]),
                     _resolve(base, values["transcript"]), values["text"])


def _read_csv_manifest(name: str, content: str, base: Path, delimiter: str = ",") -> list[BatchItem]:
    import io

    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = [str(h).strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise ManifestError("--manifest", f"{name}: unreadable CSV header: {exc}") from None
    if "path" not in header:
        found = ", ".join(repr(h) for h in header if h) or "nothing"
        raise ManifestError("--manifest", f"{name}: the header has no 'path' column (found: {found}); "
                                          "expected a CSV with path[,audio,transcript,text] or JSON lines")
    reader.fieldnames = header
    items: list[BatchItem] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            items.append(_bad_row(name, reader.line_num, f"unreadable CSV row: {exc}"))
            continue
        if None in row:  # more fields than the header has
            items.append(_bad_row(name, reader.line_num, "more fields than the header has"))
            continue
        items.append(_item_from_row(name, reader.line_num, row, base))
    return items


def _read_jsonl_manifest(name: str, content: str, base: Path) -> list[BatchItem]:
    items: list[BatchItem] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            items.append(_bad_row(name, number, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(row, dict):
            items.append(_bad_row(name, number, f"not a JSON object (a {type(row).__name__})"))
            continue
        items.append(_item_from_row(name, number, row, base))
    return items


def as_items(inputs: Iterable[str | os.PathLike | BatchItem]) -> list[BatchItem]:
    """Paths (or BatchItems, kept as they are) as BatchItems keyed by the string given."""
    items = []
    for x in inputs:
        items.append(x if isinstance(x, BatchItem) else BatchItem(str(x), str(x)))
    return items


def dedupe(items: list[BatchItem]) -> tuple[list[BatchItem], int]:
    """The items without repeated inputs (the first kept, a warning logged) and how many were dropped."""
    seen: set[str] = set()
    out, dupes = [], 0
    for item in items:
        if item.input in seen:
            dupes += 1
            logger.warning("duplicate input %s (analysed once)", item.input)
            continue
        seen.add(item.input)
        out.append(item)
    return out, dupes
