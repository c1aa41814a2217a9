"""Retraining on new data as it lands: a folder or an S3 prefix is watched for new manifests, and
each one starts a gated retraining (`train.retrain`). A local stand-in for a bucket-event function.

A manifest is a `.csv` or `.jsonl` file under the watched location; its rows' relative paths are
read against its own folder (from S3, every object under that folder is fetched with it: give each
batch of new data a folder of its own), so upload the clips first and the manifest last. Each manifest is
retrained on once (by key and content hash), whatever the gate decides, and a refused manifest is
not tried again until it changes; passing trouble (storage, a busy registry) is tried again at
the next look. What happened to each is kept in WORK/watch-state.json, so a restarted watcher
does not redo them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import EmofusionError, RegistryError, RetrainingDataError, StorageError
from ..models.registry import ModelRegistry
from .retrain import RetrainSettings, retrain

MANIFEST_SUFFIXES = (".csv", ".jsonl")
STATE_NAME = "watch-state.json"


def open_watched(url: str, endpoint_url: str | None = None):
    """The storage behind a watched folder or s3:// prefix, listed once to prove it is readable."""
    from ..serve.storage import storage_from_url

    if "://" not in url and not Path(url).expanduser().is_dir():
        raise RetrainingDataError(f"{url}: the watched folder does not exist")
    try:
        storage = storage_from_url(url, endpoint_url=endpoint_url)
        storage.keys()
    except StorageError as exc:
        raise RetrainingDataError(f"cannot read the watched location {url}: {exc}") from None
    return storage


def _fetch(storage: Any, key: str, into: Path) -> Path:
    """A local copy of manifest `key` and every object in its folder; returns the manifest's path."""
    from ..serve.storage import LocalStorage

    if isinstance(storage, LocalStorage):
        return storage.root / key  # read in place
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    for other in storage.keys(folder):
        target = into / other[len(folder):]
        target.parent.mkdir(parents=True, exist_ok=True)
        with storage.local_path(other) as path:
            target.write_bytes(path.read_bytes())
    return into / key[len(folder):]


def _digest(storage: Any, key: str) -> str:
    with storage.local_path(key) as path:
        return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_state(path: Path, seen: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(seen, indent=2) + "\n")
    tmp.replace(path)


def watch(url: str, registry: ModelRegistry, recipe: str | Path, work_root: str | Path, *,
          settings: RetrainSettings | None = None, interval: float = 30.0, once: bool = False,
          endpoint_url: str | None = None, cache_dir: str | Path | None = None,
          log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Retrain on each new manifest under `url`; with `once`, on those present now, then return
    what happened to each (otherwise run until interrupted)."""
    storage = open_watched(url, endpoint_url)
    registry.state()  # a missing registry is an error now, not at the first manifest
    work_root = Path(work_root)
    work_root.mkdir(parents=True, exist_ok=True)
    state_file = work_root / STATE_NAME
    seen: dict[str, Any] = json.loads(state_file.read_text()) if state_file.is_file() else {}
    outcomes: list[dict[str, Any]] = []
    log(f"watching {url} for new manifests ({', '.join(MANIFEST_SUFFIXES)})")
    while True:
        try:
            keys = [k for k in storage.keys() if k.endswith(MANIFEST_SUFFIXES)]
        except StorageError as exc:  # a prefix that stops answering: say so and try again
            log(f"error: cannot list {url}: {exc}")
            keys = []
        for key in keys:
            try:
                digest = _digest(storage, key)
            except StorageError as exc:  # replaced or removed since the listing: the next look sees it
                log(f"error: cannot read {key}: {exc}")
                continue
            if seen.get(key, {}).get("sha256") == digest:
                continue
            run = work_root / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{digest[:8]}"
            log(f"new manifest {key}: retraining in {run}")
            try:
                manifest = _fetch(storage, key, run / "data")
                report = retrain(registry, recipe, manifest, run, settings=settings, cache_dir=cache_dir, log=log)
                outcome = {"key": key, "sha256": digest, "work": str(run), "version": report["version"],
                           "promoted": report["promoted"], "reason": report["gate"]["reason"]}
            except (StorageError, RegistryError) as exc:  # passing trouble: tried again at the next look
                log(f"error: {key}: {exc}; trying again at the next look")
                outcomes.append({"key": key, "sha256": digest, "work": str(run), "error": str(exc), "code": exc.code,
                                 "retry": True})
                continue
            except EmofusionError as exc:  # the manifest itself is refused: not tried again until it changes
                outcome = {"key": key, "sha256": digest, "work": str(run), "error": str(exc), "code": exc.code}
            log(json.dumps(outcome))
            seen[key] = outcome
            _write_state(state_file, seen)
            outcomes.append(outcome)
        if once:
            return outcomes
        time.sleep(interval)
