"""`emofusion analyze`: options, outputs (--json, --plot), warnings, and bad input (exit 2, one line)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_contract_v1
from media_factory import make_clip, make_face_image
from support import assert_no_crash, assert_one_error_line, invoke_cli
from typer.testing import Result


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_media")
    clip = make_clip(d / "clip.mp4", duration=3.0, face=make_face_image(90), modulate=True)
    mute = make_clip(d / "mute.mp4", duration=3.0, face=make_face_image(90), with_audio=False)
    speech = make_clip(d / "speech.wav", container="wav", duration=3.0, modulate=True)
    data = clip.read_bytes()
    files = {
        "clip": clip,
        "mute": mute,
        "speech": speech,
        "zero": d / "zero.mp4",
        "random": d / "random.mp4",
        "truncated": d / "truncated.mp4",
        "text": d / "notes.txt",
        "missing": d / "missing.mp4",
        "docx": d / "transcript.docx",
        "srt": d / "subs.srt",
    }
    files["zero"].write_bytes(b"")
    files["random"].write_bytes(os.urandom(64 * 1024))
    files["truncated"].write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: lost
    files["text"].write_text("Dear diary,\nthis is not a video.\n" * 40)
    files["docx"].write_bytes(b"PK\x03\x04" + os.urandom(512))
    files["srt"].write_text("1\n00:00:02,500 --> 00:00:03,000\nthis is terrible\n")
    return files


def run(*args: object) -> Result:
    """`emofusion analyze ARGS...`."""
    return invoke_cli("analyze", *args)


# ---------------------------------------------------------------------------- outputs


def test_json_to_stdout(media, tiny_model_dir):
    result = run(media["clip"], "--model", tiny_model_dir, "--json", "-", "--text", "i am so happy")
    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout is only the JSON
    assert_contract_v1(data)
    assert result.stderr == ""  # a trained model: no warning
    assert [(s["start"], s["end"]) for s in data["segments"]] == [(0.0, 2.0), (1.0, 3.0)]
    assert all(s["face"] and s["voice"] and s["text"] for s in data["segments"])
    assert data["model"]["trained"] is True


def test_json_file_plot_and_table(media, tiny_model_dir, tmp_path):
    out, png = tmp_path / "out.json", tmp_path / "timeline.png"
    result = run(media["clip"], "--model", tiny_model_dir, "--json", out, "--plot", png, "--transcript", media["srt"])
    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert_contract_v1(data)
    assert [s["text"]["text"] if s["text"] else None for s in data["segments"]] == [None, "this is terrible"]
    raw = png.read_bytes()
    assert raw[:8] == PNG_SIGNATURE and len(raw) > 20_000
    from PIL import Image

    width, height = Image.open(png).size
    assert width == 1100 and height > 850  # the panels and, below them, the faces read from the input
    # without --json -, a table and a summary line go to stdout
    assert "summary:" in result.stdout and "fused" in result.stdout
    assert data["summary"]["top"] in result.stdout


def test_window_hop_and_modalities(media, tiny_model_dir):
    result = run(media["clip"], "--model", tiny_model_dir, "--json", "-", "--window", "1", "--hop", "0.5",
                 "--modalities", "voice")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(s["start"], s["end"]) for s in data["segments"]] == [(k * 0.5, k * 0.5 + 1.0) for k in range(5)]
    assert data["options"]["modalities"] == ["voice"]
    assert all(s["face"] is None and s["voice"] is not None for s in data["segments"])


def test_separate_audio(media, tiny_model_dir):
    result = run(media["mute"], "--model", tiny_model_dir, "--json", "-", "--audio", media["speech"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["media"]["has_audio"] is True
    assert all(s["voice"] is not None and s["face"] is not None for s in data["segments"])
    # without it, the mute video gives face only
    alone = json.loads(run(media["mute"], "--model", tiny_model_dir, "--json", "-").stdout)
    assert alone["media"]["has_audio"] is False and all(s["voice"] is None for s in alone["segments"])


def test_untrained_model_warns_and_says_so(media, untrained_model_dir):
    result = run(media["clip"], "--model", untrained_model_dir, "--json", "-")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: ") and "untrained" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    data = json.loads(result.stdout)
    assert data["model"]["trained"] is False
    assert data["model"]["parts"] == {"face": False, "voice": False, "text": False}
    table = run(media["clip"], "--model", untrained_model_dir)
    assert "UNTRAINED" in table.stdout


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kind", ["zero", "random", "truncated", "text", "missing"])
def test_bad_input_file(media, tiny_model_dir, kind):
    line = assert_one_error_line(run(media[kind], "--model", tiny_model_dir, "--json", "-"), media[kind])
    if kind == "missing":
        assert line.endswith("no such file")
    if kind == "zero":
        assert "empty" in line


def test_input_is_a_directory(media, tiny_model_dir):
    folder = media["clip"].parent
    assert "directory" in assert_one_error_line(run(folder, "--model", tiny_model_dir), folder)


def test_unsupported_transcript_format(media, tiny_model_dir):
    line = assert_one_error_line(run(media["clip"], "--model", tiny_model_dir, "--transcript", media["docx"]),
                                 media["docx"])
    assert "unsupported transcript format" in line


def test_missing_transcript(media, tiny_model_dir):
    missing = media["clip"].parent / "missing.srt"
    assert assert_one_error_line(run(media["clip"], "--model", tiny_model_dir, "--transcript", missing),
                                 missing).endswith("no such file")


def test_transcript_and_text_together(media, tiny_model_dir):
    assert "not both" in assert_one_error_line(
        run(media["clip"], "--model", tiny_model_dir, "--transcript", media["srt"], "--text", "hi"), media["clip"]
    )


def test_unknown_modality(media, tiny_model_dir):
    line = assert_one_error_line(run(media["clip"], "--model", tiny_model_dir, "--modalities", "face,smell"),
                                 media["clip"])
    assert "unknown modality 'smell'" in line


def test_transcribe_on_without_a_model_says_how_to_get_one(media, tiny_model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("EMOFUSION_ASR_MODEL", str(tmp_path / "no-such-model"))
    line = assert_one_error_line(run(media["clip"], "--model", tiny_model_dir, "--transcribe", "on"), media["clip"])
    assert "no-such-model does not exist" in line


def test_missing_yunet_model_file_is_one_error_line(media, tiny_model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("EMOFUSION_YUNET", str(tmp_path / "face_detection_yunet.onnx"))
    line = assert_one_error_line(run(media["clip"], "--model", tiny_model_dir), media["clip"])
    assert "YuNet model file" in line and "not found" in line


@pytest.mark.parametrize("option", [["--window", "0"], ["--hop", "0"], ["--window", "-1"], ["--window", "61"],
                                    ["--hop", "0.01"], ["--fps", "100"], ["--window", "inf"], ["--max-faces", "0"],
                                    ["--max-faces", "21"], ["--faces", "some"], ["--face-detector", "mtcnn"]])
def test_window_hop_or_fps_out_of_bounds(media, tiny_model_dir, option):
    line = assert_one_error_line(run(media["clip"], "--model", tiny_model_dir, *option), media["clip"])
    name = {"--fps": "frames_per_second"}.get(option[0], option[0][2:].replace("-", "_"))
    assert f"{name} must be" in line


def test_bad_input_with_an_untrained_model_is_still_one_line(media, untrained_model_dir):
    # the untrained-model warning must not precede an input error
    assert_one_error_line(run(media["random"], "--model", untrained_model_dir), media["random"])
    assert_one_error_line(run(media["clip"], "--model", untrained_model_dir, "--window", "0"), media["clip"])


def test_bad_audio_file_is_named(media, tiny_model_dir):
    line = assert_one_error_line(run(media["mute"], "--model", tiny_model_dir, "--audio", media["random"]),
                                 media["random"])
    assert "not a media file" in line
    missing = media["clip"].parent / "nope.wav"
    assert_one_error_line(run(media["mute"], "--model", tiny_model_dir, "--audio", missing), missing)


def test_unknown_model(media, tmp_path):
    missing = tmp_path / "no-model-here"
    line = assert_one_error_line(run(media["clip"], "--model", missing), missing)
    assert "bundled" in line


def test_json_folder_must_exist(media, tiny_model_dir, tmp_path):
    target = tmp_path / "nope" / "out.json"
    assert_one_error_line(run(media["clip"], "--model", tiny_model_dir, "--json", target), target)


# ----------------------------------------------------- answered at once, shown while working

# runs the CLI once per argv in one process; prints, per run, the exit status, stderr and
# whether torch was imported by then
_NO_TORCH_PROBE = """
import contextlib, io, json, sys
from emofusion.cli import app
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            app(argv, prog_name="emofusion")
        except SystemExit as exc:
            code = exc.code
    print(json.dumps([code, err.getvalue(), "torch" in sys.modules]))
"""


def test_bad_arguments_are_answered_before_torch_is_imported(media, tmp_path):
    missing = "/nonexistent.mp4"
    runs = [
        ["analyze", missing],
        ["analyze", str(media["clip"].parent)],
        ["analyze", str(media["clip"]), "--audio", str(tmp_path / "nope.wav")],
        ["analyze", str(media["clip"]), "--transcript", str(tmp_path / "nope.srt")],
        ["analyze", str(media["clip"]), "--json", str(tmp_path / "no-folder" / "out.json")],
    ]
    out = subprocess.run([sys.executable, "-c", _NO_TORCH_PROBE, json.dumps(runs)], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [code for code, _, _ in results] == [2] * len(runs)
    assert [torch for _, _, torch in results] == [False] * len(runs)  # no model was loaded to say so
    assert [err.count("\n") for _, err, _ in results] == [1] * len(runs)
    assert results[0][1] == f"error: {missing}: no such file\n"
    assert "is a directory" in results[1][1]
    assert results[2][1].startswith(f"error: {tmp_path / 'nope.wav'}: no such file")
    assert results[3][1].startswith(f"error: {tmp_path / 'nope.srt'}: no such file")
    assert "the folder for --json does not exist" in results[4][1]


@pytest.mark.parametrize("quiet", [False, True])
def test_status_and_progress_on_a_terminal_leave_json_stdout_pure(media, tiny_model_dir, monkeypatch, quiet):
    import emofusion.cli.analyze as analyze_cli
    from emofusion.cli.common import ProgressBar

    shown: list[str] = []
    monkeypatch.setattr(analyze_cli, "stderr_is_terminal", lambda: True)  # as on a terminal
    monkeypatch.setattr(analyze_cli, "MIN_SECONDS_FOR_PROGRESS", 0.0)  # the bar for any input
    real_status, real_update = ProgressBar.status, ProgressBar.update
    monkeypatch.setattr(ProgressBar, "status", lambda self, text: (shown.append(text) if self.enabled else None,
                                                                   real_status(self, text))[1])
    monkeypatch.setattr(ProgressBar, "update", lambda self, *a: (shown.append("bar") if self.enabled else None,
                                                                 real_update(self, *a))[1])
    result = run(media["clip"], "--model", tiny_model_dir, "--json", "-", "--window", "0.5", "--hop", "0.25",
                 *(["--quiet"] if quiet else []))
    assert result.exit_code == 0, result.output
    assert result.stdout.lstrip().startswith("{")
    json.loads(result.stdout)  # nothing but the JSON on stdout
    if quiet:
        assert shown == []
        assert [line for line in result.stderr.splitlines() if not line.startswith("warning: ")] == []
    else:
        assert shown[:2] == [f"loading model {tiny_model_dir} ...", "analysing clip.mp4 ..."]
        # the bar moves during the input, not only at its start and end: with the smallest blocks
        # (4 windows) a clip of more than 8 windows reports at least three steps besides 0
        windows = len(json.loads(result.stdout)["segments"])
        assert windows > 8 and shown.count("bar") >= 1 + math.ceil(windows / 4)


def test_progress_bar_waits_for_slow_work(monkeypatch):
    from emofusion.cli import common

    import time

    bar = common.ProgressBar(enabled=True, unit="windows", min_seconds=2.0)
    stopped: list[int] = []
    monkeypatch.setattr(common.ProgressBar, "_stop_status", lambda self: stopped.append(1))
    bar.update(0, 10)
    bar.update(1, 10)
    assert bar._bar is None  # under 2 s: the status line only
    bar._started = time.monotonic() - 2.5
    bar.update(10, 10)
    assert bar._bar is None  # done: no bar for work that has ended
    bar.update(2, 10)
    try:
        assert bar._bar is not None and stopped == [1]  # the spinner gave way to the bar
    finally:
        bar.stop()
    assert common.ProgressBar(enabled=False, unit="windows").update(5, 10) is None


# ------------------------------------------------------------------------ --version and --help


def test_version():
    from emofusion import __version__

    result = invoke_cli("--version")
    assert result.exit_code == 0 and result.stdout == f"emofusion {__version__}\n"


@pytest.mark.parametrize("command", [[], ["analyze"], ["batch"], ["keys", "create"]])
def test_help_shows_no_value_for_flags(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = invoke_cli(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout, result.stdout
    if command == ["analyze"]:
        assert "<float>" in result.stdout  # options that take a value still say what


# ------------------------------------------------------------------ the real console script


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "emofusion"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "emofusion.cli"]


@pytest.mark.slow  # the console script in two subprocesses
def test_console_script_json_stdout_and_exit_codes(media, untrained_model_dir):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    base = _console_script()
    ok = subprocess.run(
        [*base, "analyze", str(media["clip"]), "--model", str(untrained_model_dir), "--json", "-",
         "--text", "i am so happy"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)  # nothing but the JSON on stdout
    assert ok.stdout.lstrip().startswith("{") and ok.stdout.rstrip().endswith("}")
    assert_contract_v1(data)
    assert data["model"]["trained"] is False
    assert all(s["text"] is not None for s in data["segments"])
    assert ok.stderr.startswith("warning: ") and "Traceback" not in ok.stderr

    bad = subprocess.run(
        [*base, "analyze", str(media["truncated"]), "--model", str(untrained_model_dir), "--json", "-"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    lines = bad.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {media['truncated']}: "), bad.stderr
    assert "Traceback" not in bad.stderr
