"""The batch output: a locked, appended JSON-lines file, what it already holds, and the run's counts."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Optional

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
    failed_inputs: list[str] = field(default_factory=list)  # error lines: skipped ones, then this run's

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


def _input_of(raw: bytes) -> Optional[str]:
    """The `input` of one output line, None for a line that is not a JSON object with one."""
    try:
        row = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return row["input"] if isinstance(row, dict) and isinstance(row.get("input"), str) else None


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


def _lock(file: Any) -> bool:
    """Lock `file` (exclusive, not waiting); False when another process holds the lock. True
    where the OS has no flock (not POSIX): no lock there."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class LockedOutput:
    """Appends one line per finished input, flushed at once. The file is locked while the run
    lasts (where the OS has flock): two runs on one output would analyse inputs twice.
    `drop` rewrites it without some inputs' lines (atomically: a new file, locked before it
    replaces the old one)."""

    def __init__(self, path: Path):
        self.path = path
        while True:
            try:
                self.file = open(path, "a", encoding="utf-8")
            except OSError as exc:
                raise BatchError("--out", f"cannot write {path}: {exc.strerror or exc}") from None
            if not _lock(self.file):
                self.file.close()
                raise BatchError("--out", f"another batch run is writing to {path}; one run per output file") from None
            try:
                same = os.path.samestat(os.fstat(self.file.fileno()), os.stat(path))
            except OSError:
                same = False
            if same:
                break
            # `drop` in another run replaced the file between our open and our lock: lock the new one
            self.file.close()
        # a line cut short by a kill must not swallow the next one
        if self.file.tell() > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
            if last != b"\n":
                self.file.write("\n")
                self.file.flush()

    def drop(self, inputs: Collection[str]) -> int:
        """Remove every line of `inputs` (e.g. error lines about to be retried): the file is
        written anew beside the old one, locked, then moved over it, so that a kill leaves the
        old file or the new one, and no other run can write in between. Returns the lines removed."""
        if not inputs:
            return 0
        self.file.flush()
        folder = self.path.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise BatchError("--out", f"cannot rewrite {self.path}: {exc.strerror or exc}") from None
        removed = 0
        try:
            with open(fd, "wb", closefd=True) as new, open(self.path, "rb") as old:
                for raw in old:
                    if _input_of(raw) in inputs:
                        removed += 1
                        continue
                    new.write(raw if raw.endswith(b"\n") else raw + b"\n")
                new.flush()
                os.fsync(new.fileno())
            os.chmod(tmp, os.stat(self.path).st_mode & 0o7777)
            replacement = open(tmp, "a", encoding="utf-8")
            if not _lock(replacement):  # nobody else knows the new file yet: not expected
                replacement.close()
                raise BatchError("--out", f"could not lock the rewritten {self.path}")
            os.replace(tmp, self.path)
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise BatchError("--out", f"cannot rewrite {self.path}: {exc.strerror or exc}") from None
            raise
        self.file.close()  # the old file (now unlinked) and its lock
        self.file = replacement
        return removed

    def write(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def error_line(key: str, code: str, message: str) -> str:
    """The output line for an input that could not be analysed (message on one line)."""
    return json.dumps({"input": key, "error": {"code": code, "message": " ".join(str(message).split())}})
