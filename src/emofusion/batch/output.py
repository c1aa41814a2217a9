"""The batch output: a locked, appended JSON-lines file, what it already holds, and the run's counts."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BatchError


class BatchInterrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C); `summary` counts what was written before."""

    def __init__(self, summary: "BatchSummary"):
        super().__init__()
        self.summary = summary


@dataclass
class BatchSummary:
    """What one run did. `failed` counts the error lines this run wrote; `failed_before`
    the inputs skipped because the output already had an error line for them."""

    out: str
    total: int = 0  # distinct inputs
    analysed: int = 0
    failed: int = 0
    skipped: int = 0
    failed_before: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    engine: str = "local"
    workers: int = 1
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        """0 when every input has a result, 1 when some have an error line."""
        return 1 if (self.failed or self.failed_before) else 0

    def line(self) -> str:
        text = (f"done: {self.analysed} analysed, {self.failed} failed, {self.skipped} skipped "
                f"(already in the output) in {self.seconds:.1f} s")
        if self.failed_before:
            text += f"; {self.failed_before} of the skipped have error lines (--retry-failed analyses them again)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("out", "total", "analysed", "failed", "skipped", "failed_before",
                                               "duplicates", "seconds", "engine", "workers", "interrupted")}


def read_done(out: str | os.PathLike) -> dict[str, bool]:
    """{input: True if its last line in the output is a result, False if an error}.
    Lines that are not JSON objects with an `input` (e.g. one cut short by a kill) are ignored."""
    done: dict[str, bool] = {}
    path = Path(out)
    if not path.exists():
        return done
    with open(path, "rb") as f:
        for raw in f:
            try:
                row = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(row, dict) and isinstance(row.get("input"), str):
                done[row["input"]] = "error" not in row
    return done


class LockedOutput:
    """Appends one line per finished input, flushed at once. The file is locked while the run
    lasts (where the OS has flock): two runs on one output would analyse inputs twice."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.file = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise BatchError("--out", f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.file.close()
                raise BatchError("--out", f"another batch run is writing to {path}; one run per output file") from None
        # a line cut short by a kill must not swallow the next one
        if self.file.tell() > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
            if last != b"\n":
                self.file.write("\n")
                self.file.flush()

    def write(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def error_line(key: str, code: str, message: str) -> str:
    """The output line for an input that could not be analysed (message on one line)."""
    return json.dumps({"input": key, "error": {"code": code, "message": " ".join(str(message).split())}})
