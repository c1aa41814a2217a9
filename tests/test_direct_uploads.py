"""Direct uploads to S3 (a local moto server): POST /v1/uploads signs a form, the client posts
the file to the bucket, POST /v1/analyses creates the analysis from the upload's id. Limits and
types apply as for ordinary uploads; nothing refused stays stored or charged."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from emofusion.serve.app import create_app
from emofusion.serve.engine import Engine
from s3_fixtures import s3_bucket, s3_server  # noqa: F401
from serve_support import clip_bytes, make_settings, new_key, signup, wait_for


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return Engine(tiny_model_dir)


@pytest.fixture
def s3_client(tmp_path, tiny_model_dir, engine, s3_server, s3_bucket):  # noqa: F811
    import boto3

    settings = make_settings(tmp_path / "home", tiny_model_dir, storage_url=f"s3://{s3_bucket}/emo",
                             s3_endpoint_url=s3_server, max_upload_bytes=2_000_000)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    with TestClient(create_app(settings, engine=engine), base_url="https://testserver") as client:
        key = new_key(client, signup(client))
        client.headers["Authorization"] = f"Bearer {key}"
        yield client, key, lambda: sorted(o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", []))


def _post_to_storage(signed: dict, data: bytes, content_type: str | None = None) -> httpx.Response:
    fields = dict(signed["fields"])
    if content_type:
        fields["Content-Type"] = content_type
    return httpx.post(signed["url"], data=fields, files={"file": ("clip.mp4", data)})


def test_a_direct_upload_is_analysed_and_used_once(tmp_path, s3_client):
    client, key, objects = s3_client
    clip = clip_bytes(tmp_path)
    r = client.post("/v1/uploads", json={"content_type": "video/mp4", "size": len(clip)})
    assert r.status_code == 201, r.text
    signed = r.json()
    assert set(signed) == {"upload_id", "method", "url", "fields", "content_type", "max_bytes", "expires_at"}
    assert signed["max_bytes"] == len(clip) and signed["method"] == "POST"
    assert _post_to_storage(signed, clip).status_code in (200, 201, 204)
    assert len(objects()) == 1 and objects()[0].endswith(f"/{signed['upload_id']}/media")
    r = client.post("/v1/analyses", data={"upload_id": signed["upload_id"], "filename": "dir/my clip.mp4",
                                          "text": "i am so happy"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    done = wait_for(client, key, job_id)
    assert done["status"] == "succeeded" and done["filename"] == "my clip.mp4"
    assert objects() == []  # moved to the job's key, then deleted once analysed
    again = client.post("/v1/analyses", data={"upload_id": signed["upload_id"]})
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
    assert client.get("/v1/usage").json()["requests_today"] == 1


def test_uploads_that_break_what_was_signed_are_refused_and_deleted(tmp_path, s3_client):
    client, _, objects = s3_client
    clip = clip_bytes(tmp_path)
    signed = client.post("/v1/uploads", json={"content_type": "video/mp4", "size": 100}).json()
    # more than signed for: S3 refuses it already; the test server (moto) does not enforce POST
    # policies and stores it, so the service's own check is what refuses it here
    assert _post_to_storage(signed, clip).status_code == 204 and len(objects()) == 1
    r = client.post("/v1/analyses", data={"upload_id": signed["upload_id"]})
    assert r.status_code == 413 and "more than the 100" in r.json()["error"]["message"], r.text
    assert objects() == []
    signed = client.post("/v1/uploads", json={"content_type": "video/mp4", "size": len(clip)}).json()
    _post_to_storage(signed, clip, content_type="text/html")  # another type than signed for
    r = client.post("/v1/analyses", data={"upload_id": signed["upload_id"]})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", r.text
    assert objects() == []
    signed = client.post("/v1/uploads", json={"content_type": "video/mp4", "size": 2000}).json()
    _post_to_storage(signed, b"\x00" * 2000)  # not media: refused when probed, and deleted
    r = client.post("/v1/analyses", data={"upload_id": signed["upload_id"]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_media", r.text
    assert objects() == []
    assert client.get("/v1/usage").json()["requests_today"] == 0


@pytest.mark.parametrize("body, status, code", [
    ({"content_type": "video/mp4", "size": 3_000_000}, 413, "payload_too_large"),
    ({"content_type": "text/html", "size": 10}, 415, "unsupported_media_type"),
    ({"content_type": "video/mp4", "size": 0}, 422, "invalid_request"),
    ({"content_type": "video/mp4", "size": "10"}, 422, "invalid_request"),
    ({"content_type": "video/mp4"}, 422, "invalid_request"),
    (["video/mp4"], 422, "invalid_request"),
])
def test_bad_upload_requests(s3_client, body, status, code):
    client, _, objects = s3_client
    r = client.post("/v1/uploads", json=body)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert objects() == []


def test_bad_upload_ids_and_other_users_uploads(tmp_path, s3_client):
    client, _, _ = s3_client
    clip = clip_bytes(tmp_path)
    signed = client.post("/v1/uploads", json={"content_type": "video/mp4", "size": len(clip)}).json()
    _post_to_storage(signed, clip)
    for bad in ("../../etc/passwd", "x" * 32, ""):
        r = client.post("/v1/analyses", data={"upload_id": bad})
        assert r.status_code in (404, 422), r.text
    both = client.post("/v1/analyses", data={"upload_id": signed["upload_id"]},
                       files={"file": ("clip.mp4", clip, "video/mp4")})
    assert both.status_code == 422 and "either" in both.json()["error"]["message"]
    mine = client.headers.pop("Authorization")
    other = new_key(client, signup(client, email="bob@example.com"))
    client.headers["Authorization"] = mine
    stolen = client.post("/v1/analyses", data={"upload_id": signed["upload_id"]},
                         headers={"Authorization": f"Bearer {other}"})
    assert stolen.status_code == 404  # another user's upload id names nothing of theirs
    with_session_no_csrf = client.post("/v1/uploads", json={"content_type": "video/mp4", "size": 1},
                                       headers={"Authorization": ""})
    assert with_session_no_csrf.status_code == 403
    client.cookies.clear()
    anonymous = client.post("/v1/uploads", json={"content_type": "video/mp4", "size": 1}, headers={"Authorization": ""})
    assert anonymous.status_code == 401


def test_local_storage_says_to_post_the_file(tmp_path, tiny_model_dir, engine):
    settings = make_settings(tmp_path / "home", tiny_model_dir)
    with TestClient(create_app(settings, engine=engine, start_jobs=False), base_url="https://testserver") as client:
        key = new_key(client, signup(client))
        r = client.post("/v1/uploads", json={"content_type": "video/mp4", "size": 10},
                        headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "direct_uploads_unavailable"
        assert "connect-src 'self';" in client.get("/").headers["content-security-policy"]


def test_the_page_may_post_to_the_bucket_and_nowhere_else(s3_client, s3_server):  # noqa: F811
    client, _, _ = s3_client
    policy = client.get("/").headers["content-security-policy"]
    assert f"connect-src 'self' {s3_server};" in policy
