"""`emofusion batch`: local workers and Ray Data give the same lines as Analyzer.analyze();
resume, --retry-failed, per-input failures, manifests, and usage errors (exit 2, one line)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import assert_contract_v1
from media_factory import make_clip, make_face_image
from support import assert_no_crash, assert_one_error_line, free_port, invoke_cli
from typer.testing import Result

from emofusion.batch import (BatchItem, RayConnectError, check_ray_address, default_workers, least_used_core, read_manifest,
                             run_batch, usable_cores, use_device)
from emofusion.analysis import Analyzer

SRT = "1\n00:00:00,500 --> 00:00:01,500\ni am so happy today\n"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch_media")
    face = make_face_image(80)
    files = {
        "a": make_clip(d / "a.mp4", duration=2.0, width=192, height=144, face=face, modulate=True),
        "b": make_clip(d / "b.mp4", duration=1.5, width=192, height=144, face=face, modulate=True, tone_hz=330.0),
        "speech": make_clip(d / "speech.wav", container="wav", duration=2.0, modulate=True, tone_hz=180.0),
        "mute": make_clip(d / "mute.mp4", duration=1.5, width=192, height=144, face=face, with_audio=False),
        "corrupt": d / "corrupt.mp4",
        "notes": d / "notes.txt",
        "srt": d / "subs.srt",
        "missing": d / "missing.mp4",
        "folder": d / "a_folder",
    }
    files["corrupt"].write_bytes(os.urandom(32 * 1024))
    files["notes"].write_text("Dear diary,\nthis is not a video.\n" * 40)
    files["srt"].write_text(SRT)
    files["folder"].mkdir()
    return {k: Path(v) for k, v in files.items()}


@pytest.fixture(scope="module")
def analyzer(tiny_model_dir):
    return Analyzer(str(tiny_model_dir))


def expected(analyzer, path, **kw) -> dict:
    """What Analyzer.analyze() gives, as it reads back from JSON."""
    return json.loads(json.dumps(analyzer.analyze(str(path), **kw).to_dict()))


def invoke(*args: object) -> Result:
    """`emofusion batch ARGS...`, which must not crash (whatever its exit code)."""
    result = invoke_cli("batch", *args)
    assert_no_crash(result)
    return result


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def by_input(path: Path) -> dict[str, dict]:
    """The last line per input wins."""
    return {row["input"]: row for row in lines(path)}


def result_of(row: dict) -> dict:
    assert "error" not in row, row
    rest = {k: v for k, v in row.items() if k != "input"}
    assert_contract_v1(rest)
    return rest


def summary_line(result) -> str:
    done = [ln for ln in result.stderr.splitlines() if ln.startswith("done: ")]
    assert len(done) == 1, result.stderr
    return done[0]


# ------------------------------------------------------------------------ local engine


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])  # 2: a worker pool
def test_local_workers_match_direct_analysis(media, tiny_model_dir, analyzer, tmp_path, workers):
    out = tmp_path / "results.jsonl"
    inputs = [media["a"], media["b"], media["speech"]]
    result = invoke(*inputs, "--out", out, "--model", tiny_model_dir, "--workers", workers)
    assert result.exit_code == 0, result.output
    # not a terminal: no progress bar, only the summary line (a trained model: no warning)
    assert result.stderr.splitlines() == [summary_line(result)]
    assert summary_line(result).startswith("done: 3 analysed, 0 failed, 0 skipped (already in the output) in ")
    assert result.stdout == ""
    rows = lines(out)
    assert sorted(r["input"] for r in rows) == sorted(map(str, inputs))
    for row in rows:
        assert result_of(row) == expected(analyzer, row["input"])


def test_workers_default_to_one_per_core_each_on_its_own_core():
    cores = usable_cores()
    assert default_workers() == len(cores) >= 1
    # spread over the cores, one each before any core takes a second; a replaced worker's core is reused
    assert least_used_core([0, 1], []) == 0
    assert least_used_core([0, 1], [0]) == 1
    assert least_used_core([0, 1], [0, 1]) == 0
    assert least_used_core([2, 5], [5]) == 2
    assert least_used_core([0, 1, 2], [0, 2]) == 1
    # a worker process really runs on the core it was given (Linux)
    if hasattr(os, "sched_setaffinity"):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            assert pool.apply(_affinity_after_pinning, (cores[-1],)) == [cores[-1]]


def _affinity_after_pinning(core: int) -> list[int]:
    from emofusion.batch import _pin_to_core

    _pin_to_core(core)
    return sorted(os.sched_getaffinity(0))


def test_api_options_progress_and_duplicates(media, tiny_model_dir, tmp_path, caplog):
    out = tmp_path / "r.jsonl"
    calls = []
    opts = {"window": 1.0, "hop": 0.5, "modalities": ["voice"]}
    items = [str(media["a"]), BatchItem("with text", str(media["b"]), text="i am so happy"), str(media["a"])]
    with caplog.at_level("WARNING", logger="emofusion.batch"):
        summary = run_batch(items, out, model=tiny_model_dir, analyzer_options=opts,
                            progress=lambda *a: calls.append(a))
    assert f"duplicate input {media['a']} (analysed once)" in caplog.text
    assert (summary.analysed, summary.failed, summary.skipped, summary.duplicates) == (2, 0, 0, 1)
    assert summary.exit_code == 0 and summary.total == 2
    assert calls[0] == (0, 0, 2) and calls[-1] == (2, 0, 2)
    direct = Analyzer(str(tiny_model_dir), **opts)
    rows = by_input(out)
    assert result_of(rows[str(media["a"])]) == expected(direct, media["a"])
    assert result_of(rows["with text"]) == expected(direct, media["b"], text="i am so happy")
    assert rows["with text"]["options"]["modalities"] == ["voice"]


def test_model_on_device_wrapper_keeps_results(media, tiny_model_dir, analyzer):
    """The wrapper Ray actors use to put the nets on a GPU, exercised on the CPU."""
    moved = Analyzer(str(tiny_model_dir))
    use_device(moved.model, "cpu")
    assert expected(moved, media["a"], text="i am so happy") == expected(analyzer, media["a"], text="i am so happy")


@pytest.mark.slow  # a pool of 2 worker processes
def test_onnx_export_folder_as_model(media, tiny_model_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from emofusion.export import export_onnx
    from emofusion.models import load_model

    folder = tmp_path / "tiny-onnx"
    export_onnx(tiny_model_dir, folder)
    out = tmp_path / "results.jsonl"
    result = invoke(media["a"], media["speech"], "--out", out, "--model", folder, "--workers", 2)
    assert result.exit_code == 0, result.output
    direct = Analyzer(load_model(folder))
    rows = by_input(out)
    for clip in ("a", "speech"):
        assert result_of(rows[str(media[clip])]) == expected(direct, media[clip])
    assert_usage_error(invoke(media["a"], "--out", tmp_path / "other.jsonl", "--model", folder, "--backend", "torch"),
                       str(folder), "onnx")


@pytest.mark.slow  # a pool of 2 worker processes
def test_failures_become_error_lines_and_the_run_goes_on(media, tiny_model_dir, analyzer, tmp_path):
    out = tmp_path / "results.jsonl"
    bad = [media["missing"], media["corrupt"], media["notes"], media["folder"]]
    result = invoke(*bad, media["a"], "--out", out, "--model", tiny_model_dir, "--workers", 2)
    assert result.exit_code == 1, result.output
    assert summary_line(result).startswith("done: 1 analysed, 4 failed, 0 skipped ")
    rows = by_input(out)
    assert len(lines(out)) == 5
    assert result_of(rows[str(media["a"])]) == expected(analyzer, media["a"])
    errors = {Path(k).name: v["error"] for k, v in rows.items() if "error" in v}
    assert set(rows[str(media["missing"])]) == {"input", "error"}
    assert errors["missing.mp4"] == {"code": "not_found", "message": "no such file"}
    for name in ("corrupt.mp4", "notes.txt", "a_folder"):
        assert errors[name]["code"] == "invalid_media", errors[name]
        assert errors[name]["message"] and "\n" not in errors[name]["message"]


@pytest.mark.slow  # worker processes, killed and replaced
def test_a_worker_that_dies_costs_only_its_input(media, tiny_model_dir, analyzer, tmp_path):
    import multiprocessing
    import signal

    clip = make_clip(tmp_path / "long.mp4", duration=4.0, width=192, height=144, face=make_face_image(80), modulate=True)
    clips = [clip]
    for k in range(5):
        clips.append(tmp_path / f"copy{k}.mp4")
        shutil.copy(clip, clips[-1])
    killed = []

    def kill_the_workers(finished, failed, total):
        # at the first result, the worker that sent it is analysing its next input
        if finished == 1 and not killed:
            for p in multiprocessing.active_children():
                if p.name == "emofusion-batch-worker":
                    os.kill(p.pid, signal.SIGKILL)
                    killed.append(p.pid)

    out = tmp_path / "results.jsonl"
    summary = run_batch(clips, out, workers=2, model=tiny_model_dir, progress=kill_the_workers)
    assert len(killed) == 2
    rows = lines(out)
    assert sorted(r["input"] for r in rows) == sorted(map(str, clips))  # each input once
    crashed = [r for r in rows if "error" in r]
    # each killed worker loses the input it was analysing (none if it was still starting)
    assert 1 <= len(crashed) <= 2 and summary.failed == len(crashed) and summary.analysed == 6 - len(crashed)
    for r in crashed:
        assert r["error"]["code"] == "worker_crashed" and "died while analysing" in r["error"]["message"]
    want = expected(analyzer, clip)
    assert all(result_of(r) == want for r in rows if "error" not in r)
    assert not [p for p in multiprocessing.active_children() if p.name == "emofusion-batch-worker"]


def test_resume_skips_done_inputs_and_retry_failed_retries(media, tiny_model_dir, analyzer, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    clip, later = work / "clip.mp4", work / "later.mp4"
    shutil.copy(media["a"], clip)
    out = tmp_path / "results.jsonl"
    args = [clip, later, "--out", out, "--model", tiny_model_dir]

    first = invoke(*args)
    assert first.exit_code == 1
    assert summary_line(first).startswith("done: 1 analysed, 1 failed, 0 skipped ")
    # the failed inputs are named after the summary line
    assert first.stderr.splitlines()[-2:] == [f"failed (1; the error is in each one's line in {out}):",
                                              f"  {later}"], first.stderr
    assert by_input(out)[str(later)]["error"]["code"] == "not_found"
    size, mtime = out.stat().st_size, out.stat().st_mtime_ns

    # again: nothing analysed, nothing written; the earlier failure still sets the exit status
    again = invoke(*args)
    assert again.exit_code == 1
    assert summary_line(again).startswith("done: 0 analysed, 0 failed, 2 skipped (already in the output) in ")
    assert "1 of the skipped have error lines (--retry-failed analyses them again)" in summary_line(again)
    assert again.stderr.splitlines()[-1] == f"  {later}"  # failed in an earlier run: still named
    assert (out.stat().st_size, out.stat().st_mtime_ns) == (size, mtime)

    # the missing file appears: --retry-failed analyses it; the done input is not repeated
    shutil.copy(media["b"], later)
    retry = invoke(*args, "--retry-failed")
    assert retry.exit_code == 0, retry.output
    assert summary_line(retry).startswith("done: 1 analysed, 0 failed, 1 skipped ")
    assert "failed (" not in retry.stderr
    rows = lines(out)
    assert [r["input"] for r in rows] == [str(clip), str(later)]  # the error line was replaced: one line per input
    assert result_of(rows[1]) == expected(analyzer, later)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []  # no temporary file left

    # a run killed mid-line leaves a partial line: ignored, and the next line starts afresh
    with open(out, "a") as f:
        f.write('{"input": "' + str(media["speech"]) + '", "schema_ver')
    resumed = invoke(clip, later, media["speech"], "--out", out, "--model", tiny_model_dir)
    assert resumed.exit_code == 0, resumed.output
    assert summary_line(resumed).startswith("done: 1 analysed, 0 failed, 2 skipped ")
    raw = out.read_text().splitlines()
    assert raw[-2].endswith('"schema_ver')
    last = json.loads(raw[-1])
    assert last["input"] == str(media["speech"]) and result_of(last) == expected(analyzer, media["speech"])


# ------------------------------------------------------------------------ manifests


@pytest.fixture
def dataset(media, tmp_path):
    """A folder with clips in it and below it, and a transcript, for manifests with relative paths."""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    shutil.copy(media["a"], root / "a.mp4")
    shutil.copy(media["b"], root / "sub" / "b.mp4")
    shutil.copy(media["mute"], root / "mute.mp4")
    shutil.copy(media["speech"], root / "sub" / "speech.wav")
    shutil.copy(media["srt"], root / "sub" / "subs.srt")
    return root


@pytest.mark.slow  # a pool of 2 worker processes
def test_manifest_csv(dataset, tiny_model_dir, analyzer, tmp_path):
    manifest = dataset / "list.csv"
    manifest.write_text(
        "path,audio,transcript,text\n"
        "a.mp4,,,\n"                                  # 2
        "sub/b.mp4,,,i am so happy\n"                 # 3
        "mute.mp4,sub/speech.wav,sub/subs.srt,\n"     # 4
        ",,,no path here\n"                           # 5: a bad row
        "a.mp4,,,\n"                                  # 6: a duplicate
        "nowhere.mp4,,,\n"                            # 7: a missing file
    )
    out = tmp_path / "results.jsonl"
    result = invoke("--manifest", manifest, "--out", out, "--model", tiny_model_dir, "--workers", 2)
    assert result.exit_code == 1, result.output
    assert "warning: duplicate input a.mp4 (analysed once)" in result.stderr.splitlines()
    assert summary_line(result).startswith("done: 3 analysed, 2 failed, 0 skipped ")
    rows = by_input(out)
    assert len(lines(out)) == 5
    assert set(rows) == {"a.mp4", "sub/b.mp4", "mute.mp4", f"{manifest}:5", "nowhere.mp4"}
    assert result_of(rows["a.mp4"]) == expected(analyzer, dataset / "a.mp4")
    assert result_of(rows["sub/b.mp4"]) == expected(analyzer, dataset / "sub" / "b.mp4", text="i am so happy")
    mute = result_of(rows["mute.mp4"])
    assert mute == expected(analyzer, dataset / "mute.mp4", audio=str(dataset / "sub" / "speech.wav"),
                            transcript=dataset / "sub" / "subs.srt")
    assert mute["media"]["external_audio"] is True and mute["media"]["has_transcript"] is True
    assert rows[f"{manifest}:5"]["error"]["code"] == "invalid_manifest_row"
    assert rows["nowhere.mp4"]["error"]["code"] == "not_found"


def test_manifest_jsonl(dataset, tiny_model_dir, analyzer, tmp_path):
    manifest = dataset / "list.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"path": "a.mp4"}),                                         # 1
        '{"path": "sub/b.mp4", "text": ',                                      # 2: not JSON
        json.dumps({"audio": "sub/speech.wav"}),                               # 3: no path
        json.dumps(["a.mp4"]),                                                 # 4: not an object
        "",                                                                    # 5: blank, skipped
        json.dumps({"path": "sub/b.mp4", "text": "i am so happy", "extra": 1}),  # 6
        json.dumps({"path": 7}),                                               # 7: not a string
        json.dumps({"path": "a.mp4"}),                                         # 8: a duplicate
        json.dumps({"path": "gone.wav"}),                                      # 9: missing
    ]) + "\n")
    items = read_manifest(manifest)
    assert [i.input for i in items][:2] == ["a.mp4", f"{manifest}:2"]
    out = tmp_path / "results.jsonl"
    result = invoke("--manifest", manifest, "--out", out, "--model", tiny_model_dir)
    assert result.exit_code == 1, result.output
    assert "warning: duplicate input a.mp4 (analysed once)" in result.stderr.splitlines()
    assert summary_line(result).startswith("done: 2 analysed, 5 failed, 0 skipped ")
    rows = by_input(out)
    assert result_of(rows["a.mp4"]) == expected(analyzer, dataset / "a.mp4")
    assert result_of(rows["sub/b.mp4"]) == expected(analyzer, dataset / "sub" / "b.mp4", text="i am so happy")
    for n in (2, 3, 4, 7):
        error = rows[f"{manifest}:{n}"]["error"]
        assert error["code"] == "invalid_manifest_row" and error["message"], (n, error)
    assert "not valid JSON" in rows[f"{manifest}:2"]["error"]["message"]
    assert rows["gone.wav"]["error"]["code"] == "not_found"
    assert f"{manifest}:5" not in rows


# ------------------------------------------------------------------------ usage errors


def assert_usage_error(result: Result, subject: str, *words: str) -> str:
    """One `error: SUBJECT: ...` line (exit 2, nothing on stdout) that holds each of `words`."""
    line = assert_one_error_line(result, subject)
    for word in words:
        assert word in line, line
    return line


def test_usage_errors(media, tiny_model_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    clip = media["a"]
    m = ["--model", tiny_model_dir]
    assert_usage_error(invoke("--out", out, *m), "batch", "--manifest")
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"path\n{clip}\n")
    assert_usage_error(invoke(clip, "--manifest", manifest, "--out", out, *m), "--manifest", "not both")
    assert_usage_error(invoke(clip, "--out", tmp_path / "nope" / "r.jsonl", *m), "--out", "folder", "does not exist")
    assert_usage_error(invoke(clip, "--out", tmp_path, *m), "--out", "folder")
    assert_usage_error(invoke(clip, "--out", out, "--engine", "spark", *m), "--engine", "'spark'", "local or ray")
    assert_usage_error(invoke(clip, "--out", out, "--workers", "0", *m), "--workers", "at least 1")
    assert_usage_error(invoke(clip, "--out", out, "--ray-address", "127.0.0.1:6379", *m), "--ray-address", "--engine ray")
    assert_usage_error(invoke(clip, "--out", out, "--window", "0", *m), "--window")
    assert_usage_error(invoke(clip, "--out", out, "--modalities", "face,smell", *m), "--modalities", "smell")
    assert_usage_error(invoke(clip, "--out", out, "--model", tmp_path / "no_model"), str(tmp_path / "no_model"))
    assert not out.exists()  # nothing written by a rejected run


def test_one_run_per_output_file(media, tiny_model_dir, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "r.jsonl"
    with open(out, "a") as held:  # another run holds the output
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert_usage_error(invoke(media["a"], "--out", out, "--model", tiny_model_dir), "--out", "another batch run")
    assert out.read_text() == ""


def test_manifest_usage_errors(tiny_model_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    m = ["--out", out, "--model", tiny_model_dir]
    assert_usage_error(invoke("--manifest", tmp_path / "none.csv", *m), "--manifest", "no such file")
    no_path = tmp_path / "cols.csv"
    no_path.write_text("file,text\na.mp4,hello\n")
    assert_usage_error(invoke("--manifest", no_path, *m), "--manifest", "no 'path' column", "'file'")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert_usage_error(invoke("--manifest", empty, *m), "--manifest", "empty")
    binary = tmp_path / "blob.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 64)
    assert_usage_error(invoke("--manifest", binary, *m), "--manifest", "UTF-8")
    assert not out.exists()


def test_ray_not_installed(media, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    line = assert_usage_error(invoke(media["a"], "--out", tmp_path / "r.jsonl", "--engine", "ray",
                                     "--model", tiny_model_dir), "--engine")
    assert line == "error: --engine: ray is not installed (pip install 'emofusion[ray]')"


# ------------------------------------------------------------------------ Ray engine


def cli_env() -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


@pytest.mark.slow  # the CLI in a subprocess, importing Ray
def test_dead_ray_address_fails_in_bounded_time(media, tiny_model_dir, tmp_path):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    proc = subprocess.run(
        [sys.executable, "-m", "emofusion.cli", "batch", str(media["a"]), "--out", str(tmp_path / "r.jsonl"),
         "--engine", "ray", "--ray-address", address, "--model", str(tiny_model_dir)],
        capture_output=True, text=True, timeout=120, env=cli_env(),
    )
    assert proc.returncode == 2, proc.stderr
    # refused by the TCP check before ray.init (which would retry a dead address for minutes) is tried
    assert proc.stderr.splitlines() == [
        f"error: --ray-address: cannot connect to the Ray cluster at {address}: Connection refused"], proc.stderr
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.slow  # waits out the 8 s Ray probe
def test_ray_address_that_is_not_ray_fails_in_bounded_time():
    pytest.importorskip("ray")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accept connections and never answer
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        with pytest.raises(RayConnectError) as info:
            check_ray_address(address, timeout=8)
    finally:
        stop.set()
        thread.join()
        for c in accepted:
            c.close()
        server.close()
    # the probe driver was given up at the timeout: the bound comes from check_ray_address itself
    assert str(info.value) == (f"cannot connect to the Ray cluster at {address}: something listens on {address} "
                               "but no Ray cluster answered within 8 s")


def test_ray_stages_split_decoding_from_the_nets(media, tiny_model_dir, analyzer):
    """The two Ray Data callables, called as Ray calls them (column batches): the decode stage
    hands each input's face crops to the model stage, and the lines equal one direct analysis."""
    import pickle

    import numpy as np

    from emofusion.batch import RayAnalyzer, RayFaceStage

    tasks = [BatchItem(str(media[k]), str(media[k])).absolute().task() for k in ("a", "speech", "missing", "corrupt")]
    decode = RayFaceStage(str(tiny_model_dir), {})
    staged = decode({"task": np.array([json.dumps(t) for t in tasks], dtype=object)})
    faces = list(staged["faces"])
    observed = pickle.loads(faces[0])
    assert observed and any(seen for _, seen, _ in observed)  # the video's faces, cropped there
    assert pickle.loads(faces[1]) == []  # audio only: nothing to decode
    assert faces[2] == b"" and faces[3] == b""  # left to the model stage, which reports the error
    out = RayAnalyzer(str(tiny_model_dir), {})(staged)
    assert list(out["ok"]) == [True, True, False, False]
    assert result_of(json.loads(out["line"][0])) == expected(analyzer, media["a"])
    assert result_of(json.loads(out["line"][1])) == expected(analyzer, media["speech"])
    assert json.loads(out["line"][2])["error"]["code"] == "not_found"
    assert json.loads(out["line"][3])["error"]["code"] == "invalid_media"


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, object_store_memory=256 * 1024 * 1024)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow  # a local Ray instance
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own
def test_ray_engine_matches_local(ray_local, media, tiny_model_dir, analyzer, tmp_path):
    out = tmp_path / "results.jsonl"
    result = invoke(media["a"], media["b"], media["missing"], "--out", out, "--model", tiny_model_dir,
                    "--engine", "ray", "--workers", 2)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [summary_line(result), f"failed (1; the error is in each one's line in {out}):",
                                          f"  {media['missing']}"], result.stderr
    assert summary_line(result).startswith("done: 2 analysed, 1 failed, 0 skipped ")
    rows = by_input(out)
    assert len(lines(out)) == 3
    for clip in ("a", "b"):
        assert result_of(rows[str(media[clip])]) == expected(analyzer, media[clip])
    assert rows[str(media["missing"])]["error"] == {"code": "not_found", "message": "no such file"}
    # resume on Ray too: nothing left to do
    again = invoke(media["a"], media["b"], "--out", out, "--model", tiny_model_dir, "--engine", "ray")
    assert again.exit_code == 0 and summary_line(again).startswith("done: 0 analysed, 0 failed, 2 skipped ")


@pytest.mark.slow  # a local Ray instance and a CLI subprocess
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own
def test_ray_address_of_a_live_cluster(ray_local, media, tiny_model_dir, analyzer, tmp_path):
    address = ray_local.get_runtime_context().gcs_address
    out = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "emofusion.cli", "batch", str(media["speech"]), "--out", str(out),
         "--engine", "ray", "--ray-address", address, "--model", str(tiny_model_dir)],
        capture_output=True, text=True, timeout=300, env=cli_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("done: 1 analysed, 0 failed, 0 skipped "), proc.stderr
    assert result_of(by_input(out)[str(media["speech"])]) == expected(analyzer, media["speech"])


# ------------------------------------------------------- rewriting the output for --retry-failed


def test_drop_rewrites_the_output_atomically_and_keeps_it_locked(tmp_path):
    from emofusion.batch.output import LockedOutput, error_line
    from emofusion.errors import BatchError

    out = tmp_path / "results.jsonl"
    out.write_text("\n".join([json.dumps({"input": "a", "schema_version": "1.0"}), error_line("b", "not_found", "x"),
                              error_line("c", "not_found", "x"), error_line("b", "media_error", "y")]) + "\n"
                   + '{"input": "d", "cut')  # a line cut short by a kill
    out.chmod(0o640)
    output = LockedOutput(out)
    try:
        assert output.drop({"b"}) == 2
        output.write(json.dumps({"input": "b", "schema_version": "1.0"}))
        assert [r.get("input") for r in map(json.loads, out.read_text().splitlines()[:2])] == ["a", "c"]
        assert out.read_text().splitlines()[2:] == ['{"input": "d", "cut', '{"input": "b", "schema_version": "1.0"}']
        assert out.stat().st_mode & 0o777 == 0o640
        assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]
        with pytest.raises(BatchError, match="another batch run"):  # the new file is locked too
            LockedOutput(out)
    finally:
        output.close()
    LockedOutput(out).close()  # and free once the run ends


def test_a_run_that_opened_the_file_before_a_rewrite_locks_the_new_one(tmp_path, monkeypatch):
    from emofusion.batch import output as output_module

    out = tmp_path / "results.jsonl"
    out.write_text(output_module.error_line("b", "not_found", "x") + "\n")
    real_lock, replaced = output_module._lock, []

    def lock_after_a_rewrite(file):  # another run replaces the file between our open and our lock
        if not replaced:
            replaced.append(1)
            tmp = tmp_path / "new.jsonl"
            tmp.write_text("")
            os.replace(tmp, out)
        return real_lock(file)

    monkeypatch.setattr(output_module, "_lock", lock_after_a_rewrite)
    locked = output_module.LockedOutput(out)
    try:
        assert os.path.samestat(os.fstat(locked.file.fileno()), os.stat(out))
    finally:
        locked.close()


def test_failed_inputs_are_named_first_ten_then_counted(tmp_path):
    from emofusion.cli.batch import print_failed

    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        print_failed([f"clip{i}.mp4" for i in range(12)], tmp_path / "r.jsonl")
        print_failed([], tmp_path / "r.jsonl")
    got = err.getvalue().splitlines()
    assert got[0] == f"failed (12; the error is in each one's line in {tmp_path / 'r.jsonl'}):"
    assert got[1:] == [f"  clip{i}.mp4" for i in range(10)] + ["  ... and 2 more"]
