"""Users' labels of their own analyses (with training consent), and the retraining manifest an
operator exports from them; consent withdrawn or analysis deleted leaves nothing behind."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from emofusion.cli import app
from emofusion.data import scan_manifest
from emofusion.serve.app import create_app
from emofusion.serve.engine import Engine
from emofusion.serve.training_labels import speaker_pseudonym
from serve_support import clip_bytes, make_settings, new_key, signup, submit, wait_for


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return Engine(tiny_model_dir)


@pytest.fixture
def service(tmp_path, tiny_model_dir, engine):
    settings = make_settings(tmp_path / "home", tiny_model_dir)
    with TestClient(create_app(settings, engine=engine), base_url="https://testserver") as client:
        key = new_key(client, signup(client))
        yield client, key, settings


def _uploads(settings) -> list[str]:
    return sorted(p.relative_to(settings.home / "uploads").as_posix()
                  for p in (settings.home / "uploads").rglob("*") if p.is_file())


def test_consented_analyses_are_kept_labelled_and_exported(tmp_path, service, monkeypatch):
    client, key, settings = service
    auth = {"Authorization": f"Bearer {key}"}
    kept = wait_for(client, key, submit(client, key, clip_bytes(tmp_path, duration=3.0), training_consent="true").json()["id"])
    plain = wait_for(client, key, submit(client, key, clip_bytes(tmp_path, "b.mp4")).json()["id"])
    assert kept["training_consent"] and kept["labels"] is None and not plain["training_consent"]
    assert _uploads(settings) == [f"uploads/{kept['id']}/media"]  # only the consented upload is kept
    labels = [{"label": "happy"}, {"label": "sad", "start": 0.5, "end": 2.0}]
    r = client.put(f"/v1/analyses/{kept['id']}/labels", json={"labels": labels}, headers=auth)
    assert r.status_code == 200, r.text
    assert client.get(f"/v1/analyses/{kept['id']}", headers=auth).json()["labels"] == [
        {"label": "happy", "start": None, "end": None}, {"label": "sad", "start": 0.5, "end": 2.0}]
    refused = client.put(f"/v1/analyses/{plain['id']}/labels", json={"labels": [{"label": "happy"}]}, headers=auth)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "consent_required"

    for name, value in (("EMOFUSION_HOME", str(settings.home)), ("DATABASE_URL", settings.database_url),
                        ("EMOFUSION_STORAGE", settings.storage_url)):
        monkeypatch.setenv(name, value)
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["labels", "export", "--out", str(out)])
    assert result.exit_code == 0 and "2 labels from 1 analyses" in result.output, result.output
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {r["speaker"] for r in rows} == {rows[0]["speaker"]}
    assert rows[0]["speaker"].startswith("user-") and "@" not in rows[0]["speaker"]  # a pseudonym, not the account
    scan = scan_manifest(out / "labels.jsonl")  # what `emofusion retrain --data` reads
    assert [(i.label, i.start, i.end) for i in scan.items] == [("happy", None, None), ("sad", 0.5, 2.0)]
    assert scan.items[0].path.read_bytes() == (settings.home / "uploads" / f"uploads/{kept['id']}/media").read_bytes()

    assert client.delete(f"/v1/analyses/{kept['id']}/labels", headers=auth).status_code == 204  # withdrawn
    after = client.get(f"/v1/analyses/{kept['id']}", headers=auth).json()
    assert not after["training_consent"] and after["labels"] is None and _uploads(settings) == []
    result = CliRunner().invoke(app, ["labels", "export", "--out", str(tmp_path / "again")])
    assert "0 labels from 0 analyses" in result.output


def test_deleting_a_labelled_analysis_deletes_its_kept_upload(tmp_path, service):
    client, key, settings = service
    auth = {"Authorization": f"Bearer {key}"}
    job = wait_for(client, key, submit(client, key, clip_bytes(tmp_path), training_consent="1").json()["id"])
    client.put(f"/v1/analyses/{job['id']}/labels", json={"labels": [{"label": "angry"}]}, headers=auth)
    assert _uploads(settings)
    assert client.delete(f"/v1/analyses/{job['id']}", headers=auth).status_code == 204
    assert _uploads(settings) == []


@pytest.mark.parametrize("body, message", [
    ({"labels": [{"label": "ecstatic"}]}, "label must be one of"),
    ({"labels": []}, "with 1 to 2000 labels"),
    ({"labels": [{"label": "happy", "start": 1.0}]}, "give both start and end"),
    ({"labels": [{"label": "happy", "start": 2.0, "end": 1.0}]}, "need 0 <= start < end"),
    ({"labels": [{"label": "happy", "start": 0.0, "end": 99.0}]}, "the file's length"),
    ({"labels": [{"label": "happy", "why": "x"}]}, "expected {label, start?, end?}"),
    ({"labels": "happy"}, "with 1 to 2000 labels"),
])
def test_bad_labels_are_refused(tmp_path, service, body, message):
    client, key, _ = service
    job = wait_for(client, key, submit(client, key, clip_bytes(tmp_path), training_consent="true").json()["id"])
    r = client.put(f"/v1/analyses/{job['id']}/labels", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 422 and message in r.json()["error"]["message"], r.text


def test_labels_of_another_users_analysis_and_bad_consent_values(tmp_path, service):
    client, key, _ = service
    job = wait_for(client, key, submit(client, key, clip_bytes(tmp_path), training_consent="true").json()["id"])
    client.cookies.clear()
    other = new_key(client, signup(client, email="eve@example.com"))
    for method in ("put", "delete"):
        kwargs = {"json": {"labels": [{"label": "happy"}]}} if method == "put" else {}
        r = getattr(client, method)(f"/v1/analyses/{job['id']}/labels", headers={"Authorization": f"Bearer {other}"},
                                    **kwargs)
        assert r.status_code == 404
    r = submit(client, key, clip_bytes(tmp_path), training_consent="maybe")
    assert r.status_code == 422 and "training_consent" in r.json()["error"]["message"]
    assert speaker_pseudonym("a") != speaker_pseudonym("b") and speaker_pseudonym("a") == speaker_pseudonym("a")
