"""`emofusion serve` as a process (SageMaker defaults, SIGTERM drain) and `emofusion keys`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from serve_support import clip_bytes, wait_ready
from support import free_port

from emofusion.cli import app as cli_app
from emofusion.serve.config import Settings, SettingsError

EMOFUSION = str(Path(sys.executable).with_name("emofusion"))


def test_settings_follow_sagemaker_conventions(tmp_path, tiny_model_dir):
    s = Settings.from_env({"EMOFUSION_HOME": str(tmp_path), "SM_MODEL_DIR": str(tiny_model_dir)})
    assert s.model == str(tiny_model_dir) and s.database_url == f"sqlite:///{tmp_path / 'emofusion.db'}"
    assert Settings.from_env({"EMOFUSION_HOME": str(tmp_path), "SM_MODEL_DIR": str(tmp_path / "empty")}).model == "default"
    pg = Settings.from_env({"EMOFUSION_HOME": str(tmp_path), "DATABASE_URL": "postgres://u:p@h/db"})
    assert pg.database_url == "postgresql+psycopg://u:p@h/db"
    assert Settings.from_env({"EMOFUSION_REQUESTS_PER_DAY": "unlimited"}).requests_per_day is None
    for bad in ({"EMOFUSION_REQUESTS_PER_DAY": "many"}, {"EMOFUSION_REQUIRE_KEY": "maybe"},
                {"EMOFUSION_MAX_UPLOAD_MB": "-1"}):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)


@pytest.mark.slow  # a real server process
def test_serve_as_sagemaker_then_drain_on_sigterm(tmp_path, tiny_model_dir):
    port = free_port()
    env = {**os.environ, "EMOFUSION_HOME": str(tmp_path / "home"), "SM_MODEL_DIR": str(tiny_model_dir),
           "SAGEMAKER_BIND_TO_PORT": str(port), "EMOFUSION_COOKIE_SECURE": "0"}
    key = subprocess.run([EMOFUSION, "keys", "create", "--name", "drain"], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    proc = subprocess.Popen([EMOFUSION, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        assert httpx.get(url + "/ping").json()["model"]["name"] == "tiny"
        clip = clip_bytes(tmp_path, duration=2.0)
        r = httpx.post(url + "/invocations", content=clip, headers={"Content-Type": "video/mp4"}, timeout=60)
        assert r.status_code == 200 and r.json()["emotions"]
        long_audio = clip_bytes(tmp_path, "long.wav", duration=90.0, with_video=False, container="wav",
                                audio_codec="pcm_s16le")
        job = httpx.post(url + "/v1/analyses", files={"file": ("long.wav", long_audio, "audio/wav")},
                         headers={"X-API-Key": key}, timeout=60).json()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/v1/analyses/{job['id']}", headers={"X-API-Key": key}).json()["status"] == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: the exit status says "terminated"
        assert proc.wait(timeout=120) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = proc.stderr.read().decode()
    assert key not in logs
    from emofusion.serve.db import AnalysisJob, Database

    db = Database(f"sqlite:///{tmp_path / 'home' / 'emofusion.db'}")
    with db.session() as s:
        assert s.get(AnalysisJob, job["id"]).status == "succeeded", "the running analysis finished before exit"


def test_serve_reports_bad_settings_in_one_line(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli_app, ["serve"], env={"EMOFUSION_HOME": str(tmp_path), "EMOFUSION_REQUESTS_PER_DAY": "lots"})
    assert r.exit_code == 2 and r.output.strip().startswith("error: settings: EMOFUSION_REQUESTS_PER_DAY")
    r = runner.invoke(cli_app, ["serve"], env={"EMOFUSION_HOME": str(tmp_path), "SAGEMAKER_BIND_TO_PORT": "http"})
    assert r.exit_code == 2 and "SAGEMAKER_BIND_TO_PORT" in r.output


def test_keys_cli_create_list_revoke(tmp_path):
    runner = CliRunner()
    env = {"EMOFUSION_HOME": str(tmp_path)}
    # a user that does not exist is not created without --create-user: one line naming the flag
    refused = runner.invoke(cli_app, ["keys", "create", "--name", "batch job", "--user", "Ops@Example.com"], env=env)
    assert refused.exit_code == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "error: --user: no user 'ops@example.com'; add --create-user to create one"], refused.stderr
    created = runner.invoke(cli_app, ["keys", "create", "--name", "batch job", "--user", "Ops@Example.com",
                                      "--create-user"], env=env)
    assert created.exit_code == 0, created.output
    again = runner.invoke(cli_app, ["keys", "create", "--name", "second", "--user", "ops@example.com"], env=env)
    assert again.exit_code == 0, again.output  # an existing user needs no flag
    operator = runner.invoke(cli_app, ["keys", "create", "--name", "ops"], env=env)
    assert operator.exit_code == 0, operator.output  # the default owner is created when needed
    secret = created.output.strip()
    assert secret.startswith("ef_") and len(secret) > 30
    listed = runner.invoke(cli_app, ["keys", "list", "--json"], env=env)
    assert secret not in listed.output and '"user": "ops@example.com"' in listed.output
    import json

    assert len(listed.output.splitlines()) == 3 and '"user": "operator@emofusion.local"' in listed.output
    key_id = json.loads(listed.output.splitlines()[0])["id"]
    assert runner.invoke(cli_app, ["keys", "revoke", key_id], env=env).exit_code == 0
    assert json.loads(runner.invoke(cli_app, ["keys", "list", "--json"], env=env).output.splitlines()[0])["revoked"] is True
    missing = runner.invoke(cli_app, ["keys", "revoke", "nope"], env=env)
    assert missing.exit_code == 2 and "error: nope: no such API key" in missing.output
    bad = runner.invoke(cli_app, ["keys", "create", "--name", "x", "--user", "not an email"], env=env)
    assert bad.exit_code == 2 and "error: --user" in bad.output
    nobody = runner.invoke(cli_app, ["keys", "list", "--user", "ghost@example.com"], env=env)
    assert nobody.exit_code == 2


@pytest.mark.slow  # a real server process
def test_serve_follows_a_registry_without_a_restart(tmp_path, tiny_model_dir):
    """`emofusion serve --registry`: a promotion and a rollback reach a running server process."""
    import json
    import shutil

    from emofusion.models.registry import ModelRegistry, copy_folder

    registry_root = tmp_path / "registry"
    result = CliRunner().invoke(cli_app, ["registry", "init", str(registry_root), "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    second = tmp_path / "second"
    shutil.copytree(tiny_model_dir, second)
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "version": "2.0.0"}))
    port = free_port()
    env = {**os.environ, "EMOFUSION_HOME": str(tmp_path / "home"), "EMOFUSION_REGISTRY_POLL_SECONDS": "0.2"}
    env.pop("EMOFUSION_MODEL", None)
    proc = subprocess.Popen([EMOFUSION, "serve", "--port", str(port), "--registry", str(registry_root)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    def served_when(version: str) -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if httpx.get(url + "/ping").json()["model"]["version"] == version:
                return True
            time.sleep(0.1)
        return False

    try:
        wait_ready(proc, url)
        first = httpx.get(url + "/ping").json()["model"]["version"]
        registry = ModelRegistry(registry_root)
        with registry.locked():
            registry.add_version(lambda dst: copy_folder(second, dst), {"status": "promoted"}, make_current=True,
                                 action="promote")
        assert served_when("2.0.0")
        r = httpx.post(url + "/invocations", content=clip_bytes(tmp_path, duration=2.0),
                       headers={"Content-Type": "video/mp4"}, timeout=60)
        assert r.status_code == 200 and r.json()["emotions"]  # the new model analyses
        assert CliRunner().invoke(cli_app, ["registry", "rollback", str(registry_root)]).exit_code == 0
        assert served_when(first)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    missing = subprocess.run([EMOFUSION, "serve", "--registry", str(tmp_path / "nowhere")], env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "not a model registry" in missing.stderr
