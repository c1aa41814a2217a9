"""`Services`: everything a request needs, built once at start-up and kept on `app.state`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from starlette.datastructures import UploadFile as FormFile

from ..models.registry import ModelRegistry
from . import uploads
from .config import Settings
from .db import Database
from .engine import Engine
from .jobs import JobRunner
from .login_guard import HashSlots, LoginThrottle
from .metrics import Metrics
from .model_follower import RegistryFollower
from .quotas import Limits, Quotas, RateLimiter
from .storage import Storage, storage_from_url


class Services:
    """Everything a request needs, built once at start-up."""

    def __init__(self, settings: Settings, engine: Engine | None = None):
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.tmp = settings.home / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self.db = Database(settings.database_url)
        self.db.upgrade()
        self.storage: Storage = storage_from_url(settings.storage_url, endpoint_url=settings.s3_endpoint_url)
        self.registry_follower: RegistryFollower | None = None
        model: str | Path = settings.model
        if settings.registry and engine is None:
            registry = ModelRegistry(settings.registry)
            served = registry.state().current
            model = registry.version_path(served)
        self.engine = engine or Engine(model, batch_max=settings.batch_max, batch_wait=settings.batch_wait_ms / 1000)
        if settings.registry and engine is None:
            self.registry_follower = RegistryFollower(registry, self.engine, served, settings.registry_poll_seconds)
        self.quotas = Quotas(self.db, Limits(settings.requests_per_day, settings.media_minutes_per_month))
        self.rate = RateLimiter(settings.key_requests_per_minute)
        self.jobs = JobRunner(self.db, self.storage, self.engine, self.quotas, workers=settings.job_workers,
                              max_attempts=settings.max_attempts, heartbeat_seconds=settings.heartbeat_seconds,
                              poll_seconds=settings.poll_seconds, retain_uploads=settings.retain_uploads,
                              callback_private=settings.callback_private)
        # /invocations and /predict analyse on these threads only: each thread keeps its own
        # Analyzers (Engine.analyzer), so their number stays bounded whatever else runs
        self.analysis_pool = ThreadPoolExecutor(settings.sync_concurrency, thread_name_prefix="emofusion-analysis")
        self.login_throttle = LoginThrottle(settings.login_failures_per_account, settings.login_failures_per_address)
        self.hash_slots = HashSlots(settings.password_hash_concurrency)
        self.metrics = Metrics(self.db, self.jobs)

    def private_file(self) -> tuple[int, Path]:
        """A new empty file for an upload in the server's temporary folder."""
        return uploads.private_file(self.tmp)

    @contextmanager
    def spooled(self, upload: FormFile | Path, what: str) -> Iterator[Path]:
        """The upload as a private file in the server's temporary folder, checked against the
        upload limit (`uploads.spooled`)."""
        with uploads.spooled(upload, what, self.tmp, self.settings.max_upload_bytes) as path:
            yield path
