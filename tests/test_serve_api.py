"""The service end to end through its HTTP routes (FastAPI TestClient, real model, real database)."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from fastapi.testclient import TestClient

from conftest import assert_contract_v1
from serve_support import STRONG_PASSWORD, client_factory, clip_bytes, new_key, signup, submit, wait_for

from emofusion.serve.db import QUEUED, RUNNING, AnalysisJob, Database, utcnow
from emofusion.serve.engine import Engine
from emofusion.serve.errors import ApiError


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return Engine(tiny_model_dir)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return clip_bytes(tmp_path_factory.mktemp("clips"))


@pytest.fixture
def make_client(tmp_path, tiny_model_dir, engine):
    """make_client(**settings) -> a started TestClient on a fresh home folder."""
    make, close = client_factory(tmp_path / "home", tiny_model_dir, engine)
    yield make
    close()


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def user_key(client):
    return new_key(client, signup(client))


def error_of(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return body["error"]


# -- SageMaker and MVP routes -------------------------------------------------------------------------
def test_ping_and_health(client):
    r = client.get("/ping")
    assert r.status_code == 200 and r.json()["model"]["name"] == "tiny"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["database"] == "sqlite" and health["queue"] == 0


def test_invocations_multipart_video_answers_sorted_emotions(client, clip):
    r = client.post("/invocations", files={"video": ("v.mp4", clip, "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    scores = [e["score"] for e in body["emotions"]]
    assert len(scores) == 7 and scores == sorted(scores, reverse=True)
    assert abs(sum(scores) - 1) < 1e-3
    assert body["emotions"][0]["label"] == body["summary"]["top"]
    assert len(body["segments"]) == 2 and body["segments"][0]["voice"] is not None
    assert len(body["people"]) == 1 and body["segments"][0]["speaker"] in ("p1", "off_screen")  # the clip's one face


def test_invocations_raw_body_and_audio_with_transcript(client, clip, tmp_path):
    raw = client.post("/invocations", content=clip, headers={"Content-Type": "video/mp4"})
    assert raw.status_code == 200 and raw.json()["emotions"]
    audio = clip_bytes(tmp_path, "a.wav", with_video=False, audio_codec="pcm_s16le", container="wav")
    both = client.post("/invocations", files={"audio": ("a.wav", audio, "audio/wav")},
                       data={"transcript": "i am so happy today"})
    assert both.status_code == 200, both.text
    seg = both.json()["segments"][0]
    assert seg["face"] is None and seg["voice"] is not None and seg["text"] is not None


def test_invocations_bad_inputs(client, clip):
    error_of(client.post("/invocations", content=b'{"x": 1}', headers={"Content-Type": "application/json"}), 415)
    error_of(client.post("/invocations", files={"other": ("x", b"1", "text/plain")}), 422)
    bad = error_of(client.post("/invocations", content=b"\x00garbage" * 100, headers={"Content-Type": "video/mp4"}), 422)
    assert bad["code"] == "invalid_media"
    assert error_of(client.post("/invocations", content=b"", headers={"Content-Type": "video/mp4"}), 422)["code"] == "empty_file"
    truncated = clip[: len(clip) // 3]
    r = client.post("/invocations", files={"video": ("v.mp4", truncated, "video/mp4")})
    assert r.status_code in (200, 422) and r.status_code != 500


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> bytes:
    from media_factory import make_speech_clip

    path, _ = make_speech_clip(tmp_path_factory.mktemp("speech") / "speech.mp4", width=160, height=128)
    return path.read_bytes()


def spoken_words(result: dict) -> str:
    return " ".join(s["text"]["text"].lower() for s in result["segments"] if s["text"])


def test_speech_is_transcribed_by_default_and_on_request(client, user_key, speech):
    r = client.post("/invocations", files={"video": ("s.mp4", speech, "video/mp4")})
    assert r.status_code == 200, r.text
    assert "happy" in spoken_words(r.json()) and "terrible" in spoken_words(r.json())
    assert r.json()["media"]["transcript"]["source"] == "asr"
    on = wait_for(client, user_key, submit(client, user_key, speech, options='{"transcribe": "on"}').json()["id"])
    assert on["status"] == "succeeded" and on["options"] == {"transcribe": "on"}, on
    assert_contract_v1(on["result"])
    assert on["result"]["media"]["transcript"]["source"] == "asr" and "hate" in spoken_words(on["result"])
    off = wait_for(client, user_key, submit(client, user_key, speech, options='{"transcribe": "off"}').json()["id"])
    assert off["result"]["media"]["transcript"] == {"source": "none", "model": None, "reason": "transcription is off"}
    assert spoken_words(off["result"]) == ""
    both = error_of(submit(client, user_key, speech, text="hi", options='{"transcribe": "on"}'), 422)
    assert both["code"] == "invalid_request" and "transcribe is 'on'" in both["message"]
    bad = error_of(submit(client, user_key, speech, options='{"transcribe": "yes"}'), 422)
    assert bad["code"] == "invalid_options"


def test_voice_calibration_is_an_option_and_said_in_the_result(client, user_key, speech):
    """`calibrate`: the service's model here has no calibrated voice regression, so "auto" says why
    it was not used and "on" is refused at submission (issue 18)."""
    auto = wait_for(client, user_key, submit(client, user_key, speech, options='{"transcribe": "off"}').json()["id"])
    calibration = auto["result"]["media"]["voice_calibration"]
    assert calibration["mode"] == "auto" and calibration["used"] is False and calibration["reason"]
    on = error_of(submit(client, user_key, speech, options='{"calibrate": "on"}'), 422)
    assert on["code"] == "invalid_request" and "calibrate is 'on' but" in on["message"]
    bad = error_of(submit(client, user_key, speech, options='{"calibrate": "speaker"}'), 422)
    assert bad["code"] == "invalid_options" and "calibrate must be one of auto, on, off" in bad["message"]
    crowd = error_of(submit(client, user_key, speech, options='{"max_faces": 50}'), 422)
    assert crowd["code"] == "invalid_options" and "max_faces must be a whole number from 1 to 20" in crowd["message"]
    r = client.post("/invocations", files={"video": ("s.mp4", speech, "video/mp4")})
    assert r.status_code == 200 and r.json()["media"]["voice_calibration"]["used"] is False


def test_predict_mvp_route(client, clip, tmp_path):
    r = client.post("/predict", files={"file": ("v.mp4", clip, "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert abs(sum(body["probs"]) - 100) < 0.1 and body["top1"] == {"label": body["labels"][0], "prob": body["probs"][0]}
    silent = clip_bytes(tmp_path, "silent.mp4", face=None, silent=True, modulate=False)
    assert error_of(client.post("/predict", files={"file": ("s.mp4", silent, "video/mp4")}), 422)["code"] == "no_signal"
    error_of(client.post("/predict", files={"file": ("doc.txt", b"hello", "text/plain")}), 415)
    error_of(client.post("/predict", json={"file": "x"}), 415)
    error_of(client.post("/predict", files={"nofile": ("v.mp4", clip, "video/mp4")}), 422)


def test_sagemaker_routes_can_require_a_key(make_client, clip):
    client = make_client(require_key=True)
    assert client.get("/ping").status_code == 200
    assert error_of(client.post("/invocations", content=clip, headers={"Content-Type": "video/mp4"}), 401)["code"] == "missing_key"
    error_of(client.post("/predict", files={"file": ("v.mp4", clip, "video/mp4")}), 401)
    key = new_key(client, signup(client))
    r = client.post("/invocations", content=clip, headers={"Content-Type": "video/mp4", "Authorization": f"Bearer {key}"})
    assert r.status_code == 200


def test_upload_over_the_limit_is_413(make_client, clip):
    client = make_client(max_upload_bytes=len(clip) // 2)
    error_of(client.post("/invocations", content=clip, headers={"Content-Type": "video/mp4"}), 413)
    key = new_key(client, signup(client))
    assert error_of(submit(client, key, clip), 413)["code"] == "payload_too_large"


# -- accounts, sessions, CSRF -------------------------------------------------------------------------------
def test_signup_login_me_logout(client):
    csrf = signup(client, "Bob@Example.com")
    me = client.get("/auth/me").json()
    assert me["user"]["email"] == "bob@example.com" and me["csrf_token"] == csrf
    cookie_header = [h for h in client.cookies.jar if h.name == "emofusion_session"][0]
    assert cookie_header.secure and cookie_header.has_nonstandard_attr("HttpOnly")
    assert error_of(client.post("/auth/logout"), 403)["code"] == "csrf_failed"
    assert client.post("/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert error_of(client.get("/auth/me"), 401)
    assert error_of(client.post("/auth/login", json={"email": "bob@example.com", "password": "wrong password"}), 401)
    r = client.post("/auth/login", data={"email": "bob@example.com", "password": STRONG_PASSWORD})
    assert r.status_code == 200 and client.get("/auth/me").status_code == 200


def test_session_cookie_is_secure_except_over_plain_http_to_localhost(client):
    local = TestClient(client.app, base_url="http://127.0.0.1:8080")
    signup(local, "local@example.com")
    assert not [c for c in local.cookies.jar if c.name == "emofusion_session"][0].secure
    remote = TestClient(client.app, base_url="http://emofusion.example.com")
    assert remote.post("/auth/signup", json={"email": "remote@example.com", "password": STRONG_PASSWORD}).status_code == 202
    r = remote.post("/auth/login", json={"email": "remote@example.com", "password": STRONG_PASSWORD})
    assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()


def test_signup_rejects_bad_input(client):
    signup(client, "eve@example.com")
    assert error_of(client.post("/auth/signup", json={"email": "not-an-email", "password": STRONG_PASSWORD}), 422)["code"] == "invalid_email"
    assert error_of(client.post("/auth/signup", json={"email": "x@example.com", "password": "short"}), 422)["code"] == "weak_password"
    assert error_of(client.post("/auth/signup", content=b"{not json", headers={"Content-Type": "application/json"}), 400)["code"] == "malformed_json"
    error_of(client.post("/auth/signup", json={"email": "x@example.com"}), 422)
    cross = client.post("/auth/login", data={"email": "eve@example.com", "password": STRONG_PASSWORD},
                        headers={"Origin": "https://evil.example"})
    assert error_of(cross, 403)["code"] == "csrf_failed"


def test_passwords_are_hashed_with_argon2(client, tmp_path):
    signup(client, "hash@example.com")
    db = Database(f"sqlite:///{tmp_path / 'home' / 'emofusion.db'}")
    from sqlalchemy import select

    from emofusion.serve.db import ApiKey, User

    with db.session() as s:
        user = s.scalar(select(User).where(User.email == "hash@example.com"))
        assert user.password_hash.startswith("$argon2") and STRONG_PASSWORD not in user.password_hash
        assert s.scalars(select(ApiKey)).all() == []


# -- API keys ------------------------------------------------------------------------------------------------------
def test_keys_are_shown_once_stored_hashed_and_revocable(client, tmp_path):
    csrf = signup(client)
    created = client.post("/v1/keys", json={"name": "ci"}, headers={"X-CSRF-Token": csrf}).json()
    key = created["key"]
    assert key.startswith("ef_") and created["prefix"] == key[:10]
    listed = client.get("/v1/keys").json()["items"]
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    db_bytes = (tmp_path / "home" / "emofusion.db").read_bytes()
    assert key.encode() not in db_bytes
    fresh = TestClient(client.app, base_url="https://testserver")  # no cookies: the key alone
    assert fresh.get("/v1/usage", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert fresh.get("/v1/usage", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/v1/keys").json()["items"][0]["last_used_at"] is not None
    assert client.delete(f"/v1/keys/{created['id']}", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert error_of(fresh.get("/v1/usage", headers={"X-API-Key": key}), 401)["code"] == "invalid_key"
    assert error_of(fresh.get("/v1/usage", headers={"X-API-Key": "ef_made_up"}), 401)["code"] == "invalid_key"
    assert error_of(fresh.get("/v1/usage"), 401)["code"] == "missing_key"
    assert error_of(client.delete("/v1/keys/nope", headers={"X-CSRF-Token": csrf}), 404)
    error_of(client.post("/v1/keys", json={"name": ""}, headers={"X-CSRF-Token": csrf}), 422)
    malformed = client.post("/v1/keys", content=b"{", headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert error_of(malformed, 400)["code"] == "malformed_json"


def test_a_users_keys_cannot_touch_another_users_keys(client):
    csrf_a = signup(client, "a@example.com")
    key_a = client.post("/v1/keys", json={"name": "a"}, headers={"X-CSRF-Token": csrf_a}).json()
    other = TestClient(client.app, base_url="https://testserver")
    csrf_b = signup(other, "b@example.com")
    assert other.get("/v1/keys").json()["items"] == []
    assert error_of(other.delete(f"/v1/keys/{key_a['id']}", headers={"X-CSRF-Token": csrf_b}), 404)


# -- analyses ----------------------------------------------------------------------------------------------------
def test_analysis_lifecycle(client, user_key, clip, tmp_path):
    r = submit(client, user_key, clip, filename="../../etc/My Clip.mp4", text="i am so happy today",
               options=json.dumps({"window": 1.5, "hop": 1.0}))
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.json()["status"] == "queued"
    done = wait_for(client, user_key, job_id)
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["error"] is None
    assert done["filename"] == "My Clip.mp4" and done["media_seconds"] == pytest.approx(3.0, abs=0.1)
    assert_contract_v1(done["result"])
    assert done["result"]["options"]["window"] == 1.5 and done["result"]["segments"][0]["text"] is not None
    png = client.get(f"/v1/analyses/{job_id}/timeline.png", headers={"X-API-Key": user_key})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    listed = client.get("/v1/analyses", headers={"X-API-Key": user_key}).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == job_id and "result" not in listed["items"][0]
    uploads = tmp_path / "home" / "uploads"
    assert not any(p.is_file() for p in uploads.rglob("*")), "uploads are deleted once analysed"
    assert not (tmp_path / "etc").exists()
    assert client.delete(f"/v1/analyses/{job_id}", headers={"X-API-Key": user_key}).status_code == 204
    error_of(client.get(f"/v1/analyses/{job_id}", headers={"X-API-Key": user_key}), 404)


def test_analysis_pagination_and_ownership(client, user_key, clip):
    ids = [submit(client, user_key, clip).json()["id"] for _ in range(3)]
    for job_id in ids:
        wait_for(client, user_key, job_id)
    page = client.get("/v1/analyses?limit=2&offset=0", headers={"X-API-Key": user_key}).json()
    rest = client.get("/v1/analyses?limit=2&offset=2", headers={"X-API-Key": user_key}).json()
    assert page["total"] == 3 and len(page["items"]) == 2 and len(rest["items"]) == 1
    assert {i["id"] for i in page["items"] + rest["items"]} == set(ids)
    error_of(client.get("/v1/analyses?limit=0", headers={"X-API-Key": user_key}), 422)
    error_of(client.get("/v1/analyses?limit=abc", headers={"X-API-Key": user_key}), 422)
    other = TestClient(client.app, base_url="https://testserver")
    other_key = new_key(other, signup(other, "mallory@example.com"))
    for path in (f"/v1/analyses/{ids[0]}", f"/v1/analyses/{ids[0]}/timeline.png"):
        assert error_of(other.get(path, headers={"X-API-Key": other_key}), 404)["code"] == "not_found"
    error_of(other.delete(f"/v1/analyses/{ids[0]}", headers={"X-API-Key": other_key}), 404)
    assert other.get("/v1/analyses", headers={"X-API-Key": other_key}).json()["total"] == 0
    error_of(client.get("/v1/analyses/unknown", headers={"X-API-Key": user_key}), 404)


def test_analysis_bad_inputs(client, user_key, clip):
    h = {"X-API-Key": user_key}
    error_of(client.post("/v1/analyses", json={"file": "x"}, headers=h), 415)
    assert "file" in error_of(client.post("/v1/analyses", files={"audio": ("a.wav", clip, "audio/wav")}, headers=h), 422)["message"]
    assert error_of(submit(client, user_key, b""), 422)["code"] == "empty_file"
    assert error_of(submit(client, user_key, b"not media at all" * 50), 422)["code"] == "invalid_media"
    assert error_of(submit(client, user_key, b"hello", filename="a.docx", content_type="application/msword"), 415)
    assert error_of(submit(client, user_key, clip, options="{bad"), 422)["code"] == "invalid_options"
    assert error_of(submit(client, user_key, clip, options='{"window": -1}'), 422)["code"] == "invalid_options"
    assert error_of(submit(client, user_key, clip, options='{"modalities": ["smell"]}'), 422)["code"] == "invalid_options"
    assert error_of(submit(client, user_key, clip, callback_url="file:///etc/passwd"), 422)["code"] == "invalid_callback"
    assert error_of(submit(client, user_key, clip, transcript=("t.srt", b"\xff\xfe\x00bad", "text/plain")), 422)["code"] == "invalid_transcript"
    assert client.get("/v1/usage", headers=h).json()["requests_today"] == 0, "rejected requests are not charged"


def test_timeline_before_success_is_409(make_client, clip):
    client = make_client(start_jobs=False)
    key = new_key(client, signup(client))
    job_id = submit(client, key, clip).json()["id"]
    assert error_of(client.get(f"/v1/analyses/{job_id}/timeline.png", headers={"X-API-Key": key}), 409)["code"] == "not_ready"
    assert client.get(f"/v1/analyses/{job_id}", headers={"X-API-Key": key}).json()["status"] == "queued"


def test_retained_uploads_stay(make_client, clip, tmp_path):
    client = make_client(retain_uploads=True)
    key = new_key(client, signup(client))
    job_id = submit(client, key, clip).json()["id"]
    wait_for(client, key, job_id)
    assert (tmp_path / "home" / "uploads" / "uploads" / job_id / "media").read_bytes() == clip


def test_callback_url_must_be_public_by_default(client, user_key, clip):
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[::1]/hook", "http://169.254.169.254/x"):
        assert error_of(submit(client, user_key, clip, callback_url=url), 422)["code"] == "invalid_callback"


def test_callback_url_receives_the_outcome(make_client, clip):
    client = make_client(callback_private=True)
    user_key = new_key(client, signup(client))
    received: list[dict] = []
    got = threading.Event()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()
            got.set()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        job_id = submit(client, user_key, clip, callback_url=url).json()["id"]
        assert got.wait(60)
    finally:
        server.shutdown()
    assert received[0]["id"] == job_id and received[0]["status"] == "succeeded"
    assert_contract_v1(received[0]["result"])


# -- quotas and rate limits ---------------------------------------------------------------------------------------
def test_daily_request_quota_gives_429_with_retry_after(make_client, clip):
    client = make_client(requests_per_day=2)
    key = new_key(client, signup(client))
    for _ in range(2):
        assert submit(client, key, clip).status_code == 202
    r = submit(client, key, clip)
    err = error_of(r, 429)
    assert err["code"] == "daily_request_quota" and 0 < int(r.headers["Retry-After"]) <= 86400
    usage = client.get("/v1/usage", headers={"X-API-Key": key}).json()
    assert usage["requests_today"] == 2 and usage["requests_per_day"] == 2


def test_monthly_media_quota(make_client, clip):
    client = make_client(media_minutes_per_month=0.08)  # 4.8 s: one 3 s clip, not two
    key = new_key(client, signup(client))
    assert submit(client, key, clip).status_code == 202
    r = submit(client, key, clip)
    assert error_of(r, 429)["code"] == "monthly_media_quota" and int(r.headers["Retry-After"]) > 0
    usage = client.get("/v1/usage", headers={"X-API-Key": key}).json()
    assert usage["requests_today"] == 1 and usage["media_minutes_month"] == pytest.approx(0.05, abs=0.002)


def test_failed_analysis_refunds_its_quota(make_client, clip, tmp_path):
    client = make_client(start_jobs=False, requests_per_day=1)
    key = new_key(client, signup(client))
    job_id = submit(client, key, clip).json()["id"]
    assert client.get("/v1/usage", headers={"X-API-Key": key}).json()["requests_today"] == 1
    services = client.app.state.services
    (tmp_path / "home" / "uploads" / "uploads" / job_id / "media").write_bytes(b"corrupted after upload")
    assert services.jobs._claim(job_id)
    services.jobs.run(job_id)
    failed = client.get(f"/v1/analyses/{job_id}", headers={"X-API-Key": key}).json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_media" and failed["result"] is None
    usage = client.get("/v1/usage", headers={"X-API-Key": key}).json()
    assert usage["requests_today"] == 0 and usage["media_minutes_month"] == 0
    assert submit(client, key, clip).status_code == 202, "the refunded request can be made again"


def test_sagemaker_and_mvp_routes_count_against_the_quota_when_a_key_is_required(make_client, clip, monkeypatch):
    client = make_client(require_key=True, requests_per_day=2)
    key = new_key(client, signup(client))
    auth_header = {"Authorization": f"Bearer {key}"}
    r = client.post("/invocations", content=clip, headers={"Content-Type": "video/mp4", **auth_header})
    assert r.status_code == 200
    usage = client.get("/v1/usage", headers=auth_header).json()
    assert usage["requests_today"] == 1 and usage["media_minutes_month"] == pytest.approx(0.05, abs=0.002)
    # an analysis that fails after the upload was accepted gives its charge back
    services = client.app.state.services
    with monkeypatch.context() as m:
        def broken(*args, **kwargs):
            raise ApiError(422, "invalid_media", "the media stream ends early")
        m.setattr(services.engine, "analyze", broken)
        assert error_of(client.post("/predict", files={"file": ("v.mp4", clip, "video/mp4")}, headers=auth_header),
                        422)["code"] == "invalid_media"
    assert client.get("/v1/usage", headers=auth_header).json()["requests_today"] == 1
    assert client.post("/predict", files={"file": ("v.mp4", clip, "video/mp4")}, headers=auth_header).status_code == 200
    r = client.post("/invocations", content=clip, headers={"Content-Type": "video/mp4", **auth_header})
    assert error_of(r, 429)["code"] == "daily_request_quota" and int(r.headers["Retry-After"]) > 0


def test_per_key_rate_limit(make_client):
    client = make_client(key_requests_per_minute=3)
    key = new_key(client, signup(client))
    fresh = TestClient(client.app, base_url="https://testserver")
    codes = [fresh.get("/v1/usage", headers={"X-API-Key": key}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = fresh.get("/v1/usage", headers={"X-API-Key": key})
    assert error_of(r, 429)["code"] == "rate_limited" and 0 < int(r.headers["Retry-After"]) <= 60


def test_concurrent_requests_cannot_exceed_the_quota(make_client, clip):
    client = make_client(start_jobs=False, requests_per_day=4)
    key = new_key(client, signup(client))
    codes: list[int] = []

    def one():
        codes.append(submit(client, key, clip).status_code)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [202] * 4 + [429] * 6
    assert client.get("/v1/usage", headers={"X-API-Key": key}).json()["requests_today"] == 4


# -- jobs: recovery after a crash -------------------------------------------------------------------------------------
def test_interrupted_jobs_are_requeued_or_failed_at_start(make_client, clip, tmp_path):
    home = tmp_path / "home"
    first = make_client(start_jobs=False, home=home)
    key = new_key(first, signup(first))
    retry_id = submit(first, key, clip).json()["id"]
    give_up_id = submit(first, key, clip).json()["id"]
    db = first.app.state.services.db
    long_ago = utcnow() - timedelta(minutes=5)
    with db.session() as s:  # as a crashed process would have left them
        for job_id, attempts in ((retry_id, 1), (give_up_id, 2)):
            job = s.get(AnalysisJob, job_id)
            job.status, job.attempts, job.heartbeat_at, job.worker = RUNNING, attempts, long_ago, "dead"
    assert first.get("/v1/usage", headers={"X-API-Key": key}).json()["requests_today"] == 2
    assert (home / "uploads" / "uploads" / give_up_id / "media").is_file()
    first.__exit__(None, None, None)
    second = make_client(home=home)  # a restart
    retried = wait_for(second, key, retry_id)
    assert retried["status"] == "succeeded"
    gave_up = second.get(f"/v1/analyses/{give_up_id}", headers={"X-API-Key": key}).json()
    assert gave_up["status"] == "failed" and gave_up["error"]["code"] == "interrupted"
    assert not (home / "uploads" / "uploads" / give_up_id).exists(), "a job given up keeps no upload"
    assert second.get("/v1/usage", headers={"X-API-Key": key}).json()["requests_today"] == 1


def test_queued_jobs_survive_a_restart(make_client, clip, tmp_path):
    home = tmp_path / "home"
    first = make_client(start_jobs=False, home=home)
    key = new_key(first, signup(first))
    job_id = submit(first, key, clip).json()["id"]
    first.__exit__(None, None, None)
    second = make_client(home=home)
    assert wait_for(second, key, job_id)["status"] == "succeeded"


def test_stop_waits_for_the_running_analysis(make_client, clip):
    client = make_client(start_jobs=False)
    key = new_key(client, signup(client))
    job_id = submit(client, key, clip).json()["id"]
    jobs = client.app.state.services.jobs
    jobs.start()
    deadline = time.monotonic() + 30
    while jobs.busy == 0 and client.get(f"/v1/analyses/{job_id}", headers={"X-API-Key": key}).json()["status"] == QUEUED:
        assert time.monotonic() < deadline
    assert jobs.stop(timeout=60)
    assert client.get(f"/v1/analyses/{job_id}", headers={"X-API-Key": key}).json()["status"] == "succeeded"


# -- metrics and logs ---------------------------------------------------------------------------------------------------
def test_metrics_exposes_requests_latency_queue_and_statuses(client, user_key, clip):
    wait_for(client, user_key, submit(client, user_key, clip).json()["id"])
    text = client.get("/metrics").text
    assert 'emofusion_http_requests_total{method="POST",route="/v1/analyses",status="202"} 1.0' in text
    assert 'emofusion_http_request_seconds_bucket{le="0.5",route="/v1/analyses"}' in text
    assert 'emofusion_analyses{status="succeeded"} 1.0' in text and "emofusion_queue_depth 0.0" in text


def test_logs_carry_no_keys_media_or_text(client, clip, caplog):
    caplog.set_level(logging.DEBUG)
    csrf = signup(client, "quiet@example.com")
    key = new_key(client, csrf)
    secret_text = "my secret sentence nobody may read"
    job_id = submit(client, key, clip, filename="private-name.mp4", text=secret_text).json()["id"]
    wait_for(client, key, job_id)
    submit(client, key, b"broken" * 100, filename="private-broken.mp4")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (key, secret_text, "private-name", "private-broken", STRONG_PASSWORD, csrf):
        assert secret not in logged


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/ping", "/invocations", "/predict", "/health", "/v1/analyses", "/v1/analyses/{job_id}",
                 "/v1/analyses/{job_id}/timeline.png", "/v1/usage", "/v1/keys"):
        assert path in paths



def test_docs_pages_load_their_assets_from_this_service(client):
    """/docs and /redoc work on a host without internet: no CDN, no web fonts (issue 16, 3)."""
    import re

    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")),
                         ("/redoc", ("redoc.standalone.js", "favicon.png"))):
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", r.text)
        urls = [u for pair in urls for u in pair if u]
        assert urls and not [u for u in urls if "://" in u or u.startswith("//")], urls
        assert "cdn.jsdelivr.net" not in r.text and "fonts.googleapis.com" not in r.text
        policy = r.headers["Content-Security-Policy"]
        assert "https:" not in policy and "frame-ancestors 'none'" in policy
        for name in assets:
            assert f"/docs/assets/{name}" in r.text
            asset = client.get(f"/docs/assets/{name}")
            assert asset.status_code == 200 and len(asset.content) > 1000, name
    assert client.get("/docs/assets/swagger-ui-bundle.js").headers["content-type"].split(";")[0] in (
        "text/javascript", "application/javascript")
    assert client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert "/docs/assets/{path}" not in client.get("/openapi.json").json()["paths"]


def test_run_timestamps_keep_milliseconds():
    """A run's start and end to the millisecond, so that the page's "took" is real (issue 16, 7):
    with whole seconds a 0.4 s run showed "took 0.0 s"."""
    from datetime import datetime

    from emofusion.serve.app import job_dict
    from emofusion.serve.db import SUCCEEDED, AnalysisJob

    job = AnalysisJob(id="j", user_id="u", status=SUCCEEDED, filename="a.mp4", media_key="k", progress=1.0,
                      options={}, media_seconds=4.7, created_at=datetime(2026, 12, 6, 12, 16, 40, 123456),
                      started_at=datetime(2026, 12, 6, 12, 16, 40, 900000),
                      finished_at=datetime(2026, 12, 6, 12, 16, 41, 312999))
    d = job_dict(job, with_result=False)
    assert d["created_at"] == "2026-12-06T12:16:40Z"  # unchanged
    assert d["started_at"] == "2026-12-06T12:16:40.900Z" and d["finished_at"] == "2026-12-06T12:16:41.312Z"
    took = datetime.fromisoformat(d["finished_at"][:-1]) - datetime.fromisoformat(d["started_at"][:-1])
    assert took.total_seconds() == pytest.approx(0.412)
