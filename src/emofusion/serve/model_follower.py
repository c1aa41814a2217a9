"""Following a model registry: the served model changes when the registry's current version does
(a promotion by `emofusion retrain`, or `emofusion registry rollback`), without a restart."""

from __future__ import annotations

import logging
import threading

from ..models.registry import ModelRegistry
from .engine import Engine

log = logging.getLogger("emofusion.serve")


class RegistryFollower:
    """A daemon thread that checks the registry every `poll_seconds` and swaps the engine's model
    when the current version changes. A version that fails to load is logged and not served: the
    model in service stays until a loadable version is current."""

    def __init__(self, registry: ModelRegistry, engine: Engine, served_version: str, poll_seconds: float = 5.0):
        self.registry, self.engine, self.poll_seconds = registry, engine, poll_seconds
        self.served_version = served_version
        self._failed: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emofusion-registry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self) -> bool:
        """Swap now if the registry's current version is not the one served; whether it swapped."""
        try:
            current = self.registry.state().current
        except Exception as exc:  # e.g. the index unreadable for a moment: try again at the next look
            log.error("model registry %s: %s; still serving %s", self.registry.root, exc, self.served_version)
            return False
        if current == self.served_version:
            self._failed = None  # a version that failed before is tried again if it is promoted again
            return False
        if current == self._failed:
            return False
        try:
            self.engine.swap(self.registry.version_path(current))
        except Exception as exc:  # not loadable (or out of memory beside the served one): keep serving
            log.error("model registry %s: %s cannot be loaded (%s); still serving %s", self.registry.root, current,
                      exc, self.served_version)
            self._failed = current
            return False
        log.info("model registry %s: now serving %s (was %s)", self.registry.root, current, self.served_version)
        self.served_version, self._failed = current, None
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()
