"""The service under hostile and careless clients: bounded bodies, bounded analyses, throttled
log-ins, keys that cannot outlive their revocation, no private data in logs, no 500 for bad input.

Defects that live in the HTTP layer (bodies streamed in chunks, memory under concurrent
log-ins) are checked against a real `emofusion serve` process; the rest through TestClient.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

from media_factory import make_long_claim_mp4
from pg_fixtures import fresh_postgres_url, postgres_url  # noqa: F401
from serve_support import (STRONG_PASSWORD, client_factory, clip_bytes, make_settings, new_key, signup, submit,
                           wait_ready)
from support import free_port

from concurrent.futures import ThreadPoolExecutor

from emofusion import errors, options as limits
from emofusion.serve.login_guard import LoginThrottle
from emofusion.serve.quotas import QuotaExceeded
from emofusion.serve.app import create_app
from emofusion.errors import InvalidOptions
from emofusion.options import given_options
from emofusion.serve.engine import Engine

EMOFUSION = str(Path(sys.executable).with_name("emofusion"))
MB = 1024 * 1024


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return Engine(tiny_model_dir)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return clip_bytes(tmp_path_factory.mktemp("clips"), duration=2.0)


@pytest.fixture
def make_client(tmp_path, tiny_model_dir, engine):
    """make_client(database_url=None, start_jobs=False, **settings) -> a started TestClient."""
    make, close = client_factory(tmp_path / "home", tiny_model_dir, engine, start_jobs=False)
    yield make
    close()


@pytest.fixture
def client(make_client):
    return make_client()


def stored_files(tmp_path: Path) -> list[Path]:
    """The files in the test service's upload storage."""
    uploads = tmp_path / "home" / "uploads"
    return [p for p in uploads.rglob("*") if p.is_file()] if uploads.exists() else []


def error_code(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()["error"]["code"]


class Server:
    """`emofusion serve` in a process, with its temporary files under its own folder."""

    def __init__(self, home: Path, model_dir: Path, **env: str):
        self.home, self.port = home, free_port()
        self.tmp = home / "tmp-system"
        self.tmp.mkdir(parents=True)
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {**os.environ, "EMOFUSION_HOME": str(home / "home"), "EMOFUSION_MODEL": str(model_dir),
                   "EMOFUSION_COOKIE_SECURE": "0", "TMPDIR": str(self.tmp), **env}
        self.proc = subprocess.Popen([EMOFUSION, "serve", "--port", str(self.port)], env=environ,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_ready(self.proc, self.url)
        self.peak_rss_mb = self.rss_mb()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def disk_bytes(self) -> int:
        """Bytes in every file the server may write uploads to (its home and its temp folder)."""
        return sum(p.stat().st_size for p in self.home.rglob("*") if p.is_file() and not p.name.startswith("emofusion.db"))

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.proc.stderr.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    srv = Server(tmp_path_factory.mktemp("server"), tiny_model_dir, EMOFUSION_MAX_UPLOAD_MB="3",
                 EMOFUSION_LOGIN_FAILURES_PER_ADDRESS="1000", EMOFUSION_LOGIN_FAILURES_PER_ACCOUNT="1000")
    yield srv
    srv.stop()


def send_chunked(server: Server, path: str, total: int, *, prefix: bytes = b"", headers: dict[str, str]) -> tuple[int, bytes]:
    """POST a chunked body of `total` zero bytes (after `prefix`) over a raw socket, as fast as
    the server reads it. Returns (bytes the server accepted before it answered or closed, the
    answer's first bytes)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = bytes(MB)
    sent = 0
    try:
        if prefix:
            sock.sendall(b"%x\r\n" % len(prefix) + prefix + b"\r\n")
        while sent < total:
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += len(chunk)
            server.peak_rss_mb = max(server.peak_rss_mb, server.rss_mb())
        sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = b""
    try:
        answer = sock.recv(65536)
    except (ConnectionResetError, socket.timeout):
        pass
    sock.close()
    return sent, answer


# -- 1. bodies are bounded while they stream ---------------------------------------------------------
@pytest.mark.parametrize("path, content_type, prefix", [
    ("/invocations", "video/mp4", b""),
    ("/invocations", "multipart/form-data; boundary=B0UND", b'--B0UND\r\nContent-Disposition: form-data; name="video"; '
     b'filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n'),
    ("/predict", "multipart/form-data; boundary=B0UND", b'--B0UND\r\nContent-Disposition: form-data; name="file"; '
     b'filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n'),
])
@pytest.mark.slow  # the real server process (module fixture `server`)
def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(server, path, content_type, prefix):
    rss_before, disk_before = server.rss_mb(), server.disk_bytes()
    sent, answer = send_chunked(server, path, 400 * MB, prefix=prefix, headers={"Content-Type": content_type})
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"payload_too_large"' in answer
    # the server stopped reading near the 3 MB limit: socket buffers hold a few MB more at most
    assert sent < 64 * MB, f"the server read {sent / MB:.0f} MB before refusing"
    assert server.peak_rss_mb - rss_before < 100, f"RSS grew by {server.peak_rss_mb - rss_before:.0f} MB"
    assert server.disk_bytes() - disk_before < 5 * MB


@pytest.mark.slow  # the real server process (module fixture `server`)
def test_v1_uploads_need_a_key_before_a_byte_is_read(server):
    sent, answer = send_chunked(server, "/v1/analyses", 400 * MB, headers={"Content-Type": "multipart/form-data; boundary=B"})
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert sent < 64 * MB


@pytest.mark.slow  # the real server process (module fixture `server`)
def test_small_routes_take_small_bodies(server):
    sent, answer = send_chunked(server, "/auth/login", 100 * MB, headers={"Content-Type": "application/json"})
    assert answer.startswith(b"HTTP/1.1 413") and sent < 64 * MB
    r = httpx.post(server.url + "/auth/login", content=b"{" * (200 * 1024), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


# -- 4. log-ins: throttled, and hashing bounded in memory ---------------------------------------------
@pytest.mark.slow  # the real server process (module fixture `server`)
def test_concurrent_wrong_passwords_do_not_grow_memory(server):
    httpx.post(server.url + "/auth/signup", json={"email": "target@example.com", "password": STRONG_PASSWORD})
    before = server.rss_mb()
    statuses: list[int] = []
    done = threading.Event()

    def watch():
        while not done.wait(0.05):
            server.peak_rss_mb = max(server.peak_rss_mb, server.rss_mb())

    def guess(k: int):
        r = httpx.post(server.url + "/auth/login", json={"email": "target@example.com", "password": f"guess number {k}"},
                       timeout=120)
        statuses.append(r.status_code)

    server.peak_rss_mb = before
    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=guess, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    assert set(statuses) <= {401, 503} and 401 in statuses
    # two argon2 hashes at once (64 MiB each) at most; before the bound 40 guesses took +2.2 GB
    assert server.peak_rss_mb - before < 300, f"RSS grew by {server.peak_rss_mb - before:.0f} MB"


def test_failed_logins_are_limited_per_account_and_per_address(make_client):
    client = make_client(login_failures_per_account=3, login_failures_per_address=5)
    signup(client, "victim@example.com")
    for _ in range(3):
        assert error_code(client.post("/auth/login", json={"email": "victim@example.com", "password": "wrong guess 1"}), 401)
    r = client.post("/auth/login", json={"email": "victim@example.com", "password": STRONG_PASSWORD})
    assert error_code(r, 429) == "too_many_attempts" and 0 < int(r.headers["Retry-After"]) <= 900
    # other accounts from the same address, until the address has used its 5 attempts: the
    # sign-up (sign-ups count for the address), the 3 wrong passwords, and one more
    assert error_code(client.post("/auth/login", json={"email": "other@example.com", "password": "wrong guess"}), 401)
    assert error_code(client.post("/auth/login", json={"email": "third@example.com", "password": "wrong"}), 429) == "too_many_attempts"


def test_concurrent_guesses_cannot_pass_the_throttle_together(make_client):
    client = make_client(login_failures_per_account=3, login_failures_per_address=1000)
    signup(client, "burst@example.com")

    def guess(k: int) -> int:
        return client.post("/auth/login", json={"email": "burst@example.com", "password": f"guess {k} wrong"}).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(guess, range(12)))
    assert statuses.count(401) == 3 and statuses.count(429) == 9, statuses


def test_the_throttle_counts_ipv6_per_64_and_keeps_keys_small():
    throttle = LoginThrottle(per_account=100, per_address=2)
    throttle.attempt("a@example.com", "2001:db8::1")
    throttle.attempt("b@example.com", "2001:db8::ffff:2")
    with pytest.raises(QuotaExceeded):
        throttle.attempt("c@example.com", "2001:db8::abcd")  # same /64
    throttle.attempt("d@example.com", "2001:db8:0:1::1")  # the next /64
    throttle.attempt("x" * 60_000, "192.0.2.1")
    assert max(len(key) for key in throttle._attempts) < 64


def test_a_success_clears_the_accounts_failures(make_client):
    client = make_client(login_failures_per_account=3)
    signup(client, "forgetful@example.com")
    for _ in range(2):
        client.post("/auth/login", json={"email": "forgetful@example.com", "password": "not it at all"})
    assert client.post("/auth/login", json={"email": "forgetful@example.com", "password": STRONG_PASSWORD}).status_code == 200
    for _ in range(2):
        client.post("/auth/login", json={"email": "forgetful@example.com", "password": "not it at all"})
    assert client.post("/auth/login", json={"email": "forgetful@example.com", "password": STRONG_PASSWORD}).status_code == 200


# -- 2. bounded windows, the same answer everywhere ----------------------------------------------------
TINY_WINDOWS = {"window": 0.001, "hop": 0.000001}


def test_tiny_windows_are_refused_by_the_service(client, clip):
    key = new_key(client, signup(client))
    r = submit(client, key, clip, options=json.dumps(TINY_WINDOWS))
    assert error_code(r, 422) == "invalid_options" and "window" in r.json()["error"]["message"]
    for options in ({"window": 1e309}, {"hop": 61}, {"frames_per_second": 1000}, {"window": 10 ** 400}):
        assert error_code(submit(client, key, clip, options=json.dumps(options)), 422) == "invalid_options"
    assert client.get("/v1/usage", headers={"X-API-Key": key}).json()["requests_today"] == 0


def test_tiny_windows_are_refused_by_the_cli_batch_and_python_api(tmp_path, tiny_model_dir, clip):
    from typer.testing import CliRunner

    from emofusion.batch import BatchError, run_batch
    from emofusion.cli import app
    from emofusion.analysis import Analyzer

    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    r = CliRunner().invoke(app, ["analyze", str(path), "--window", "0.001", "--hop", "0.000001", "--model", str(tiny_model_dir)])
    assert r.exit_code == 2 and "window must be >= 0.5" in r.output
    r = CliRunner().invoke(app, ["batch", str(path), "--out", str(tmp_path / "out.jsonl"), "--hop", "0.000001",
                                 "--model", str(tiny_model_dir)])
    assert r.exit_code == 2 and r.output.startswith("error: --hop: hop must be >= 0.1")
    with pytest.raises(errors.InvalidOptions, match="window"):
        Analyzer(str(tiny_model_dir), **TINY_WINDOWS)
    with pytest.raises(BatchError, match="window must be >= 0.5"):
        run_batch([str(path)], tmp_path / "b.jsonl", model=str(tiny_model_dir), analyzer_options=TINY_WINDOWS)


def test_too_many_windows_is_one_code_everywhere(monkeypatch, make_client, tmp_path, tiny_model_dir, clip):
    """Long input over the window cap: 422 `too_many_windows` before anything is stored or charged
    in the service, the same code in a batch row, TooManyWindows from the Python API."""
    from emofusion.batch import analyze_task
    from emofusion.analysis import Analyzer

    monkeypatch.setattr(limits, "MAX_WINDOWS", 3)  # a 2 s clip at hop 0.1 makes 16 windows
    client = make_client()
    key = new_key(client, signup(client))
    r = submit(client, key, clip, options=json.dumps({"window": 0.5, "hop": 0.1}))
    assert error_code(r, 422) == "too_many_windows"
    assert client.get("/v1/usage", headers={"X-API-Key": key}).json()["requests_today"] == 0
    assert not stored_files(tmp_path)
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    analyzer = Analyzer(str(tiny_model_dir), window=0.5, hop=0.1)
    ok, line = analyze_task(analyzer, {"input": "clip.mp4", "path": str(path)})
    assert not ok and json.loads(line)["error"]["code"] == "too_many_windows"
    with pytest.raises(errors.TooManyWindows):
        analyzer.analyze(str(path))
    r = client.post("/invocations", content=clip, headers={"Content-Type": "video/mp4"})
    assert r.status_code == 200, "the default options stay under the cap"


# -- 3. headers that claim ten hours -------------------------------------------------------------------
def test_a_file_claiming_ten_hours_is_charged_and_analysed_for_what_it_holds(make_client, tmp_path):
    lying = make_long_claim_mp4(tmp_path / "lying.mp4", real_seconds=2.0, claimed_seconds=36000.0,
                                width=160, height=128).read_bytes()
    client = make_client(start_jobs=True)
    key = new_key(client, signup(client))
    r = submit(client, key, lying)
    assert r.status_code == 202, r.text
    usage = client.get("/v1/usage", headers={"X-API-Key": key}).json()
    assert usage["media_minutes_month"] < 0.1, usage
    r = client.post("/invocations", content=lying, headers={"Content-Type": "video/mp4"})
    assert r.status_code == 200, r.text
    assert r.json()["media"]["duration"] < 3 and len(r.json()["segments"]) <= 3


@pytest.mark.slow  # a second real server process
def test_predict_with_a_required_key_refuses_before_reading_the_body(tmp_path_factory, tiny_model_dir):
    keyed = Server(tmp_path_factory.mktemp("keyed"), tiny_model_dir, EMOFUSION_MAX_UPLOAD_MB="3",
                   EMOFUSION_REQUIRE_KEY="1")
    try:
        for path in ("/predict", "/invocations"):
            sent, answer = send_chunked(keyed, path, 400 * MB, prefix=b'--B\r\nContent-Disposition: form-data; name="file"; '
                                        b'filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n',
                                        headers={"Content-Type": "multipart/form-data; boundary=B"})
            assert answer.startswith(b"HTTP/1.1 401"), (path, answer[:200])
            assert sent < 16 * MB, (path, sent)
        assert keyed.disk_bytes() < MB
    finally:
        keyed.stop()


def test_an_oversized_transcript_is_413(client, clip):
    key = new_key(client, signup(client))
    big = b"word " * (6 * MB // 5)
    r = submit(client, key, clip, transcript=("t.txt", big, "text/plain"))
    assert error_code(r, 413) == "payload_too_large"
    r = client.post("/invocations", files={"video": ("v.mp4", clip, "video/mp4"), "transcript": ("t.txt", big, "text/plain")})
    assert error_code(r, 413) == "payload_too_large"


def test_the_analyzer_cache_is_bounded(engine):
    from emofusion.serve.engine import ANALYZERS_PER_THREAD

    for k in range(10):
        engine.analyzer({"window": 1.0 + k / 100})
    assert len(engine._local.analyzers) == ANALYZERS_PER_THREAD


# -- 6. keys are managed from a session only ---------------------------------------------------------
def test_an_api_key_cannot_mint_or_revoke_keys(client):
    csrf = signup(client)
    key = new_key(client, csrf, "leaked")
    kid = client.get("/v1/keys").json()["items"][0]["id"]
    bearer = TestClient(client.app, base_url="https://testserver")
    h = {"Authorization": f"Bearer {key}"}
    assert error_code(bearer.post("/v1/keys", json={"name": "backdoor"}, headers=h), 403) == "session_required"
    assert error_code(bearer.delete(f"/v1/keys/{kid}", headers=h), 403) == "session_required"
    assert error_code(bearer.get("/v1/keys", headers=h), 403) == "session_required"
    assert client.delete(f"/v1/keys/{kid}", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert error_code(bearer.get("/v1/usage", headers=h), 401) == "invalid_key"


# -- 7. a database error charges nothing, keeps nothing and logs nothing private -------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("fresh_postgres_url")


def test_non_finite_options_are_422_before_anything_is_stored(make_client, database_url, clip, tmp_path):
    client = make_client(database_url)
    key = new_key(client, signup(client))
    for raw in ('{"hop": 1e999}', '{"window": -1e999}', '{"window": NaN}', '{"hop": Infinity}'):
        assert error_code(submit(client, key, clip, options=raw), 422) == "invalid_options"
    assert client.get("/v1/usage", headers={"X-API-Key": key}).json()["requests_today"] == 0
    assert not stored_files(tmp_path)


def _refuse_inserts(client: TestClient) -> None:
    """A real database error on every new analysis row: a trigger that aborts the insert."""
    from sqlalchemy import text

    db = client.app.state.services.db
    with db.engine.begin() as conn:
        if db.dialect == "sqlite":
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON analyses BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        else:
            conn.execute(text("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ "
                              "LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON analyses FOR EACH ROW EXECUTE FUNCTION refuse()"))


def test_a_database_error_refunds_deletes_the_upload_and_logs_no_parameters(make_client, database_url, clip, tmp_path,
                                                                           caplog):
    client = make_client(database_url, callback_private=True)
    key = new_key(client, signup(client))
    _refuse_inserts(client)
    caplog.set_level(logging.DEBUG)
    secret_text, token = "the words nobody may read", "tok3n-in-the-callback"
    answering = TestClient(client.app, base_url="https://testserver", raise_server_exceptions=False)
    r = submit(answering, key, clip, filename="private-name.mp4", text=secret_text,
               callback_url=f"http://127.0.0.1:9/hook?token={token}")
    assert error_code(r, 500) == "internal_error"
    assert client.get("/v1/usage", headers={"X-API-Key": key}).json()["requests_today"] == 0
    assert not stored_files(tmp_path)
    logged = "\n".join(r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
                       for r in caplog.records)
    assert "refused" in logged, "the error itself is logged"
    for private in (secret_text, token, "private-name"):
        assert private not in logged


def test_text_with_a_nul_is_a_clear_error_on_every_database(make_client, database_url, clip):
    client = make_client(database_url)
    key = new_key(client, signup(client))
    assert error_code(submit(client, key, clip, text="hello\x00world"), 422) == "invalid_request"


# -- 8. 500s where a clear error belongs -------------------------------------------------------------------
def test_deeply_nested_options_and_huge_offsets_are_422(client, clip):
    key = new_key(client, signup(client))
    assert error_code(submit(client, key, clip, options="[" * 2000 + "]" * 2000), 422) == "invalid_options"
    assert error_code(submit(client, key, clip, options='{"a":' * 2000 + "1" + "}" * 2000), 422) == "invalid_options"
    h = {"X-API-Key": key}
    assert error_code(client.get("/v1/analyses?offset=" + "9" * 30, headers=h), 422) == "invalid_request"
    assert error_code(client.get("/v1/analyses?limit=" + "9" * 30, headers=h), 422) == "invalid_request"


def test_unwritable_storage_is_503_on_every_upload_route(make_client, clip, tmp_path):
    client = make_client()
    key = new_key(client, signup(client))
    home = tmp_path / "home"
    # storage gone after start (root ignores read-only modes, so a file takes the folders' place)
    for folder in (home / "tmp", home / "uploads"):
        if folder.exists():
            os.rename(folder, folder.with_name(folder.name + ".gone"))
        folder.write_text("not a folder")
    r = submit(client, key, clip)
    assert error_code(r, 503) == "storage_unavailable" and "Retry-After" in r.headers
    assert str(home) not in r.text, "the message names no server path"
    assert error_code(client.post("/invocations", content=clip, headers={"Content-Type": "video/mp4"}), 503) == "storage_unavailable"
    assert error_code(client.post("/predict", files={"file": ("v.mp4", clip, "video/mp4")}), 503) == "storage_unavailable"
    assert client.get("/v1/usage", headers={"X-API-Key": key}).json()["requests_today"] == 0


# -- 10. the smaller ones ---------------------------------------------------------------------------
def test_signup_answers_the_same_for_a_taken_address(client):
    first = client.post("/auth/signup", json={"email": "someone@example.com", "password": STRONG_PASSWORD})
    again = client.post("/auth/signup", json={"email": "someone@example.com", "password": "another strong one"})
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    assert "set-cookie" not in first.headers and "set-cookie" not in again.headers
    assert client.post("/auth/login", json={"email": "someone@example.com", "password": STRONG_PASSWORD}).status_code == 200


@pytest.mark.parametrize("password", ["password", "        ", " " * 20, "PASSWORD123", "12345678", "aaaaaaaaaaaa",
                                      "weak@example.com", "short"])
def test_weak_passwords_are_refused(client, password):
    r = client.post("/auth/signup", json={"email": "weak@example.com", "password": password})
    assert error_code(r, 422) == "weak_password"


def test_null_and_foreign_origins_are_refused(client):
    for origin in ("null", "https://evil.example", "file://"):
        for path in ("/auth/signup", "/auth/login"):
            r = client.post(path, json={"email": "o@example.com", "password": STRONG_PASSWORD}, headers={"Origin": origin})
            assert error_code(r, 403) == "csrf_failed"
    r = client.post("/auth/signup", json={"email": "o@example.com", "password": STRONG_PASSWORD},
                    headers={"Origin": "https://testserver"})
    assert r.status_code == 202


def test_pages_and_answers_carry_security_headers(client):
    page = client.get("/")
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy and "unsafe-inline" not in policy
    for r in (page, client.get("/health"), client.get("/docs")):
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" in r.headers


def test_the_sqlite_file_is_private(client, tmp_path):
    signup(client)  # some writes, so the write-ahead log exists too
    assert (tmp_path / "home" / "emofusion.db").exists()
    for name in ("emofusion.db", "emofusion.db-wal", "emofusion.db-shm"):
        path = tmp_path / "home" / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


# -- property-based: no input makes a 500 ---------------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
                    max_leaves=12)
OPTION_LIKE = st.dictionaries(st.sampled_from(["window", "hop", "frames_per_second", "modalities"]),
                              st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8)
                              | st.lists(st.sampled_from(["face", "voice", "text", "smell"]), max_size=4), max_size=4)


@settings(max_examples=300, deadline=None)
@given(value=JSON | OPTION_LIKE)
def test_given_options_accepts_or_refuses_any_json(value):
    for raw in (value, json.dumps(value)):
        try:
            options = given_options(raw)
        except InvalidOptions as exc:
            assert exc.code == "invalid_options" and exc.message
            continue
        assert isinstance(options, dict) and set(options) <= {"window", "hop", "frames_per_second", "modalities"}
        limits.check_options(options.get("window", 2.0), options.get("hop", 1.0), options.get("frames_per_second", 2.0))


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory, tiny_model_dir, engine):
    home = tmp_path_factory.mktemp("fuzz")
    with TestClient(create_app(make_settings(home, tiny_model_dir, requests_per_day=None, key_requests_per_minute=None),
                               engine=engine, start_jobs=False), base_url="https://testserver") as client:
        client.key = new_key(client, signup(client))
        yield client


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON | OPTION_LIKE)
def test_any_options_on_the_upload_route_are_never_a_500(fuzz_client, clip, value):
    r = submit(fuzz_client, fuzz_client.key, clip, options=json.dumps(value))
    assert r.status_code in (202, 422), r.text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096), cut=st.integers(0, 100_000))
def test_any_bytes_on_the_upload_routes_are_never_a_500(fuzz_client, clip, data, cut):
    for body in (data, clip[:cut] + data):
        for r in (fuzz_client.post("/invocations", content=body, headers={"Content-Type": "video/mp4"}),
                  submit(fuzz_client, fuzz_client.key, body)):
            assert r.status_code < 500, r.text
