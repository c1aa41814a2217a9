"""`emofusion analyze`: one video or audio file -> a timeline table, JSON, or a plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..options import (DEFAULT_FACE_DETECTOR, DEFAULT_FACES, DEFAULT_FRAMES_PER_SECOND, DEFAULT_HOP_SECONDS,
                       DEFAULT_MAX_FACES, DEFAULT_WINDOW_SECONDS)
from .common import CALIBRATE_HELP, FACE_DETECTOR_HELP, FACES_HELP, MAX_FACES_HELP, TRANSCRIBE_HELP, ProgressBar, check_input, check_output, fail, fail_with, stderr_is_terminal, warn_untrained

MIN_SECONDS_FOR_PROGRESS = 2.0  # work that ends sooner gets the status line only
PROGRESS_STEPS = 20  # about as many steps of the bar per input


def analyze(
    input: str = typer.Argument(..., help="Video or audio file to analyse."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Separate audio file to use instead of the input's audio track."),
    transcript: Optional[Path] = typer.Option(None, "--transcript", help="Transcript: .txt (whole input), .srt or .vtt."),
    text: Optional[str] = typer.Option(None, "--text", help="Text for the whole input (instead of --transcript)."),
    transcribe: str = typer.Option("auto", "--transcribe", help=TRANSCRIBE_HELP),
    calibrate: str = typer.Option("auto", "--calibrate", help=CALIBRATE_HELP),
    faces: str = typer.Option(DEFAULT_FACES, "--faces", help=FACES_HELP),
    max_faces: int = typer.Option(DEFAULT_MAX_FACES, "--max-faces", help=MAX_FACES_HELP),
    face_detector: str = typer.Option(DEFAULT_FACE_DETECTOR, "--face-detector", help=FACE_DETECTOR_HELP),
    window: float = typer.Option(DEFAULT_WINDOW_SECONDS, "--window", help="Window length in seconds."),
    hop: float = typer.Option(DEFAULT_HOP_SECONDS, "--hop", help="Seconds between window starts."),
    modalities: Optional[str] = typer.Option(None, "--modalities", help="Comma-separated subset of face,voice,text (default: all the model has)."),
    model: str = typer.Option("default", "--model", help="Bundled model name, model folder, ONNX export folder, or hub id."),
    backend: str = typer.Option("auto", "--backend", help="torch, onnx (an `emofusion export` folder), or auto (onnx for an export folder)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="ONNX only: fp32 or int8 (default: what the export was made with)."),
    fps: float = typer.Option(DEFAULT_FRAMES_PER_SECOND, "--fps", help="Video frames sampled per second for the face net."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the analysis as JSON to PATH, or '-' for stdout (JSON only)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the timeline, with the faces read from the input, to this PNG file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No status line or progress bar on stderr."),
) -> None:
    """Analyse a video or audio file: emotions per window of time from face, voice and text, fused."""
    from ..errors import AnalysisError, EmofusionError, ExternalAudioError, ModelLoadError, TranscriptError
    from ..options import AnalysisOptions

    # the arguments first: a typo is answered at once, before torch is imported and the model loads
    if transcript is not None and text is not None:
        fail(input, "give --transcript or --text, not both")
    if transcribe == "on" and (transcript is not None or text is not None):
        fail(input, f"--transcribe on transcribes the speech: give {'--transcript' if transcript is not None else '--text'} "
                    "or --transcribe on, not both (--transcribe auto keeps the given words)")
    check_input(input)
    for given in (audio, transcript):
        if given is not None:
            check_input(given)
    try:
        options = AnalysisOptions.from_flags(window, hop, fps, modalities, transcribe, calibrate,
                                               faces, max_faces, face_detector)
    except AnalysisError as exc:
        fail_with(exc, input)
    check_output(json_out, "--json")
    check_output(plot, "--plot")

    # on stderr, when it is a terminal: what is being done (a spinner), then a bar for long inputs
    progress = ProgressBar(enabled=not quiet and stderr_is_terminal(), unit="windows",
                           min_seconds=MIN_SECONDS_FOR_PROGRESS)
    try:
        progress.status(f"loading model {model} ...")
        from ..analysis import Analyzer
        from ..models import load_model

        try:
            loaded = load_model(model, backend, precision=precision, load_text_encoder=False)
        except ModelLoadError as exc:
            fail_with(exc, model)
        try:
            analyzer = Analyzer(loaded, options=options)
        except EmofusionError as exc:
            fail_with(exc, input)
        progress.status(f"analysing {Path(input).name} ...")
        try:
            analysis = analyzer.analyze(input, audio=str(audio) if audio is not None else None, transcript=transcript,
                                        text=text, progress=progress.update,
                                        progress_steps=PROGRESS_STEPS if progress.enabled else None)
        except ExternalAudioError as exc:  # the --audio file, not the input, is at fault
            fail_with(exc, str(audio))
        except TranscriptError as exc:
            fail_with(exc, str(transcript) if transcript is not None else input)
        except EmofusionError as exc:
            fail_with(exc, input)
    finally:
        progress.stop()  # before any error line or output
    # warned only once the input was analysed: a rejected input gets its one error line only
    warn_untrained(loaded)
    result = analysis.to_dict()
    if plot is not None:
        from ..plot import save_timeline

        save_timeline(result, plot.expanduser(), source=input)  # with the faces read from the input
    if json_out == "-":
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    if json_out is not None:
        Path(json_out).expanduser().write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


def people_table(result: dict):
    """One row per person: when they were seen, how much they spoke, their face and fused readings."""
    from rich.table import Table

    table = Table(title="people")
    for column in ("person", "seen (s)", "frames", "speaking", "face (mean)", "fused (mean)"):
        table.add_column(column)
    labels = result["labels"]
    for p in result["people"]:
        faces = [w["face"]["probs"] for w in p["windows"]]
        mean = {label: sum(f[label] for f in faces) / len(faces) for label in labels} if faces else {}
        face_top = max(mean, key=mean.get) if mean else None
        summary = p["summary"]
        table.add_row(p["id"], f"{p['first_seen']:.1f}-{p['last_seen']:.1f}", str(p["frames"]),
                      f"{summary['speaking_windows']}/{summary['windows']} windows",
                      f"{face_top} {mean[face_top]:.2f}" if face_top else "-",
                      f"[bold]{summary['top']} {summary['score']:.2f}[/bold]" if summary["top"] else "-")
    left_out = (result["media"].get("people") or {}).get("left_out", 0)
    if left_out:
        table.caption = f"{left_out} more tracked faces not listed (seen in one sampled frame, or fewer times than those listed)"
    return table


def print_table(result: dict) -> None:
    """The analysis as a table of windows and a summary line, on stdout."""
    from rich.console import Console
    from rich.table import Table

    def top(part: Optional[dict]) -> str:
        if not part:
            return "-"
        label = max(part["probs"], key=part["probs"].get)
        return f"{label} {part['probs'][label]:.2f}"

    speakers = any(s.get("speaker") for s in result["segments"])
    table = Table()
    for column in ("start", "end", "face", "voice", "text", "fused", *(["speaker"] if speakers else [])):
        table.add_column(column, justify="right" if column in ("start", "end") else "left")
    for s in result["segments"]:
        fused = s["fused"]
        table.add_row(
            f"{s['start']:.1f}", f"{s['end']:.1f}", top(s["face"]), top(s["voice"]), top(s["text"]),
            f"[bold]{fused['top']} {fused['score']:.2f}[/bold]" if fused else "-",
            *([(s.get("speaker") or "-").replace("_", "-")] if speakers else []),
        )
    console = Console()
    console.print(table)
    from ..plot import people_to_show

    if people_to_show(result):
        console.print(people_table(result))
    summary = result["summary"]
    model = result["model"]
    if summary["top"] is None:
        console.print("summary: no face, voice or text found in the input")
    else:
        sentiment = summary["sentiment"] or {}
        sent_top = max(sentiment, key=sentiment.get) if sentiment else "-"
        console.print(
            f"summary: [bold]{summary['top']}[/bold] {summary['score']:.2f}  "
            f"sentiment: {sent_top} ({summary['sentiment_source']})  "
            f"model: {model['name']} {model['version']}{'' if model['trained'] else ' (UNTRAINED)'}"
        )
