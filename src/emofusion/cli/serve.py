"""`emofusion serve` and `emofusion keys ...` (operators' key management)."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sys
from typing import Optional

import typer

from .common import fail, fail_with

keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys (operators).")


def _cap_malloc_arenas(default: int = 2) -> None:
    """At most MALLOC_ARENA_MAX (default 2) glibc malloc arenas in the server and its worker
    processes. Each thread that allocates while others do gets an arena of its own, which keeps
    its peak. Under attack beside normal load (benchmarks/bench_hostile.py, 60 s phases) peak RSS
    grew by 303-509 MB with glibc's default (3 runs), by 173 MB with MALLOC_ARENA_MAX=2 in the
    environment and by 266 MB with it set here at start (one run each), at the same throughput."""
    os.environ.setdefault("MALLOC_ARENA_MAX", str(default))  # read by the worker processes at start
    try:
        arenas = int(os.environ["MALLOC_ARENA_MAX"])
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX, for this process (already running)
    except (OSError, AttributeError, ValueError):  # not glibc, or a value that is not a number
        pass


def serve(
    host: Optional[str] = typer.Option(None, help="Interface to bind (default: $EMOFUSION_HOST or 127.0.0.1; "
                                       "0.0.0.0 for all, as in a SageMaker container)."),
    port: Optional[int] = typer.Option(None, help="Port (default: $SAGEMAKER_BIND_TO_PORT or 8080)."),
    workers: int = typer.Option(1, min=1, help="Server processes (they share the database and the job queue)."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
    registry: Optional[str] = typer.Option(None, "--registry", help="Serve a model registry's current version "
                                           "and follow its promotions and rollbacks without a restart "
                                           "(sets EMOFUSION_REGISTRY; see `emofusion retrain`)."),
) -> None:
    """Run the web service: SageMaker routes, the /v1 API, the web page.

    Configured by the environment: EMOFUSION_HOME (database and uploads), DATABASE_URL,
    EMOFUSION_STORAGE (a folder or s3://bucket/prefix), EMOFUSION_MODEL or EMOFUSION_REGISTRY,
    limits (see README).
    """
    import uvicorn

    from ..serve.config import Settings, SettingsError

    host = host or os.environ.get("EMOFUSION_HOST") or "127.0.0.1"
    if port is None:
        raw = os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            fail("SAGEMAKER_BIND_TO_PORT", f"{raw!r} is not a port number")
        port = int(raw)
    if registry:
        os.environ["EMOFUSION_REGISTRY"] = registry
    try:
        settings = Settings.from_env()  # report a bad setting here, in one line, not from inside uvicorn
    except SettingsError as exc:
        fail_with(exc, "settings")
    if settings.registry:
        from ..errors import RegistryError
        from ..models.registry import ModelRegistry

        try:
            ModelRegistry(settings.registry).current_path()
        except RegistryError as exc:
            fail_with(exc, "--registry")
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail("--log-level", f"{log_level!r} is not one of debug, info, warning, error")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("emofusion")
    root.handlers[:] = [handler]
    root.setLevel(level)
    _cap_malloc_arenas()
    uvicorn.run("emofusion.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level.lower(), timeout_graceful_shutdown=90)


def _db():
    from ..serve.config import Settings, SettingsError
    from ..serve.db import Database

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        fail_with(exc, "settings")
    db = Database(settings.database_url)
    db.upgrade()
    return db


OPERATOR = "operator@emofusion.local"


@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", help="What the key is for."),
    user: str = typer.Option(OPERATOR, "--user", help="Owner's email: an existing user (see --create-user)."),
    create_user: bool = typer.Option(False, "--create-user", help="Create the --user when there is no such user "
                                                                  "(keys only, no password)."),
) -> None:
    """Print a new API key on stdout (shown once; only its hash is stored).

    A --user that does not exist is an error unless --create-user is given: a mistyped email
    would otherwise get a new user, and its key, silently. The default owner, the operator
    (operator@emofusion.local), is created when needed."""
    from sqlalchemy import select

    from ..serve import auth
    from ..serve.db import User

    try:
        email = auth.normalize_email(user)
    except auth.AuthError as exc:
        fail("--user", exc.message)
    db = _db()
    if not create_user and email != OPERATOR:
        with db.session() as s:
            if s.scalar(select(User).where(User.email == email)) is None:
                fail("--user", f"no user {email!r}; add --create-user to create one")
    try:
        owner = auth.get_or_create_user(db, email)
        _, secret = auth.create_key(db, owner.id, name)
    except auth.AuthError as exc:
        fail("--user" if exc.code == "invalid_email" else "--name", exc.message)
    typer.echo(secret)


@keys_app.command("list")
def keys_list(
    user: Optional[str] = typer.Option(None, "--user", help="Only this owner's keys."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
) -> None:
    """List keys (prefix, owner, name, created, last used, revoked); never the keys themselves."""
    from sqlalchemy import select

    from ..serve import auth
    from ..serve.db import User

    db = _db()
    user_id = None
    if user is not None:
        with db.session() as s:
            found = s.scalar(select(User).where(User.email == user.strip().lower()))
        if found is None:
            fail("--user", f"no user {user!r}")
        user_id = found.id
    for key, email in auth.list_keys(db, user_id):
        row = {"id": key.id, "prefix": key.prefix, "user": email, "name": key.name,
               "created_at": str(key.created_at), "last_used_at": str(key.last_used_at or ""),
               "revoked": key.revoked_at is not None}
        typer.echo(json.dumps(row) if as_json else
                   f"{key.id}  {key.prefix}…  {email}  {key.name!r}  created {key.created_at:%Y-%m-%d}"
                   f"{'  REVOKED' if key.revoked_at else ''}")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (from `keys list`).")) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from ..serve import auth

    if not auth.revoke_key(_db(), key_id):
        fail(key_id, "no such API key")
    typer.echo(f"revoked {key_id}")


labels_app = typer.Typer(no_args_is_help=True, help="Users' labels of their own analyses, as retraining data (operators).")


@labels_app.command("export")
def labels_export(
    out: str = typer.Option(..., "--out", help="Folder for labels.jsonl (a manifest) and media/."),
) -> None:
    """Write a retraining manifest from every analysis its owner submitted with training_consent and
    labelled (PUT /v1/analyses/{id}/labels): OUT/labels.jsonl, for `emofusion retrain --data`."""
    from ..serve.config import Settings, SettingsError
    from ..serve.storage import StorageError, storage_from_url
    from ..serve.training_labels import export_labels

    try:
        settings = Settings.from_env()
        storage = storage_from_url(settings.storage_url, endpoint_url=settings.s3_endpoint_url)
    except (SettingsError, StorageError) as exc:
        fail_with(exc, "settings")
    counts = export_labels(_db(), storage, out)
    typer.echo(f"{out}/labels.jsonl: {counts['labels']} labels from {counts['analyses']} analyses"
               + (f" ({counts['skipped']} skipped: their upload is no longer kept)" if counts["skipped"] else ""))
