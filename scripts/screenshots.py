#!/usr/bin/env python
"""Screenshots of the web page for the README (docs/screenshots/*.png).

    .venv/bin/python scripts/screenshots.py                 # the bundled model, into docs/screenshots/
    .venv/bin/python scripts/screenshots.py --model ./m --out /tmp/shots

Starts `emofusion serve` on a free port with a throw-away EMOFUSION_HOME (as the browser
tests do), signs up, analyses a generated clip (a synthetic face, a speech-like tone and a
short transcript), creates an API key, and captures the login, analysis, API keys and usage
views in headless Chromium (the system's /usr/bin/chromium; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRANSCRIPT = """1
00:00:00,500 --> 00:00:03,000
I am so happy today, this is wonderful.

2
00:00:03,500 --> 00:00:06,000
Well, it is fine I guess.

3
00:00:06,500 --> 00:00:09,500
No, this is terrible, I hate it.
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, model: str | None, port: int, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("emofusion")
    cmd = [str(exe) if exe.is_file() else (shutil.which("emofusion") or "emofusion")]
    env = {**os.environ, "EMOFUSION_HOME": str(home), "EMOFUSION_COOKIE_SECURE": "0",
           # a small quota, so the usage bars show something after two requests
           "EMOFUSION_REQUESTS_PER_DAY": "20", "EMOFUSION_MEDIA_MINUTES_PER_MONTH": "5"}
    for name in ("DATABASE_URL", "EMOFUSION_STORAGE", "EMOFUSION_REQUIRE_KEY", "EMOFUSION_SIGNUP"):
        env.pop(name, None)
    if model:
        env["EMOFUSION_MODEL"] = model
    with open(log, "wb") as out:
        proc = subprocess.Popen([*cmd, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"emofusion serve exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as res:
                if res.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit(f"emofusion serve did not answer /ping:\n{log.read_text(errors='replace')}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--model", default=None, help="EMOFUSION_MODEL for the server (default: the bundled model)")
    ap.add_argument("--chromium", default=os.environ.get("EMOFUSION_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--scale", type=float, default=1.0, help="device pixel ratio of the captures")
    args = ap.parse_args(argv)

    from playwright.sync_api import expect, sync_playwright

    from emofusion.media.synth import make_clip, make_face_image

    if not Path(args.chromium).is_file():
        sys.exit(f"no Chromium at {args.chromium}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="emofusion-shots-") as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        home.mkdir()
        clip = make_clip(tmp / "interview.mp4", duration=10.0, width=640, height=360, fps=30,
                         face=make_face_image(180), modulate=True)
        short = make_clip(tmp / "voice-note.wav", container="wav", duration=4.0, modulate=True)
        srt = tmp / "interview.srt"
        srt.write_text(TRANSCRIPT)

        port = free_port()
        proc = start_server(home, args.model, port, tmp / "server.log")
        url = f"http://127.0.0.1:{port}"
        shots = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, headless=True)
                context = browser.new_context(viewport={"width": args.width, "height": 800}, base_url=url,
                                              device_scale_factor=args.scale, color_scheme="light")
                context.set_default_timeout(30_000)
                page = context.new_page()

                def shot(name: str, full_page: bool = False) -> None:
                    page.wait_for_timeout(600)  # bar transitions
                    path = args.out / f"{name}.png"
                    if full_page:
                        page.screenshot(path=str(path), full_page=True)
                    else:  # just the content, not an empty page below it
                        bottom = page.evaluate("() => Math.max(...[...document.querySelectorAll('main > :not([hidden])')]"
                                               ".map(e => e.getBoundingClientRect().bottom))")
                        height = max(360, int(bottom) + 24)
                        page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": args.width, "height": height})
                    shots.append(path)

                # log in (with the email typed)
                page.goto("/")
                expect(page.get_by_test_id("login-form")).to_be_visible()
                page.get_by_test_id("login-email").fill("ada@example.com")
                shot("login")

                # sign up
                page.get_by_test_id("to-signup").click()
                page.get_by_test_id("signup-email").fill("ada@example.com")
                page.get_by_test_id("signup-password").fill("a long passphrase")
                page.get_by_test_id("signup-submit").click()
                expect(page.get_by_test_id("view-analyze")).to_be_visible()

                def analyze(path: Path, transcript: Path | None = None) -> None:
                    page.goto("/#/analyze")
                    page.get_by_test_id("tab-upload").click()
                    page.get_by_test_id("media-file").set_input_files(str(path))
                    if transcript:
                        page.get_by_test_id("transcript-file").set_input_files(str(transcript))
                    page.get_by_test_id("analyze-submit").click()
                    expect(page.get_by_test_id("analysis-status")).to_have_attribute(
                        "data-status", "succeeded", timeout=600_000)
                    expect(page.get_by_test_id("timeline-img")).to_have_attribute("data-loaded", "true")

                analyze(short)
                analyze(clip, srt)
                page.mouse.move(0, 0)
                shot("analyze", full_page=True)

                # API keys: one revoked, one just created (its one-time display)
                page.get_by_test_id("nav-keys").click()
                for name in ("old laptop", "ci pipeline"):
                    page.get_by_test_id("key-name").fill(name)
                    page.get_by_test_id("key-create").click()
                    expect(page.get_by_test_id("new-key")).to_be_visible()
                    expect(page.locator(f'[data-testid="key-row-name"]:text-is("{name}")')).to_be_visible()
                    if name == "old laptop":
                        page.get_by_test_id("new-key-dismiss").click()
                        revoke = page.locator('[data-testid="key-row"]').filter(has_text=name).get_by_test_id("key-revoke")
                        revoke.click()
                        revoke.click()
                        expect(page.get_by_test_id("key-row-status").filter(has_text="revoked")).to_have_count(1)
                shot("keys")

                page.get_by_test_id("nav-usage").click()
                expect(page.get_by_test_id("view-usage")).to_have_attribute("data-loaded", "true")
                shot("usage")
                browser.close()
        finally:
            stop_server(proc)
    for path in shots:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
