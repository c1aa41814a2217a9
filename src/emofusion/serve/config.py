"""Service settings, read from the environment (one place for every knob)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import SettingsError  # noqa: F401  (re-exported: the error family lives in emofusion.errors)

SAGEMAKER_MODEL_DIR = "/opt/ml/model"


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r}: expected 1/0, true/false, yes/no or on/off")


def _number(env: Mapping[str, str], name: str, default: float | None, kind=float, minimum: float = 0):
    """A number, or None for `unlimited`/`none` (when the setting allows no limit)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() in ("unlimited", "none"):
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number or 'unlimited'") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: must be >= {minimum}")
    return value


def _default_model(env: Mapping[str, str]) -> str:
    """SageMaker's model folder when it holds a model, else EMOFUSION_MODEL, else the bundled one."""
    for folder in (env.get("SM_MODEL_DIR"), SAGEMAKER_MODEL_DIR):
        if folder and (Path(folder) / "config.json").is_file():
            return folder
    return env.get("EMOFUSION_MODEL") or "default"


def _registry(env: Mapping[str, str]) -> str | None:
    """EMOFUSION_REGISTRY, which serves a registry's current version instead of EMOFUSION_MODEL."""
    registry = env.get("EMOFUSION_REGISTRY") or None
    if registry and env.get("EMOFUSION_MODEL"):
        raise SettingsError("set EMOFUSION_MODEL or EMOFUSION_REGISTRY, not both: with a registry, the model "
                            "served is the registry's current version")
    return registry


@dataclass
class Settings:
    """Everything the service can be told. `from_env()` is how `emofusion serve` builds it."""

    home: Path
    database_url: str
    storage_url: str
    s3_endpoint_url: str | None = None
    model: str = "default"
    registry: str | None = None  # a model registry folder: serve its current version, follow promotions
    registry_poll_seconds: float = 5.0
    max_upload_bytes: int = 500 * 1024 * 1024
    requests_per_day: int | None = 1000
    media_minutes_per_month: float | None = 600.0
    key_requests_per_minute: int | None = 120
    require_key: bool = False  # also guard the SageMaker and MVP routes with an API key
    retain_uploads: bool = False
    callback_private: bool = False  # allow callback URLs on loopback / private networks (SSRF guard off)
    job_workers: int = 1
    max_attempts: int = 2  # a job interrupted by a crash is re-queued until it has run this often
    sync_concurrency: int = 2  # analyses run at once for /invocations and /predict
    batch_max: int = 64  # micro-batching: rows per model call, across concurrent analyses
    # how long a model call waits for companions; 0 (the default) turns micro-batching off: on a
    # 2-core CPU it cost throughput (benchmarks/results/serve-*.md), it pays where a batch of 64
    # costs little more than a batch of 4 (GPUs, many cores)
    batch_wait_ms: float = 0.0
    cookie_secure: bool | None = None  # None: Secure except over plain http to a loopback host
    signup_enabled: bool = True
    login_failures_per_account: int = 10  # failed log-ins per 15 minutes before 429
    login_failures_per_address: int = 30
    password_hash_concurrency: int = 2  # argon2 hashes at once (64 MiB each)
    session_hours: float = 24 * 14
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 2.0
    drain_seconds: float = 60.0
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("EMOFUSION_HOME") or Path.home() / ".emofusion").expanduser()
        database_url = env.get("DATABASE_URL") or f"sqlite:///{home / 'emofusion.db'}"
        if database_url.startswith("postgres://"):  # Heroku-style URLs
            database_url = "postgresql://" + database_url[len("postgres://") :]
        if database_url.startswith("postgresql://"):
            database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
        max_mb = _number(env, "EMOFUSION_MAX_UPLOAD_MB", 500.0, minimum=0.001)
        return cls(
            home=home,
            database_url=database_url,
            storage_url=env.get("EMOFUSION_STORAGE") or str(home / "uploads"),
            s3_endpoint_url=env.get("EMOFUSION_S3_ENDPOINT_URL") or None,
            model=_default_model(env),
            registry=_registry(env),
            registry_poll_seconds=_number(env, "EMOFUSION_REGISTRY_POLL_SECONDS", 5.0, minimum=0.1) or 5.0,
            max_upload_bytes=int((max_mb if max_mb is not None else 1e9) * 1024 * 1024),
            requests_per_day=_number(env, "EMOFUSION_REQUESTS_PER_DAY", 1000, int),
            media_minutes_per_month=_number(env, "EMOFUSION_MEDIA_MINUTES_PER_MONTH", 600.0),
            key_requests_per_minute=_number(env, "EMOFUSION_KEY_REQUESTS_PER_MINUTE", 120, int, minimum=1),
            require_key=_bool(env, "EMOFUSION_REQUIRE_KEY", False),
            retain_uploads=_bool(env, "EMOFUSION_RETAIN_UPLOADS", False),
            callback_private=_bool(env, "EMOFUSION_CALLBACK_PRIVATE", False),
            job_workers=_number(env, "EMOFUSION_JOB_WORKERS", 1, int, minimum=1) or 1,
            sync_concurrency=_number(env, "EMOFUSION_SYNC_CONCURRENCY", 2, int, minimum=1) or 2,
            batch_max=_number(env, "EMOFUSION_BATCH_MAX", 64, int, minimum=1) or 64,
            batch_wait_ms=_number(env, "EMOFUSION_BATCH_WAIT_MS", 0.0) or 0.0,
            cookie_secure=None if env.get("EMOFUSION_COOKIE_SECURE", "auto") in ("", "auto")
            else _bool(env, "EMOFUSION_COOKIE_SECURE", True),
            signup_enabled=_bool(env, "EMOFUSION_SIGNUP", True),
            login_failures_per_account=_number(env, "EMOFUSION_LOGIN_FAILURES_PER_ACCOUNT", 10, int, minimum=1) or 10,
            login_failures_per_address=_number(env, "EMOFUSION_LOGIN_FAILURES_PER_ADDRESS", 30, int, minimum=1) or 30,
            password_hash_concurrency=_number(env, "EMOFUSION_PASSWORD_HASH_CONCURRENCY", 2, int, minimum=1) or 2,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
