"""The service's database layer and whole flows on SQLite and on a real PostgreSQL server,
and uploads kept in S3 (a local moto server)."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient

from conftest import assert_contract_v1
from pg_fixtures import fresh_postgres_url, postgres_url  # noqa: F401
from s3_fixtures import s3_bucket, s3_server  # noqa: F401
from serve_support import clip_bytes, make_settings, new_key, signup, submit, wait_for

from emofusion.serve import auth
from emofusion.serve.app import create_app
from emofusion.serve.db import Base, Database
from emofusion.serve.engine import Engine
from emofusion.serve.quotas import Limits, QuotaExceeded, Quotas


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return Engine(tiny_model_dir)


def test_migrations_build_exactly_the_declared_schema(database_url):
    db = Database(database_url)
    db.upgrade()
    db.upgrade()  # idempotent: a second start changes nothing
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.dispose()


def test_quota_charge_is_atomic_under_concurrency(database_url):
    db = Database(database_url)
    db.upgrade()
    user = auth.create_user(db, "racer@example.com", "long enough password")
    quotas = Quotas(db, Limits(requests_per_day=5, media_minutes_per_month=None))
    outcomes: list[str] = []
    barrier = threading.Barrier(16)

    def one():
        barrier.wait()
        try:
            quotas.charge(user.id, 1.0)
            outcomes.append("ok")
        except QuotaExceeded as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 5 and outcomes.count("daily_request_quota") == 11
    usage = quotas.usage(user.id)
    assert usage["requests_today"] == 5 and usage["media_minutes_month"] == pytest.approx(5 / 60, abs=1e-3)
    db.dispose()


def test_media_quota_is_atomic_and_refundable(database_url):
    db = Database(database_url)
    db.upgrade()
    user = auth.create_user(db, "minutes@example.com", None)
    quotas = Quotas(db, Limits(requests_per_day=None, media_minutes_per_month=1.0))
    charges = []
    lock = threading.Lock()

    def one():
        try:
            c = quotas.charge(user.id, 25.0)
            with lock:
                charges.append(c)
        except QuotaExceeded as exc:
            assert exc.code == "monthly_media_quota"

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(charges) == 2  # 2 x 25 s fit in 60 s, a third does not
    quotas.refund(charges[0])
    assert quotas.usage(user.id)["media_minutes_month"] == pytest.approx(25 / 60, abs=1e-3)
    assert quotas.usage(user.id)["requests_today"] == 1
    db.dispose()


def test_keys_and_sessions(database_url):
    db = Database(database_url)
    db.upgrade()
    user = auth.create_user(db, "keys@example.com", "long enough password")
    key, secret = auth.create_key(db, user.id, "laptop")
    assert auth.key_principal(db, secret).user_id == user.id
    token, csrf = auth.start_session(db, user, hours=1)
    principal = auth.session_principal(db, token)
    assert principal.user_id == user.id and auth.csrf_ok(principal, csrf) and not auth.csrf_ok(principal, "x")
    expired, _ = auth.start_session(db, user, hours=-1)
    assert auth.session_principal(db, expired) is None
    assert auth.revoke_key(db, key.id)
    with pytest.raises(auth.AuthError):
        auth.key_principal(db, secret)
    with pytest.raises(auth.AuthError) as dup:
        auth.create_user(db, "KEYS@example.com", "another password")
    assert dup.value.status == 409
    db.dispose()


def test_whole_analysis_flow(database_url, tmp_path, tiny_model_dir, engine):
    settings = make_settings(tmp_path / "home", tiny_model_dir, database_url=database_url, requests_per_day=3)
    with TestClient(create_app(settings, engine=engine), base_url="https://testserver") as client:
        key = new_key(client, signup(client))
        clip = clip_bytes(tmp_path)
        job_id = submit(client, key, clip).json()["id"]
        done = wait_for(client, key, job_id)
        assert done["status"] == "succeeded"
        assert_contract_v1(done["result"])
        assert client.get("/v1/usage", headers={"X-API-Key": key}).json()["requests_today"] == 1
        expected = "sqlite" if database_url.startswith("sqlite") else "postgresql"
        assert client.get("/health").json()["database"] == expected


def test_uploads_in_s3(tmp_path, tiny_model_dir, engine, s3_server, s3_bucket):  # noqa: F811
    import boto3

    settings = make_settings(tmp_path / "home", tiny_model_dir, storage_url=f"s3://{s3_bucket}/emo/uploads",
                             s3_endpoint_url=s3_server)
    s3 = boto3.client("s3", endpoint_url=s3_server)

    def objects() -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]

    with TestClient(create_app(settings, engine=engine, start_jobs=False), base_url="https://testserver") as client:
        key = new_key(client, signup(client))
        clip = clip_bytes(tmp_path)
        job_id = submit(client, key, clip, text="i am so happy").json()["id"]
        assert objects() == [f"emo/uploads/uploads/{job_id}/media"]
        assert s3.get_object(Bucket=s3_bucket, Key=objects()[0])["Body"].read() == clip
        client.app.state.services.jobs.start()
        done = wait_for(client, key, job_id)
        assert done["status"] == "succeeded" and done["result"]["segments"][0]["text"] is not None
        assert objects() == [], "uploads are deleted from the bucket once analysed"
        assert not any((tmp_path / "home").rglob("upload-*")), "no temporary copies left behind"
