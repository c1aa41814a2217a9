"""Tables and the database handle (SQLAlchemy 2). SQLite by default, PostgreSQL by URL.

The schema is created and upgraded by the Alembic migrations in `migrations/`, never by
`create_all`, so a database made by one release upgrades in place under the next.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    false,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")

# analysis states
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # stored naive, always UTC


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))  # None: operator-made, API keys only
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    requests_per_day: Mapped[int | None] = mapped_column(Integer)  # per-user override of the default
    media_minutes_per_month: Mapped[float | None] = mapped_column(Float)


class WebSession(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Usage(Base):
    """Counters per user and period: `d:2026-11-23` (requests) and `m:2026-11` (media seconds)."""

    __tablename__ = "usage"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    media_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class AnalysisJob(Base):
    __tablename__ = "analyses"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    filename: Mapped[str | None] = mapped_column(String(255))  # shown to the owner; never a path
    media_key: Mapped[str] = mapped_column(String(255))
    audio_key: Mapped[str | None] = mapped_column(String(255))
    transcript_key: Mapped[str | None] = mapped_column(String(255))
    text: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    media_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    charged_day: Mapped[str | None] = mapped_column(String(16))
    charged_month: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    result: Mapped[dict | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # the owner agreed that the upload be kept (after the analysis) and used for training, with the
    # labels they give it ([{"label", "start", "end"}], start/end null for the whole file)
    training_consent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    labels: Mapped[list | None] = mapped_column(JSON)

    @property
    def upload_keys(self) -> list[str]:
        """The storage keys of this analysis' uploads (media, and audio and transcript if given)."""
        return [k for k in (self.media_key, self.audio_key, self.transcript_key) if k]

    __table_args__ = (
        Index("ix_analyses_user_created", "user_id", "created_at"),
        Index("ix_analyses_status", "status"),
    )


class Database:
    """The engine and a session factory; `upgrade()` brings the schema to the newest migration."""

    def __init__(self, url: str):
        self.url = url
        kwargs: dict = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
                _private_file(Path(url[len("sqlite:///") :]))
            kwargs = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        # statement parameters (file names, texts, callback URLs with their tokens) never reach
        # an exception's message, and so never a log line
        self.engine: Engine = create_engine(url, hide_parameters=True, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on an exception."""
        with self._sessions() as s, s.begin():
            yield s

    def upgrade(self) -> None:
        from alembic import command

        with self.engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _private_file(path: Path) -> None:
    """The SQLite file readable by this user only (0600), like uploads; SQLite gives its -wal and
    -shm files the database file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
