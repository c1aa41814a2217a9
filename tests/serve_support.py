"""Helpers for the service tests: settings in a temp folder, a shared engine, generated uploads."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path

import httpx

from emofusion.media.synth import make_clip, make_face_image
from emofusion.serve.config import Settings

STRONG_PASSWORD = "correct horse battery"


def make_settings(home: Path, model_dir: Path, database_url: str | None = None, **overrides) -> Settings:
    base = Settings(home=home, database_url=database_url or f"sqlite:///{home / 'emofusion.db'}",
                    storage_url=str(home / "uploads"), model=str(model_dir),
                    heartbeat_seconds=0.5, poll_seconds=0.2, drain_seconds=30)
    return replace(base, **overrides)


def client_factory(base_home: Path, model_dir: Path, engine, *, start_jobs: bool = True):
    """(make, close): make(database_url=None, start_jobs=..., home=None, **settings) gives a started
    TestClient of a service in `home` (default `base_home`); close() stops every client made."""
    from fastapi.testclient import TestClient

    from emofusion.serve.app import create_app

    clients = []

    def make(database_url: str | None = None, start_jobs: bool = start_jobs, home: Path | None = None, **overrides):
        settings = make_settings(home or base_home, model_dir, database_url, **overrides)
        client = TestClient(create_app(settings, engine=engine, start_jobs=start_jobs), base_url="https://testserver")
        client.__enter__()
        clients.append(client)
        return client

    def close() -> None:
        for c in clients:
            c.__exit__(None, None, None)

    return make, close


def clip_bytes(tmp: Path, name: str = "clip.mp4", duration: float = 3.0, **kwargs) -> bytes:
    kwargs.setdefault("face", make_face_image(80))
    kwargs.setdefault("modulate", True)
    return make_clip(tmp / name, duration=duration, width=160, height=128, **kwargs).read_bytes()


def signup(client, email: str = "ada@example.com", password: str = STRONG_PASSWORD) -> str:
    """Sign up and log in, as the web page does (the client keeps the session cookie); returns
    the CSRF token."""
    r = client.post("/auth/signup", json={"email": email, "password": password})
    assert r.status_code == 202, r.text
    r = client.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["csrf_token"]


def new_key(client, csrf: str, name: str = "test") -> str:
    r = client.post("/v1/keys", json={"name": name}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    return r.json()["key"]


def submit(client, key: str, data: bytes, filename: str = "clip.mp4", content_type: str = "video/mp4", **fields):
    files = {"file": (filename, data, content_type)}
    for name in ("audio", "transcript"):
        if name in fields:
            files[name] = fields.pop(name)
    return client.post("/v1/analyses", files=files, data=fields, headers={"Authorization": f"Bearer {key}"})


def wait_for(client, key: str, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/analyses/{job_id}", headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"analysis {job_id} did not finish in {timeout} s: {body}")


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 90.0) -> None:
    """Until the server process answers /ping (AssertionError with its stderr if it exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/ping", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("server did not answer /ping in time")
