"""The PostgreSQL test fixtures give working, separate, throw-away databases."""

import os

import pytest
from pg_fixtures import (  # noqa: F401
    ENSURE_SCRIPT_URL,
    fresh_database,
    fresh_postgres_url,
    module_postgres_url,
    postgres_url,
    run_ensure_script,
)
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url


def database_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


def test_fresh_postgres_url_is_a_working_empty_database(fresh_postgres_url: str) -> None:  # noqa: F811
    name = make_url(fresh_postgres_url).database
    assert name.startswith("emofusion_t_")
    engine = create_engine(fresh_postgres_url)
    try:
        assert inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
            assert conn.execute(text("SELECT current_database()")).scalar_one() == name
            conn.execute(text("CREATE TABLE jobs (id serial PRIMARY KEY, state text NOT NULL)"))
            conn.execute(text("INSERT INTO jobs (state) VALUES ('queued'), ('done')"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT state FROM jobs ORDER BY id")).scalars().all() == ["queued", "done"]
    finally:
        engine.dispose()


def test_fresh_databases_are_separate_and_dropped(postgres_url: str) -> None:  # noqa: F811
    with fresh_database(postgres_url) as first, fresh_database(postgres_url) as second:
        assert first != second
        first_engine, second_engine = create_engine(first), create_engine(second)
        with first_engine.begin() as conn:
            conn.execute(text("CREATE TABLE only_here (x int)"))
        assert inspect(second_engine).get_table_names() == []
        assert inspect(first_engine).get_table_names() == ["only_here"]
        second_engine.dispose()
        # first_engine still holds an open pooled connection: the drop must end it.
    names = {make_url(first).database, make_url(second).database}
    assert not names & database_names(postgres_url)
    first_engine.dispose()


# The module database URLs the parametrized test below saw, in order.
MODULE_URLS_SEEN: list[str] = []


@pytest.mark.parametrize("run", [1, 2])
def test_module_postgres_url_is_shared_within_the_module(
    module_postgres_url: str, fresh_postgres_url: str, run: int  # noqa: F811
) -> None:
    assert module_postgres_url != fresh_postgres_url
    MODULE_URLS_SEEN.append(module_postgres_url)
    assert set(MODULE_URLS_SEEN) == {module_postgres_url}
    engine = create_engine(module_postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS shared (run int)"))
            conn.execute(text("INSERT INTO shared VALUES (:run)"), {"run": run})
            # the rows of the earlier runs in this module are still there
            assert conn.execute(text("SELECT count(*) FROM shared")).scalar_one() == len(MODULE_URLS_SEEN)
    finally:
        engine.dispose()


@pytest.mark.skipif(
    os.environ.get("EMOFUSION_TEST_POSTGRES_URL") != ENSURE_SCRIPT_URL,
    reason="the test database was not set up by scripts/ensure-test-services.sh",
)
def test_ensure_script_again_prints_only_the_url() -> None:
    result = run_ensure_script()
    assert result.returncode == 0, result.stderr
    assert result.stdout == ENSURE_SCRIPT_URL + "\n"
