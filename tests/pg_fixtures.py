"""PostgreSQL for tests; use with ``from pg_fixtures import fresh_postgres_url, postgres_url  # noqa: F401``.

The server comes from ``EMOFUSION_TEST_POSTGRES_URL`` (``make test`` sets it from
scripts/ensure-test-services.sh); with ``EMOFUSION_TEST_START_POSTGRES=1`` the fixtures run that
script themselves; otherwise tests that need PostgreSQL are skipped.
"""

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENSURE_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ensure-test-services.sh"
# The URL the script prints: the role and database it sets up on the local server.
ENSURE_SCRIPT_URL = "postgresql+psycopg://emofusion:emofusion@127.0.0.1:5432/emofusion_test"


def run_ensure_script() -> subprocess.CompletedProcess[str]:
    """Run scripts/ensure-test-services.sh (may install packages and start PostgreSQL)."""
    return subprocess.run([str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The SQLAlchemy URL of the test database (role with CREATEDB), or a skip when none is configured."""
    url = os.environ.get("EMOFUSION_TEST_POSTGRES_URL")
    if url:
        return url
    if os.environ.get("EMOFUSION_TEST_START_POSTGRES") != "1":
        pytest.skip("PostgreSQL not configured: run via make test")
    result = run_ensure_script()
    if result.returncode != 0:
        pytest.fail(f"{ENSURE_SCRIPT.name} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def _connect_params(url: Any) -> dict[str, Any]:
    """psycopg.connect keyword arguments for a SQLAlchemy URL object."""
    params = {"host": url.host, "port": url.port, "user": url.username, "password": url.password,
              "dbname": url.database, **url.query}
    return {k: v for k, v in params.items() if v is not None}


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """Create a uniquely named, empty database (``emofusion_t_<hex>``) on the server of `url`, owned
    by the same role; yield its URL; drop it afterwards, ending any connection still open to it."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"emofusion_t_{uuid.uuid4().hex[:12]}"
    params = _connect_params(base)
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty database for this test, dropped after it."""
    with fresh_database(postgres_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url(postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty database shared by the tests of one module, dropped after them."""
    with fresh_database(postgres_url) as url:
        yield url
