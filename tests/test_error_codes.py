"""One error family: the same bad input gets the same code from the CLI (as its exit status),
a batch row and the service, all read from `emofusion.errors.ERROR_CODES`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serve_support import client_factory, clip_bytes, new_key, signup, submit

from emofusion import errors
from emofusion.batch import BatchError, analyze_task, make_analyzer, run_batch
from emofusion.cli import app
from emofusion.errors import ERROR_CODES, EmofusionError, exit_status, http_status
from emofusion.serve.engine import Engine


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def test_every_error_class_has_a_code_in_the_table():
    classes = [c for c in _subclasses(EmofusionError) if c.__module__.startswith("emofusion")]
    assert len(classes) >= 20
    assert {c.__name__: c.code for c in classes if c.code not in ERROR_CODES} == {}


def test_an_error_survives_pickling_with_its_code_and_subject():
    import pickle

    error = BatchError("--workers", "must be at least 1", code="invalid_batch_options")
    back = pickle.loads(pickle.dumps(error))
    assert (type(back), str(back), back.code, back.subject) == (BatchError, "must be at least 1", "invalid_batch_options",
                                                                "--workers")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_inputs")
    clip = d / "clip.mp4"
    clip.write_bytes(clip_bytes(d, duration=2.0))
    not_media = d / "notes.mp4"
    not_media.write_text("these are words, not a video\n" * 20)
    transcript = d / "bad.srt"
    transcript.write_bytes(b"\xff\xfe\xfa not utf-8 \xff")
    return {"clip": clip, "not_media": not_media, "transcript": transcript}


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_model_dir):
    make, close = client_factory(tmp_path_factory.mktemp("home"), tiny_model_dir, Engine(tiny_model_dir), start_jobs=False)
    client = make()
    key = new_key(client, signup(client))
    yield client, key
    close()


def _service_code(response, code: str) -> str:
    assert response.status_code == http_status(code), response.text
    return response.json()["error"]["code"]


def test_options_out_of_bounds(tmp_path, tiny_model_dir, files, service):
    code = "invalid_options"
    r = CliRunner().invoke(app, ["analyze", str(files["clip"]), "--window", "0.1", "--model", str(tiny_model_dir)])
    assert r.exit_code == exit_status(code) and "window must be" in r.output
    with pytest.raises(BatchError) as caught:
        run_batch([str(files["clip"])], tmp_path / "out.jsonl", model=str(tiny_model_dir), analyzer_options={"window": 0.1})
    assert caught.value.code == code
    client, key = service
    r = submit(client, key, files["clip"].read_bytes(), options=json.dumps({"window": 0.1}))
    assert _service_code(r, code) == code


def test_unreadable_media(tiny_model_dir, files, service):
    code = "invalid_media"
    r = CliRunner().invoke(app, ["analyze", str(files["not_media"]), "--model", str(tiny_model_dir)])
    assert r.exit_code == exit_status(code) and r.output.startswith(f"error: {files['not_media']}: ")
    ok, line = analyze_task(make_analyzer(str(tiny_model_dir), {}), {"input": "x", "path": str(files["not_media"])})
    assert not ok and json.loads(line)["error"]["code"] == code
    client, key = service
    assert _service_code(submit(client, key, files["not_media"].read_bytes()), code) == code


def test_unreadable_separate_audio(tiny_model_dir, files, service):
    code = "invalid_audio"
    r = CliRunner().invoke(app, ["analyze", str(files["clip"]), "--audio", str(files["not_media"]),
                                 "--model", str(tiny_model_dir)])
    assert r.exit_code == exit_status(code) and r.output.startswith(f"error: {files['not_media']}: ")
    task = {"input": "x", "path": str(files["clip"]), "audio": str(files["not_media"])}
    ok, line = analyze_task(make_analyzer(str(tiny_model_dir), {}), task)
    assert not ok and json.loads(line)["error"]["code"] == code
    client, key = service
    r = submit(client, key, files["clip"].read_bytes(), audio=("notes.mp4", files["not_media"].read_bytes(), "video/mp4"))
    assert _service_code(r, code) == code


def test_unreadable_transcript(tiny_model_dir, files, service):
    code = "invalid_transcript"
    r = CliRunner().invoke(app, ["analyze", str(files["clip"]), "--transcript", str(files["transcript"]),
                                 "--model", str(tiny_model_dir)])
    assert r.exit_code == exit_status(code) and r.output.startswith(f"error: {files['transcript']}: ")
    task = {"input": "x", "path": str(files["clip"]), "transcript": str(files["transcript"])}
    ok, line = analyze_task(make_analyzer(str(tiny_model_dir), {}), task)
    assert not ok and json.loads(line)["error"]["code"] == code
    client, key = service
    r = submit(client, key, files["clip"].read_bytes(),
               transcript=("bad.srt", files["transcript"].read_bytes(), "text/plain"))
    assert _service_code(r, code) == code


def test_the_table_gives_usage_errors_exit_2_and_client_errors_4xx():
    assert errors.EXIT_USAGE == 2
    for code in ("invalid_options", "invalid_media", "invalid_audio", "invalid_transcript", "too_many_windows"):
        assert exit_status(code) == 2 and 400 <= http_status(code) < 500


def test_a_server_fault_reaches_the_client_as_its_kind_not_its_internals(caplog):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from emofusion.errors import StorageError
    from emofusion.serve.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/fault")
    def fault():
        raise StorageError("no object 'uploads/42/media' in s3://private-bucket/prefix")

    with caplog.at_level("ERROR", logger="emofusion.serve"):
        r = TestClient(app).get("/fault")
    assert r.status_code == http_status("storage_unavailable") == 503
    assert r.json()["error"] == {"code": "storage_unavailable", "message": ERROR_CODES["storage_unavailable"].meaning}
    assert "private-bucket" in caplog.text  # the operator sees it; the client does not


def test_the_onnx_backend_never_looks_a_missing_folder_up_on_the_hub(monkeypatch):
    import huggingface_hub

    from emofusion.errors import ModelLoadError
    from emofusion.models import load_model

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("went to the hub"))
    with pytest.raises(ModelLoadError, match="not an ONNX export folder"):
        load_model("exports/missing", "onnx")
