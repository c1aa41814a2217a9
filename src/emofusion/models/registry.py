"""A model registry: numbered model versions in one folder, with their metrics, provenance and
the one version that is served.

Layout of a registry folder:

    registry.json        which version is current, every version's record, the promotion history
    versions/v0001/      a complete model folder (config.json, model.safetensors, ...)
    versions/v0002/ ...
    .staging/            versions being written (never read by a server)

A version folder appears by one rename, and `registry.json` is replaced by one rename, so a reader
(`emofusion serve --registry`) sees either the old state or the new one, never a half-written model.
Writers take `registry.lock` (one retraining at a time).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import RegistryError

FORMAT = "emofusion-registry/1"
INDEX_NAME = "registry.json"
LOCK_NAME = "registry.lock"
SERVABLE = ("seed", "promoted")  # a "rejected" version (refused by its gate) is recorded, never served


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class RegistryState:
    """What `registry.json` says: the current version and every version's record."""

    current: str
    versions: list[dict[str, Any]]
    history: list[dict[str, Any]]

    def record(self, version: str) -> dict[str, Any]:
        for rec in self.versions:
            if rec["id"] == version:
                return rec
        raise RegistryError(f"no version {version!r} in the registry (known: {[r['id'] for r in self.versions]})")


class ModelRegistry:
    """A registry folder (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        text = str(root)
        if text.startswith("s3://"):
            raise RegistryError(f"{text}: a registry is a local folder (an S3 prefix can be watched for new data, "
                                "see `emofusion retrain --watch`, but models are versioned on a local disk)")
        self.root = Path(text).expanduser()

    # ---- reading --------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    def exists(self) -> bool:
        return self.index_path.is_file()

    def state(self) -> RegistryState:
        """The registry's state; RegistryError when it is missing or not a registry."""
        try:
            raw = json.loads(self.index_path.read_text())
        except FileNotFoundError:
            raise RegistryError(f"{self.root}: not a model registry (no {INDEX_NAME}); create one with "
                                "`emofusion registry init DIR --model default`") from None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{self.index_path}: cannot be read ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise RegistryError(f"{self.index_path}: not an {FORMAT} index")
        try:
            return RegistryState(current=str(raw["current"]), versions=list(raw["versions"]),
                                 history=list(raw["history"]))
        except (KeyError, TypeError):
            raise RegistryError(f"{self.index_path}: an {FORMAT} index without current, versions or history") from None

    def version_path(self, version: str) -> Path:
        return self.root / "versions" / version

    def current_path(self) -> Path:
        """The folder of the version being served."""
        state = self.state()
        path = self.version_path(state.current)
        if not path.is_dir():
            raise RegistryError(f"{self.root}: the current version {state.current} has no folder {path}")
        return path

    # ---- writing --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry's writer lock; RegistryError when another writer holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / LOCK_NAME
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise RegistryError(f"{self.root} is being changed by another process ({lock} exists; "
                                "remove it if no retraining is running)") from None
        except OSError as exc:
            raise RegistryError(f"{self.root}: cannot be written ({exc})") from None
        try:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            yield
        finally:
            lock.unlink(missing_ok=True)

    def _write_index(self, state: RegistryState) -> None:
        tmp = self.root / f".{INDEX_NAME}.{uuid.uuid4().hex}.tmp"
        payload = {"format": FORMAT, "current": state.current, "versions": state.versions, "history": state.history}
        try:
            tmp.write_text(json.dumps(payload, indent=2) + "\n")
            os.replace(tmp, self.index_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RegistryError(f"{self.index_path}: cannot be written ({exc})") from None

    def next_id(self, state: RegistryState | None = None) -> str:
        """The id the next version gets: after every recorded one and every folder on disk (a
        folder left by an interrupted write is never reused)."""
        state = state if state is not None else (self.state() if self.exists() else None)
        taken = [r["id"] for r in state.versions] if state else []
        folder = self.root / "versions"
        taken += [p.name for p in folder.iterdir()] if folder.is_dir() else []
        numbers = [int(v[1:]) for v in taken if v[:1] == "v" and v[1:].isdigit()]
        return f"v{max(numbers, default=0) + 1:04d}"

    def add_version(self, write: Callable[[Path], None] | None, record: dict[str, Any], *, make_current: bool,
                    action: str) -> str:
        """Record a new version. With `write`, its folder is written by `write(folder)` into staging
        and moved into place first; without, only its record is kept (a refused candidate, never
        served). `make_current` serves it from now on. Call while holding `locked()`."""
        state = self.state() if self.exists() else None
        version = self.next_id(state)
        if write is not None:
            staging = self.root / ".staging" / f"{version}-{uuid.uuid4().hex[:8]}"
            try:
                staging.mkdir(parents=True)
                write(staging)
                target = self.version_path(version)
                target.parent.mkdir(exist_ok=True)
                os.replace(staging, target)
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise RegistryError(f"{self.root}: cannot write version {version} ({exc})") from None
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        elif make_current:
            raise RegistryError("a version without a folder cannot be served")
        entry = {"id": version, "created": _now(), **record}
        versions = (state.versions if state else []) + [entry]
        history = list(state.history) if state else []
        current = version if make_current or state is None else state.current
        if make_current or state is None:
            history.append({"at": entry["created"], "action": action, "current": version,
                            "previous": state.current if state else None})
        self._write_index(RegistryState(current=current, versions=versions, history=history))
        return version

    def seed(self, model_folder: str | os.PathLike, provenance: dict[str, Any]) -> str:
        """A new registry whose first (current) version is a copy of `model_folder`."""
        if self.exists():
            raise RegistryError(f"{self.root} already holds a registry (current {self.state().current})")
        source = Path(model_folder)
        with self.locked():
            return self.add_version(lambda dst: copy_folder(source, dst), {"status": "seed", "provenance": provenance},
                                    make_current=True, action="seed")

    def set_current(self, version: str, action: str) -> None:
        """Serve `version` from now on (a promoted or seed version only)."""
        with self.locked():
            state = self.state()
            rec = state.record(version)
            if rec["status"] not in SERVABLE:
                raise RegistryError(f"{version} was {rec['status']} by its gate and is never served")
            if not self.version_path(version).is_dir():
                raise RegistryError(f"{version} has no folder in {self.root / 'versions'}")
            history = state.history + [{"at": _now(), "action": action, "current": version,
                                        "previous": state.current}]
            self._write_index(RegistryState(current=version, versions=state.versions, history=history))

    def rollback(self) -> str:
        """Serve again the version the current one replaced when it was promoted (or made current
        by `set_current`); returns its id. Rolling back again goes one further back."""
        state = self.state()
        activations = [h for h in state.history if h.get("current") == state.current and h.get("action") != "rollback"]
        target = activations[-1].get("previous") if activations else None
        if not target:
            raise RegistryError(f"{self.root}: nothing to roll back to ({state.current} replaced no other version)")
        self.set_current(target, "rollback")
        return target


def copy_folder(source: Path, destination: Path) -> None:
    """Copy a model folder's contents into an existing `destination`."""
    if not source.is_dir():
        raise RegistryError(f"{source}: not a model folder")
    shutil.copytree(source, destination, dirs_exist_ok=True)
