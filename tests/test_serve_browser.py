"""End-to-end tests of the web page in headless Chromium (Playwright), against the real
`emofusion serve` started in a subprocess with a tiny model.

Needs the Debian/Ubuntu `chromium` package (never a Playwright browser download); the
tests are skipped when it is missing. EMOFUSION_CHROMIUM points at another binary.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a real server process and headless Chromium

CHROMIUM = os.environ.get("EMOFUSION_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (install the distribution's chromium package)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
expect = sync_api.expect

from media_factory import make_clip, make_face_image, make_speech_clip  # noqa: E402
from emofusion.media.scenes import make_people_clip  # noqa: E402
from s3_fixtures import s3_server  # noqa: E402,F401
from support import free_port  # noqa: E402

PASSWORD = "correct horse 42"
ANALYSIS_TIMEOUT_MS = 180_000  # a tiny model, but a busy 2-core machine
UI_TIMEOUT_MS = 15_000


# ------------------------------------------------------------------ the real server


def _emofusion_command() -> list[str]:
    """The installed `emofusion` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("emofusion")
    if script.is_file():
        return [str(script)]
    found = shutil.which("emofusion")
    if found:
        return [found]
    pytest.skip("the `emofusion` console script is not installed (pip install -e .)")


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path, home: Path):
        self.url = url
        self.home = home
        self.proc = proc
        self.log = log

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def request(self, method: str, path: str, *, body: dict | None = None, headers: dict | None = None):
        """(status, parsed JSON or None) of a plain HTTP request (no cookies)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                raw, status = res.read(), res.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None


@contextlib.contextmanager
def _serve(home: Path, model_dir: Path, extra_env: dict[str, str] | None = None):
    """`emofusion serve` in a subprocess with its data in `home`, until the block ends."""
    port = free_port()
    log = home / "server.log"
    env = {
        **os.environ,
        "EMOFUSION_HOME": str(home),
        "EMOFUSION_MODEL": str(model_dir),
        "EMOFUSION_COOKIE_SECURE": "0",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DATABASE_URL", "EMOFUSION_STORAGE", "EMOFUSION_REQUIRE_KEY", "EMOFUSION_SIGNUP"):
        env.pop(name, None)
    env.update(extra_env or {})
    cmd = [*_emofusion_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home)
    srv = Server(f"http://127.0.0.1:{port}", proc, log, home)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`emofusion serve` exited with {proc.returncode}:\n{srv.log_tail()}")
            try:
                with urllib.request.urlopen(srv.url + "/ping", timeout=2) as res:
                    if res.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`emofusion serve` did not answer /ping within 120 s:\n{srv.log_tail()}")
            time.sleep(0.25)
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    with _serve(tmp_path_factory.mktemp("serve_home"), tiny_model_dir) as srv:
        yield srv


# ------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--use-fake-ui-for-media-stream",  # grant camera + microphone without a prompt
                "--use-fake-device-for-media-stream",  # a synthetic camera and a beeping microphone
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-sandbox",
            ],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server):
    with _watched_page(browser, server.url) as (pg, problems):
        yield pg
    assert not problems, f"errors in the page: {problems}\nserver log:\n{server.log_tail()}"


@contextlib.contextmanager
def _watched_page(browser, base_url: str, ignore: str = "Failed to load resource"):
    """(a new page on `base_url`, the errors it reported): uncaught exceptions and console errors,
    except those mentioning `ignore`. The caller checks the list; the page closes after the block."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, base_url=base_url)
    context.set_default_timeout(UI_TIMEOUT_MS)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    pg.on("console", lambda m: m.type == "error" and ignore not in m.text and problems.append(m.text))
    try:
        yield pg, problems
    finally:
        context.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """3 s, a face the Haar cascade finds, speech-like audio."""
    folder = tmp_path_factory.mktemp("browser_media")
    return make_clip(folder / "face-clip.mp4", duration=3.0, width=320, height=240, fps=15,
                     face=make_face_image(), modulate=True)


def _email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}@example.com"


def _signup(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/")
    expect(page.get_by_test_id("login-form")).to_be_visible()
    page.get_by_test_id("to-signup").click()
    expect(page.get_by_test_id("signup-form")).to_be_visible()
    page.get_by_test_id("signup-email").fill(email)
    page.get_by_test_id("signup-password").fill(password)
    page.get_by_test_id("signup-submit").click()
    expect(page.get_by_test_id("view-analyze")).to_be_visible()
    expect(page.get_by_test_id("user-email")).to_have_text(email)


def _watch_statuses(page) -> None:
    """Record every status the analysis panel shows (uploading, queued, running, ...) in window.__statuses."""
    page.evaluate("""() => {
        window.__statuses = [];
        const el = document.getElementById('analysis-status');
        new MutationObserver(() => {
            const s = el.dataset.status;
            if (s && window.__statuses[window.__statuses.length - 1] !== s) window.__statuses.push(s);
        }).observe(el, {attributes: true, attributeFilter: ['data-status']});
    }""")


def _wait_for_result(page, server) -> str:
    """Wait until the shown analysis succeeded; returns its id."""
    status = page.get_by_test_id("analysis-status")
    expect(page.get_by_test_id("analysis")).to_be_visible()
    try:
        expect(status).to_have_attribute("data-status", "succeeded", timeout=ANALYSIS_TIMEOUT_MS)
    except AssertionError:
        error = page.get_by_test_id("analysis-error").text_content() or page.get_by_test_id("analyze-error").text_content()
        raise AssertionError(f"analysis did not succeed (status {status.get_attribute('data-status')!r}, "
                             f"error {error!r})\nserver log:\n{server.log_tail()}") from None
    expect(page.get_by_test_id("result")).to_be_visible()
    analysis_id = page.get_by_test_id("analysis").get_attribute("data-id")
    assert analysis_id
    assert page.url.endswith(f"#/analyses/{analysis_id}")
    return analysis_id


def _expect_took(page, analysis_id: str) -> None:
    """The page's "took" is the record's finished_at - started_at (to the millisecond) as app.js's
    fmtDuration writes it."""
    from datetime import datetime

    record = page.evaluate(f"() => fetch('/v1/analyses/{analysis_id}').then(r => r.json())")
    started, finished = (datetime.fromisoformat(record[k].removesuffix("Z")) for k in ("started_at", "finished_at"))
    assert "." in record["started_at"] and "." in record["finished_at"], record  # not whole seconds
    took = (finished - started).total_seconds()
    assert took > 0, record
    import re

    expect(page.get_by_test_id("analysis-meta")).to_contain_text("took ")
    meta = page.get_by_test_id("analysis-meta").text_content()
    m = re.search(r"took (?:(\d+) ms|(\d+\.\d) s|(\d+) min (\d+) s)(?: |$)", meta)
    assert m, meta
    if m[1]:
        assert took < 1 and abs(int(m[1]) / 1000 - took) <= 0.0011, (meta, took)
    elif m[2]:
        assert 0.99 <= took < 60 and abs(float(m[2]) - took) <= 0.051, (meta, took)
    else:
        assert abs(60 * int(m[3]) + int(m[4]) - took) <= 0.51, (meta, took)


def _canvas_pixels(page, rgb: tuple[int, int, int], tol: int = 12) -> int:
    """How many pixels of the timeline canvas have colour ``rgb`` (within ``tol``)."""
    return page.evaluate(
        """([r, g, b, tol]) => {
            const c = document.getElementById('timeline-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
                if (d[i + 3] > 200 && Math.abs(d[i] - r) <= tol && Math.abs(d[i + 1] - g) <= tol && Math.abs(d[i + 2] - b) <= tol) n++;
            return n;
        }""",
        [*rgb, tol],
    )


FUSED_RGB = (0x7B, 0x3F, 0xE4)  # app.js SOURCES.fused


def _timeline_img_loaded(page) -> bool:
    return page.evaluate("() => { const i = document.getElementById('timeline-img'); "
                         "return i.complete && i.naturalWidth > 0; }")


# ------------------------------------------------------------------ tests


def test_upload_analyze_keys_usage_logout(page, server, clip):
    email = _email("web")
    _signup(page, email)

    # -- analyze an uploaded clip ------------------------------------------------------------
    expect(page.get_by_test_id("recent-empty")).to_be_visible()
    page.get_by_test_id("media-file").set_input_files(str(clip))
    page.get_by_test_id("text-input").fill("i am so happy today")
    _watch_statuses(page)
    page.get_by_test_id("analyze-submit").click()
    analysis_id = _wait_for_result(page, server)
    seen = page.evaluate("() => window.__statuses")
    assert seen[-1] == "succeeded" and {"uploading", "queued", "running"} & set(seen[:-1]), seen

    expect(page.get_by_test_id("analysis-title")).to_have_text(clip.name)
    _expect_took(page, analysis_id)
    expect(page.get_by_test_id("analysis-progress-box")).to_be_hidden()
    expect(page.get_by_test_id("analysis-error")).to_be_hidden()

    record = page.evaluate(f"() => fetch('/v1/analyses/{analysis_id}').then(r => r.json())")
    summary = record["result"]["summary"]
    labels = record["result"]["labels"]
    assert summary["top"] in labels
    expect(page.get_by_test_id("summary-top")).to_have_text(summary["top"])
    expect(page.get_by_test_id("summary-score")).to_have_text(f"{100 * summary['score']:.1f}%")
    bars = page.get_by_test_id("summary-bar")
    expect(bars).to_have_count(len(labels))
    assert [bars.nth(i).get_attribute("data-label") for i in range(len(labels))] == labels
    for i, label in enumerate(labels):
        assert abs(float(bars.nth(i).get_attribute("data-value")) - summary["probs"][label]) < 1e-5
    # the text gives a text sentiment
    expect(page.get_by_test_id("sentiment")).to_be_visible()
    expect(page.get_by_test_id("sentiment-bar")).to_have_count(3)

    # the canvas timeline: drawn for the top label, one line per source present
    canvas = page.get_by_test_id("timeline-canvas")
    expect(canvas).to_have_attribute("data-drawn", "true")
    expect(canvas).to_have_attribute("data-label", summary["top"])
    expect(page.get_by_test_id("timeline-label")).to_have_value(summary["top"])
    points = json.loads(canvas.get_attribute("data-points"))
    segments = record["result"]["segments"]
    for source in ("face", "voice", "text", "fused"):
        assert points[source] == sum(1 for s in segments if s[source] is not None), (source, points)
    assert points["fused"] > 0 and points["face"] > 0 and points["voice"] > 0, points
    # the fused line is drawn last, so it is always visible (the others may lie under it)
    assert _canvas_pixels(page, FUSED_RGB) > 50
    # another label redraws
    other = next(label for label in labels if label != summary["top"])
    page.get_by_test_id("timeline-label").select_option(other)
    expect(canvas).to_have_attribute("data-label", other)

    # the server's PNG below it
    img = page.get_by_test_id("timeline-img")
    expect(img).to_have_attribute("src", f"/v1/analyses/{analysis_id}/timeline.png")
    expect(img).to_have_attribute("data-loaded", "true")
    assert _timeline_img_loaded(page)

    # the recent list shows it, and it opens from there
    item = page.locator(f'[data-testid="analysis-item"][data-id="{analysis_id}"]')
    expect(item).to_have_attribute("data-status", "succeeded")
    expect(item).to_contain_text(clip.name)
    expect(page.get_by_test_id("analysis-item")).to_have_count(1)
    page.goto("/#/usage")
    expect(page.get_by_test_id("view-usage")).to_be_visible()
    page.get_by_test_id("nav-analyze").click()
    item.get_by_test_id("analysis-link").click()
    _wait_for_result(page, server)
    expect(page.get_by_test_id("summary-top")).to_have_text(summary["top"])

    # -- usage: one request today --------------------------------------------------------------
    page.get_by_test_id("nav-usage").click()
    expect(page.get_by_test_id("view-usage")).to_be_visible()
    expect(page.get_by_test_id("usage-requests-value")).to_have_text("1")
    usage = page.evaluate("() => fetch('/v1/usage').then(r => r.json())")
    assert usage["requests_today"] == 1
    limit = usage["requests_per_day"]
    expect(page.get_by_test_id("usage-requests-limit")).to_have_text("unlimited" if limit is None else str(limit))
    minutes = float(page.get_by_test_id("usage-minutes-value").text_content())
    assert minutes == pytest.approx(usage["media_minutes_month"], abs=0.01) and minutes > 0

    # -- API keys: shown once, listed by prefix, revoked -----------------------------------------
    page.get_by_test_id("nav-keys").click()
    expect(page.get_by_test_id("view-keys")).to_be_visible()
    expect(page.get_by_test_id("key-row")).to_have_count(0)
    page.get_by_test_id("key-name").fill("ci laptop")
    page.get_by_test_id("key-create").click()
    expect(page.get_by_test_id("new-key")).to_be_visible()
    expect(page.get_by_test_id("new-key-warning")).to_contain_text("not be shown again")
    key = page.get_by_test_id("new-key-value").input_value()
    assert len(key) >= 20
    row = page.get_by_test_id("key-row")
    expect(row).to_have_count(1)
    prefix = row.get_attribute("data-prefix")
    assert prefix and key.startswith(prefix) and prefix != key
    expect(row.get_by_test_id("key-row-name")).to_have_text("ci laptop")
    expect(row.get_by_test_id("key-row-prefix")).to_contain_text(prefix)
    expect(row.get_by_test_id("key-row-last-used")).to_have_text("never")
    expect(row.get_by_test_id("key-row-status")).to_have_text("active")
    page.get_by_test_id("new-key-copy").click()
    expect(page.get_by_test_id("new-key-copied")).to_be_visible()

    # the key works for the API; then it is never shown again
    status, body = server.request("GET", "/v1/analyses", headers={"Authorization": f"Bearer {key}"})
    assert status == 200 and [a["id"] for a in body["items"]] == [analysis_id], (status, body)
    page.get_by_test_id("nav-usage").click()
    page.get_by_test_id("nav-keys").click()
    expect(page.get_by_test_id("view-keys")).to_be_visible()
    page.reload()
    expect(page.get_by_test_id("key-row")).to_have_count(1)
    expect(page.get_by_test_id("new-key")).to_be_hidden()
    assert key not in page.content()
    row = page.locator(f'[data-testid="key-row"][data-prefix="{prefix}"]')
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("key-row-last-used")).not_to_have_text("never")

    revoke = row.get_by_test_id("key-revoke")
    revoke.click()  # arms
    expect(revoke).to_have_text("Confirm revoke")
    revoke.click()
    expect(row.get_by_test_id("key-row-status")).to_contain_text("revoked")
    expect(row.get_by_test_id("key-revoke")).to_have_count(0)
    status, _ = server.request("GET", "/v1/analyses", headers={"Authorization": f"Bearer {key}"})
    assert status == 401

    # -- log out, a wrong password, log in again --------------------------------------------------
    page.get_by_test_id("logout-button").click()
    expect(page.get_by_test_id("login-form")).to_be_visible()
    expect(page.get_by_test_id("nav")).to_be_hidden()
    page.reload()
    expect(page.get_by_test_id("login-form")).to_be_visible()  # the session is gone server-side too
    page.goto("/#/keys")  # a page that needs a session: the login form, then back there
    expect(page.get_by_test_id("login-form")).to_be_visible()
    expect(page.get_by_test_id("view-keys")).to_be_hidden()
    assert page.url.endswith("#/login")

    page.get_by_test_id("login-email").fill(email)
    page.get_by_test_id("login-password").fill("not the password")
    with page.expect_response(lambda r: r.url.endswith("/auth/login")) as info:
        page.get_by_test_id("login-submit").click()
    response = info.value
    assert response.status == 401
    message = response.json()["error"]["message"]
    expect(page.get_by_test_id("login-error")).to_have_text(message)
    expect(page.get_by_test_id("login-form")).to_be_visible()

    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("view-keys")).to_be_visible()
    assert page.url.endswith("#/keys")
    expect(page.locator(f'[data-testid="key-row"][data-prefix="{prefix}"]')).to_have_count(1)
    expect(page.get_by_test_id("login-error")).to_be_hidden()
    page.get_by_test_id("nav-analyze").click()
    expect(page.locator(f'[data-testid="analysis-item"][data-id="{analysis_id}"]')).to_be_visible()


def test_signup_errors_show_the_api_message(page, server):
    email = _email("dup")
    status, _ = server.request("POST", "/auth/signup", body={"email": email, "password": PASSWORD})
    assert status == 202
    page.goto("/#/signup")
    expect(page.get_by_test_id("signup-form")).to_be_visible()
    # the address has an account with another password: sign-up says nothing of it, log-in fails
    page.get_by_test_id("signup-email").fill(email)
    page.get_by_test_id("signup-password").fill(PASSWORD + " but another")
    with page.expect_response(lambda r: r.url.endswith("/auth/signup")) as signed:
        with page.expect_response(lambda r: r.url.endswith("/auth/login")) as logged:
            page.get_by_test_id("signup-submit").click()
    assert signed.value.status == 202 and logged.value.status == 401
    expect(page.get_by_test_id("signup-error")).to_contain_text("If this address already has an account")
    expect(page.get_by_test_id("signup-form")).to_be_visible()

    # a password among the most common ones: the API's message
    page.get_by_test_id("signup-email").fill(_email("common"))
    page.get_by_test_id("signup-password").fill("password123")
    with page.expect_response(lambda r: r.url.endswith("/auth/signup")) as info:
        page.get_by_test_id("signup-submit").click()
    assert info.value.status == 422
    expect(page.get_by_test_id("signup-error")).to_have_text(info.value.json()["error"]["message"])

    # the page's own check (no request) for a short password
    page.get_by_test_id("signup-email").fill(_email("short"))
    page.get_by_test_id("signup-password").fill("short")
    page.get_by_test_id("signup-submit").click()
    expect(page.get_by_test_id("signup-error")).to_contain_text("8 characters")


def test_bad_media_shows_the_error(page, server, tmp_path):
    _signup(page, _email("bad"))
    bogus = tmp_path / "not-a-video.mp4"
    bogus.write_bytes(b"this is plain text, not a video " * 64)
    page.get_by_test_id("media-file").set_input_files(str(bogus))
    with page.expect_response(lambda r: r.url.endswith("/v1/analyses") and r.request.method == "POST") as info:
        page.get_by_test_id("analyze-submit").click()
    response = info.value
    if response.status == 202:  # accepted, fails in the worker
        status = page.get_by_test_id("analysis-status")
        expect(status).to_have_attribute("data-status", "failed", timeout=ANALYSIS_TIMEOUT_MS)
        analysis_id = response.json()["id"]
        record = page.evaluate(f"() => fetch('/v1/analyses/{analysis_id}').then(r => r.json())")
        assert record["status"] == "failed" and record["error"]["message"]
        expect(page.get_by_test_id("analysis-error")).to_have_text(record["error"]["message"])
        expect(page.get_by_test_id("result")).to_be_hidden()
        item = page.locator(f'[data-testid="analysis-item"][data-id="{analysis_id}"]')
        expect(item).to_have_attribute("data-status", "failed")
    else:  # rejected at upload
        assert 400 <= response.status < 500, response.status
        expect(page.get_by_test_id("analyze-error")).to_have_text(response.json()["error"]["message"])


def test_webcam_recording_is_analysed(page, server):
    """Chromium's fake camera + microphone, recorded 2 s with MediaRecorder (video/webm)."""
    _signup(page, _email("cam"))
    page.get_by_test_id("tab-record").click()
    expect(page.get_by_test_id("source-record")).to_be_visible()
    expect(page.get_by_test_id("media-file")).to_be_hidden()
    page.get_by_test_id("record-start").click()
    expect(page.get_by_test_id("record-indicator")).to_be_visible()
    expect(page.get_by_test_id("record-stop")).to_be_enabled()
    page.wait_for_function("() => document.getElementById('record-preview').videoWidth > 0")
    page.wait_for_timeout(2000)
    page.get_by_test_id("record-stop").click()
    expect(page.get_by_test_id("record-status")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("record-indicator")).to_be_hidden()
    with page.expect_response(lambda r: r.url.endswith("/v1/analyses") and r.request.method == "POST") as info:
        page.get_by_test_id("analyze-submit").click()
    assert info.value.status == 202, (info.value.status, info.value.text())
    analysis_id = _wait_for_result(page, server)

    record = page.evaluate(f"() => fetch('/v1/analyses/{analysis_id}').then(r => r.json())")
    media = record["result"]["media"]
    assert media["has_video"] and media["has_audio"], media
    assert 1.0 <= media["duration"] <= 6.0, media
    assert record["filename"].startswith("recording-") and record["filename"].endswith(".webm")
    assert len(record["result"]["segments"]) >= 1
    fused = sum(1 for s in record["result"]["segments"] if s["fused"] is not None)
    expect(page.get_by_test_id("timeline-canvas")).to_have_attribute("data-drawn", "true")
    assert json.loads(page.get_by_test_id("timeline-canvas").get_attribute("data-points"))["fused"] == fused
    expect(page.get_by_test_id("timeline-img")).to_have_attribute("data-loaded", "true")
    assert _timeline_img_loaded(page)
    expect(page.locator(f'[data-testid="analysis-item"][data-id="{analysis_id}"]')).to_have_attribute(
        "data-status", "succeeded")


def test_unknown_analysis_and_failed_job_show_the_message(page, server):
    _signup(page, _email("fail"))
    # a real 404 from the server
    with page.expect_response(lambda r: "/v1/analyses/no-such-analysis" in r.url) as info:
        page.goto("/#/analyses/no-such-analysis")
    assert info.value.status == 404
    expect(page.get_by_test_id("analysis-error")).to_have_text(info.value.json()["error"]["message"])
    expect(page.get_by_test_id("result")).to_be_hidden()

    # a real failure: a job left "running" by a crashed worker after its last allowed attempt;
    # the live server's recovery marks it failed with a reason, and the page shows that
    from datetime import timedelta

    from emofusion.serve.db import RUNNING, AnalysisJob, Database, utcnow

    me = page.evaluate("() => fetch('/auth/me').then(r => r.json())")
    job_id = uuid.uuid4().hex
    db = Database(f"sqlite:///{server.home / 'emofusion.db'}")
    with db.session() as s:
        s.add(AnalysisJob(id=job_id, user_id=me["user"]["id"], status=RUNNING, filename="broken.mp4",
                          media_key=f"uploads/{job_id}/media", options={}, media_seconds=3.0, attempts=2,
                          worker="crashed", heartbeat_at=utcnow() - timedelta(minutes=10)))
    db.dispose()
    deadline = time.monotonic() + 60
    while page.evaluate(f"() => fetch('/v1/analyses/{job_id}').then(r => r.json())")["status"] != "failed":
        assert time.monotonic() < deadline, "the server did not recover the interrupted job"
        time.sleep(0.5)
    record = page.evaluate(f"() => fetch('/v1/analyses/{job_id}').then(r => r.json())")
    assert record["error"]["code"] == "interrupted"
    page.goto(f"/#/analyses/{job_id}")
    expect(page.get_by_test_id("analysis-status")).to_have_attribute("data-status", "failed")
    expect(page.get_by_test_id("analysis-error")).to_have_text(record["error"]["message"])
    expect(page.get_by_test_id("analysis-title")).to_have_text("broken.mp4")
    expect(page.get_by_test_id("analysis-progress-box")).to_be_hidden()
    expect(page.get_by_test_id("result")).to_be_hidden()


# ------------------------------------------------------------------ issue 16: offline docs, phones, the form, "took"


def _block_other_hosts(page, server) -> list[str]:
    """Abort every request to a host other than the server's (an air-gapped host); returns the list
    of the URLs refused."""
    refused: list[str] = []

    def handle(route):
        url = route.request.url
        if url.startswith(server.url + "/") or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    page.route("**/*", handle)
    return refused


def test_api_docs_work_offline(page, server):
    """/docs (Swagger UI) renders the API with every other host unreachable (issue 16, 3)."""
    refused = _block_other_hosts(page, server)
    page.goto("/docs")
    expect(page.locator('.opblock-summary-path[data-path="/v1/analyses"]').first).to_be_visible()
    assert page.locator(".opblock").count() >= 9
    page.locator('.opblock-summary-path[data-path="/v1/analyses"]').first.click()  # it opens: the script runs
    expect(page.locator(".opblock.is-open").first).to_be_visible()
    assert not refused, refused


def test_redoc_works_offline(browser, server):
    """/redoc too. ReDoc's sidebar shows a "by Redocly" logo from cdn.redoc.ly, which the page's
    Content-Security-Policy blocks (no request leaves the host); any other error fails."""
    with _watched_page(browser, server.url, ignore="https://cdn.redoc.ly/") as (page, problems):
        refused = _block_other_hosts(page, server)
        page.goto("/redoc")
        expect(page.locator('[data-section-id^="operation/"]').first).to_be_attached()
        assert page.locator('[data-section-id^="operation/"]').count() >= 9
        expect(page.get_by_text("/v1/analyses", exact=True).first).to_be_attached()
        assert not refused, refused
    assert not problems, problems


LONG_NAME = "VID_20261206_121640_phone_recording_final_v2.mp4"


def _add_failed_analysis(server, user_id: str, filename: str) -> str:
    """An analysis row of `user_id` straight in the database (the list needs no real media)."""
    from emofusion.serve.db import FAILED, AnalysisJob, Database, utcnow

    job_id = uuid.uuid4().hex
    db = Database(f"sqlite:///{server.home / 'emofusion.db'}")
    with db.session() as s:
        s.add(AnalysisJob(id=job_id, user_id=user_id, status=FAILED, filename=filename,
                          media_key=f"uploads/{job_id}/media", options={}, media_seconds=4.7, attempts=1,
                          created_at=utcnow(), finished_at=utcnow(), error_code="bad_media",
                          error_message="the media could not be decoded"))
    db.dispose()
    return job_id


@pytest.mark.parametrize("width", [360, 390, 414])
def test_phone_width_has_no_horizontal_scroll(browser, server, tmp_path, width):
    """A long file name in the list and the title wraps or is cut with an ellipsis: nothing goes
    off-screen at phone widths (issue 16, 5)."""
    context = browser.new_context(viewport={"width": width, "height": 844}, base_url=server.url,
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        _signup(page, _email(f"phone{width}"))
        me = page.evaluate("() => fetch('/auth/me').then(r => r.json())")
        job_id = _add_failed_analysis(server, me["user"]["id"], LONG_NAME)
        page.get_by_test_id("recent-refresh").click()
        item = page.locator(f'[data-testid="analysis-item"][data-id="{job_id}"]')
        expect(item).to_be_visible()
        page.get_by_test_id("text-input").fill("a few words")

        def check(where: str) -> None:
            page.screenshot(path=str(tmp_path / f"phone-{width}-{where}.png"), full_page=True)
            # a phone widens its layout viewport to fit wide content, so innerWidth must stay the screen's
            sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert sizes[0] <= sizes[1] == width, (where, sizes)
            for testid in ("analysis-item-status", "analysis-delete", "text-input", "analyze-submit"):
                for box in page.evaluate(
                        """(id) => [...document.querySelectorAll(`[data-testid="${id}"]`)]
                                   .filter((e) => e.offsetParent).map((e) => e.getBoundingClientRect().toJSON())""",
                        testid):
                    assert box["left"] >= 0 and box["right"] <= width, (where, testid, box)

        check("list")
        item.get_by_test_id("analysis-link").click()
        expect(page.get_by_test_id("analysis-title")).to_have_text(LONG_NAME)
        expect(page.get_by_test_id("analysis-status")).to_have_attribute("data-status", "failed")
        check("analysis")
        title = page.get_by_test_id("analysis-title").bounding_box()
        assert title["x"] >= 0 and title["x"] + title["width"] <= width, title
    finally:
        context.close()


def _capture_analysis_posts(page) -> list[bytes]:
    """Answer each POST /v1/analyses with a made-up 202 (no analysis runs) and keep its body."""
    bodies: list[bytes] = []

    def handle(route):
        if route.request.method != "POST":
            return route.continue_()
        bodies.append(route.request.post_data_buffer or b"")
        route.fulfill(status=202, content_type="application/json",
                      body=json.dumps({"id": f"captured-{len(bodies)}", "status": "queued"}))

    page.route("**/v1/analyses", handle)
    return bodies


def _has_part(body: bytes, name: str) -> bool:
    return f'name="{name}"'.encode() in body


def test_form_does_not_resend_old_text(page, server, clip, tmp_path):
    """After a submission the text, transcript and files are cleared: a later upload or webcam
    recording is never analysed with the previous text (issue 16, 6)."""
    _signup(page, _email("reuse"))
    bodies = _capture_analysis_posts(page)
    transcript = tmp_path / "words.txt"
    transcript.write_text("hello there\n")

    page.get_by_test_id("media-file").set_input_files(str(clip))
    page.get_by_test_id("transcript-file").set_input_files(str(transcript))
    page.get_by_test_id("text-input").fill("i am so happy today")
    page.get_by_test_id("analyze-submit").click()
    expect(page.get_by_test_id("analysis")).to_have_attribute("data-id", "captured-1")
    assert len(bodies) == 1
    assert _has_part(bodies[0], "text") and b"i am so happy today" in bodies[0]
    assert _has_part(bodies[0], "transcript") and _has_part(bodies[0], "file")
    # the form is empty again
    expect(page.get_by_test_id("text-input")).to_have_value("")
    assert page.evaluate("() => ['media-file', 'transcript-file', 'audio-file'].map("
                         "(id) => document.getElementById(id).files.length)") == [0, 0, 0]
    # with no file chosen, nothing is sent
    page.get_by_test_id("analyze-submit").click()
    expect(page.get_by_test_id("analyze-error")).to_contain_text("Choose a video or audio file")
    assert len(bodies) == 1

    # another upload, no text typed: no text and no transcript in the request
    page.get_by_test_id("media-file").set_input_files(str(clip))
    page.get_by_test_id("analyze-submit").click()
    expect(page.get_by_test_id("analysis")).to_have_attribute("data-id", "captured-2")
    assert len(bodies) == 2
    assert _has_part(bodies[1], "file")
    assert not _has_part(bodies[1], "text") and not _has_part(bodies[1], "transcript"), bodies[1][:400]

    # text typed, then a webcam recording with no text: the recording goes alone
    page.get_by_test_id("text-input").fill("words for the upload")
    page.get_by_test_id("media-file").set_input_files(str(clip))
    page.get_by_test_id("analyze-submit").click()
    expect(page.get_by_test_id("analysis")).to_have_attribute("data-id", "captured-3")
    assert b"words for the upload" in bodies[2]
    page.get_by_test_id("tab-record").click()
    page.get_by_test_id("record-start").click()
    expect(page.get_by_test_id("record-stop")).to_be_enabled()
    page.wait_for_timeout(700)
    page.get_by_test_id("record-stop").click()
    expect(page.get_by_test_id("record-status")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("text-input")).to_have_value("")
    page.get_by_test_id("analyze-submit").click()
    expect(page.get_by_test_id("analysis")).to_have_attribute("data-id", "captured-4")
    assert len(bodies) == 4
    assert b"recording-" in bodies[3] and not _has_part(bodies[3], "text"), bodies[3][:400]
    # the recording was sent: it is not sent a second time by accident
    expect(page.get_by_test_id("record-status")).not_to_have_attribute("data-ready", "true")
    page.get_by_test_id("analyze-submit").click()
    expect(page.get_by_test_id("analyze-error")).to_contain_text("Record a clip first")
    assert len(bodies) == 4


@pytest.mark.parametrize(("started", "finished", "shown"), [
    ("2026-12-06T12:16:40.000Z", "2026-12-06T12:16:44.700Z", "took 4.7 s"),
    ("2026-12-06T12:16:40.900Z", "2026-12-06T12:16:41.312Z", "took 412 ms"),
    ("2026-12-06T12:16:40.000Z", "2026-12-06T12:18:05.400Z", "took 1 min 25 s"),
])
def test_took_time_from_real_timestamps(page, server, started, finished, shown):
    """The "took" of an analysis comes from its start and end with sensible precision; it was
    "took 0.0 s" for a run of a 4.7 s recording (issue 16, 7)."""
    _signup(page, _email("took"))
    record = {"id": "timed", "status": "failed", "progress": 1.0, "filename": "clip.webm",
              "created_at": "2026-12-06T12:16:39Z", "started_at": started, "finished_at": finished,
              "media_seconds": 4.7, "options": {}, "error": {"code": "x", "message": "made up"}, "result": None}
    page.route("**/v1/analyses/timed", lambda route: route.fulfill(status=200, content_type="application/json",
                                                                    body=json.dumps(record)))
    page.goto("/#/analyses/timed")
    expect(page.get_by_test_id("analysis-meta")).to_contain_text(shown)


# ------------------------------------------------------------------ issue 16, 10: the faces it read

FACE_BOX_RGB = (0x00, 0xE6, 0x76)  # app.js FACE_BOX_COLOR, as plot.py draws the box


def _thumb_pixels(page, index: int, rgb: tuple[int, int, int], tol: int = 40) -> dict:
    """Of face thumbnail `index`'s canvas: how many pixels are near ``rgb`` and how many colours it has."""
    return page.evaluate(
        """([index, r, g, b, tol]) => {
            const c = document.querySelectorAll('[data-testid="face-canvas"]')[index];
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let near = 0;
            const colours = new Set();
            for (let i = 0; i < d.length; i += 4) {
                colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
                if (Math.abs(d[i] - r) <= tol && Math.abs(d[i + 1] - g) <= tol && Math.abs(d[i + 2] - b) <= tol) near++;
            }
            return {near, colours: colours.size, width: c.width, height: c.height};
        }""",
        [index, *rgb, tol],
    )


def test_face_strip_shows_the_faces_read(page, server, clip):
    """An analysis of a file sent from the page shows the frames it read with the face box drawn
    (drawn in the browser from the file, which the server has deleted); reopened after a reload
    (the file is gone from the page) it shows no strip and no error (issue 16, 10)."""
    _signup(page, _email("faces"))
    page.get_by_test_id("media-file").set_input_files(str(clip))
    page.get_by_test_id("analyze-submit").click()
    analysis_id = _wait_for_result(page, server)
    record = page.evaluate(f"() => fetch('/v1/analyses/{analysis_id}').then(r => r.json())")
    with_face = [s for s in record["result"]["segments"] if s["face"] and len(s["face"].get("box") or []) == 4]
    assert with_face, record["result"]["segments"]  # the synthetic face is found

    strip = page.get_by_test_id("face-strip")
    expect(strip).to_have_attribute("data-state", "drawn")
    expect(strip).to_be_visible()
    thumbs = page.get_by_test_id("face-thumb")
    count = thumbs.count()
    assert 1 <= count <= min(6, len(with_face)), (count, len(with_face))
    media = record["result"]["media"]
    for i in range(count):
        px = _thumb_pixels(page, i, FACE_BOX_RGB)
        assert px["colours"] > 10, px  # a picture, not a blank canvas
        assert px["near"] > 20, px  # the green box
        assert abs(px["width"] / px["height"] - media["width"] / media["height"]) < 0.05, (px, media)
        t = float(thumbs.nth(i).get_attribute("data-time"))
        assert 0 <= t <= media["duration"], t
        expect(thumbs.nth(i).locator("figcaption")).to_contain_text(f"{t:.1f} s")
    labels = record["result"]["labels"]
    assert all(thumbs.nth(i).get_attribute("data-label") in labels for i in range(count))

    # the strip never widens the page at phone width
    page.set_viewport_size({"width": 360, "height": 800})
    sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert sizes[0] <= sizes[1], sizes
    box = strip.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360, box
    page.set_viewport_size({"width": 1200, "height": 900})

    # after a reload the page no longer has the file: no strip, nothing logged (the fixture checks)
    page.reload()
    _wait_for_result(page, server)
    expect(page.get_by_test_id("face-strip")).to_have_attribute("data-state", "none")
    expect(page.get_by_test_id("face-strip")).to_be_hidden()
    expect(page.get_by_test_id("face-thumb")).to_have_count(0)


def test_face_strip_is_quiet_when_the_file_cannot_be_played(page, server, tmp_path):
    """A file the browser cannot decode (here: not media at all, with an analysis record made up
    with face boxes) shows no strip and no error, neither on the page nor in the console."""
    _signup(page, _email("nodecode"))
    record = {"id": "undecodable", "status": "succeeded", "progress": 1.0, "filename": "odd.mp4",
              "created_at": "2026-12-06T12:16:39Z", "started_at": "2026-12-06T12:16:40Z",
              "finished_at": "2026-12-06T12:16:41Z", "media_seconds": 2.0, "options": {}, "error": None,
              "result": {"labels": ["neutral", "happy"],
                         "summary": {"top": "happy", "score": 0.6, "probs": {"neutral": 0.4, "happy": 0.6}},
                         "media": {"duration": 2.0, "width": 320, "height": 240, "has_video": True,
                                   "has_audio": False},
                         "segments": [{"start": 0.0, "end": 1.0, "voice": None, "text": None,
                                       "fused": {"neutral": 0.4, "happy": 0.6},
                                       "face": {"box": [100, 60, 80, 80],
                                                "probs": {"neutral": 0.4, "happy": 0.6}}}]}}

    def answer(route):
        if route.request.method == "POST":
            route.fulfill(status=202, content_type="application/json",
                          body=json.dumps({"id": "undecodable", "status": "queued"}))
        else:
            route.continue_()

    page.route("**/v1/analyses", answer)
    page.route("**/v1/analyses/undecodable", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(record)))
    junk = tmp_path / "odd.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    page.get_by_test_id("media-file").set_input_files(str(junk))
    page.get_by_test_id("analyze-submit").click()
    expect(page.get_by_test_id("result")).to_be_visible()
    expect(page.get_by_test_id("face-strip")).to_have_attribute("data-state", "none", timeout=30_000)
    expect(page.get_by_test_id("face-strip")).to_be_hidden()
    expect(page.get_by_test_id("face-thumb")).to_have_count(0)
    expect(page.get_by_test_id("analysis-error")).to_be_hidden()
    expect(page.get_by_test_id("analyze-error")).to_be_hidden()


def test_speech_comes_back_with_its_words(page, server, tmp_path):
    """An uploaded clip with speech is transcribed by the offline default Whisper model and its
    words are listed per window with the text reading; unchecking the box turns it off (issue 17)."""
    speech, _ = make_speech_clip(tmp_path / "speech.mp4", width=160, height=128)
    _signup(page, _email("words"))
    expect(page.get_by_test_id("opt-transcribe")).to_be_checked()
    page.get_by_test_id("media-file").set_input_files(str(speech))
    page.get_by_test_id("analyze-submit").click()
    _wait_for_result(page, server)
    expect(page.get_by_test_id("words-source")).to_contain_text("recognised by Whisper tiny.en")
    # the page says whether the voice was calibrated, and why not (this server's tiny model cannot)
    expect(page.get_by_test_id("opt-calibrate")).to_be_checked()
    expect(page.get_by_test_id("voice-calibration")).to_contain_text(
        "Voice not calibrated (model 'tiny' has no calibrated voice regression)")
    words = page.get_by_test_id("words-list")
    expect(words).to_contain_text("happy")
    expect(words).to_contain_text("text: ")
    page.get_by_test_id("opt-transcribe").uncheck()
    page.get_by_test_id("media-file").set_input_files(str(speech))
    page.get_by_test_id("analyze-submit").click()
    expect(page.get_by_test_id("words-source")).to_contain_text("none: transcription is off")
    page.get_by_test_id("opt-calibrate").uncheck()
    page.get_by_test_id("media-file").set_input_files(str(speech))
    page.get_by_test_id("analyze-submit").click()
    expect(page.get_by_test_id("voice-calibration")).to_contain_text("Voice not calibrated (calibration is off)")
    expect(page.get_by_test_id("words-list").locator("li")).to_have_count(0)


def test_people_are_listed_with_their_faces(page, server, tmp_path):
    """A clip with two faces, one speaking: the page lists two people, each with the face's
    thumbnail and a row of windows, and says how people were found (issue 19)."""
    import re

    faces = [make_face_image(100), make_face_image(100, background=140)]
    clip = make_people_clip(tmp_path / "two.mp4", faces, speaker=0, duration=4.0, width=320, height=180, face_size=90)
    _signup(page, _email("people"))
    page.get_by_test_id("media-file").set_input_files(str(clip))
    page.get_by_test_id("analyze-submit").click()
    _wait_for_result(page, server)
    people = page.get_by_test_id("person")
    expect(people).to_have_count(2)
    for k in range(2):
        expect(people.nth(k).locator("img")).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))
        expect(people.nth(k).locator(".person-track span")).to_have_count(3)  # 4 s: three windows
    expect(page.get_by_test_id("people-note")).to_contain_text("yunet, up to 6 per frame")


def test_with_s3_storage_the_page_uploads_straight_to_the_bucket(browser, tmp_path_factory, tiny_model_dir, clip,
                                                                 s3_server):  # noqa: F811
    """The page signs an upload (POST /v1/uploads), posts the file to the bucket, and creates the
    analysis from the upload's id: the file never passes through the app server's request body."""
    import boto3

    bucket = f"direct-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket=bucket)
    extra = {"EMOFUSION_STORAGE": f"s3://{bucket}/emo", "EMOFUSION_S3_ENDPOINT_URL": s3_server,
             "EMOFUSION_RETAIN_UPLOADS": "1"}  # kept after the analysis, to compare with the file
    with _serve(tmp_path_factory.mktemp("s3_home"), tiny_model_dir, extra) as srv:
        with _watched_page(browser, srv.url) as (page, problems):
            sent: list[tuple[str, str, int]] = []
            page.on("requestfinished", lambda r: r.method == "POST"
                    and sent.append((r.method, r.url, r.sizes()["requestBodySize"])))
            _signup(page, _email("direct"))
            page.get_by_test_id("media-file").set_input_files(str(clip))
            page.get_by_test_id("analyze-submit").click()
            analysis_id = _wait_for_result(page, srv)
            expect(page.get_by_test_id("analysis-title")).to_have_text(clip.name)
        assert not problems, problems
        to_bucket = [url for _, url, _ in sent if url.startswith(s3_server)]
        to_service = {url.removeprefix(srv.url): n for _, url, n in sent if url.startswith(srv.url)}
        assert to_bucket == [f"{s3_server}/{bucket}"], sent  # the signed form, with the file
        assert "/v1/uploads" in to_service and to_service["/v1/analyses"] < 2000, sent  # the id, not the file
        stored = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert stored == [f"emo/uploads/{analysis_id}/media"], stored  # moved to the analysis's key
        assert s3.get_object(Bucket=bucket, Key=stored[0])["Body"].read() == clip.read_bytes()


def test_a_consented_analysis_is_labelled_and_consent_withdrawn_from_the_page(page, server, clip):
    _signup(page, _email("label"))
    page.get_by_test_id("media-file").set_input_files(str(clip))
    page.get_by_test_id("opt-consent").check()
    page.get_by_test_id("analyze-submit").click()
    analysis_id = _wait_for_result(page, server)
    box = page.get_by_test_id("training")
    expect(box).to_be_visible()
    page.get_by_test_id("training-label").select_option("surprised")
    page.get_by_test_id("training-save").click()
    expect(page.get_by_test_id("training-status")).to_have_text("Saved: surprised.")
    record = page.evaluate(f"() => fetch('/v1/analyses/{analysis_id}').then(r => r.json())")
    assert record["training_consent"] and record["labels"] == [{"label": "surprised", "start": None, "end": None}]
    page.reload()  # the saved label is shown again
    expect(page.get_by_test_id("training-label")).to_have_value("surprised")
    page.get_by_test_id("training-withdraw").click()
    expect(box).to_be_hidden()
    record = page.evaluate(f"() => fetch('/v1/analyses/{analysis_id}').then(r => r.json())")
    assert not record["training_consent"] and record["labels"] is None
    assert not list(server.home.rglob(f"uploads/{analysis_id}/*"))  # the kept file is gone
    # without consent there is nothing to label
    page.get_by_test_id("media-file").set_input_files(str(clip))
    page.get_by_test_id("analyze-submit").click()
    _wait_for_result(page, server)
    expect(box).to_be_hidden()
