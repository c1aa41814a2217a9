"""`emofusion batch`: many files into one JSON-lines file, resumably, on this machine or Ray."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..options import (DEFAULT_FACE_DETECTOR, DEFAULT_FACES, DEFAULT_FRAMES_PER_SECOND, DEFAULT_HOP_SECONDS,
                       DEFAULT_MAX_FACES, DEFAULT_WINDOW_SECONDS)
from .common import CALIBRATE_HELP, FACE_DETECTOR_HELP, FACES_HELP, MAX_FACES_HELP, TRANSCRIBE_HELP, ProgressBar, fail, fail_with, warn_untrained

FAILED_SHOWN = 10  # failed inputs named after the summary line; the rest are counted
FLAG_OF_OPTION = {"window": "--window", "hop": "--hop", "frames_per_second": "--fps", "modalities": "--modalities",
                  "transcribe": "--transcribe", "calibrate": "--calibrate", "faces": "--faces",
                  "max_faces": "--max-faces", "face_detector": "--face-detector"}


def batch(
    inputs: Optional[list[str]] = typer.Argument(None, help="Video or audio files to analyse.", show_default=False),
    manifest: Optional[Path] = typer.Option(
        None, "--manifest", help="CSV (header with path[,audio,transcript,text]) or JSON-lines file listing the inputs; "
                                 "relative paths are resolved against its folder."),
    out: Path = typer.Option(..., "--out", help="JSON-lines output, appended to: one line per input (resumable)."),
    workers: Optional[int] = typer.Option(
        None, "--workers", help="Inputs analysed at once: local worker processes, one core each (default: one per "
                                "usable core), or Ray actors (default 1)."),
    engine: str = typer.Option("local", "--engine", help="local (processes on this machine) or ray (Ray Data)."),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="Ray cluster to use (host:port on a cluster node, or ray://head:10001); "
                                    "default: a local Ray instance with --workers CPUs."),
    model: str = typer.Option("default", "--model", help="Bundled model name, model folder, or hub id."),
    backend: str = typer.Option("auto", "--backend", help="torch, onnx (an `emofusion export` folder), or auto (onnx for an export folder)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="ONNX only: fp32 or int8 (default: what the export was made with)."),
    window: float = typer.Option(DEFAULT_WINDOW_SECONDS, "--window", help="Window length in seconds."),
    hop: float = typer.Option(DEFAULT_HOP_SECONDS, "--hop", help="Seconds between window starts."),
    modalities: Optional[str] = typer.Option(None, "--modalities", help="Comma-separated subset of face,voice,text (default: all the model has)."),
    fps: float = typer.Option(DEFAULT_FRAMES_PER_SECOND, "--fps", help="Video frames sampled per second for the face net."),
    transcribe: str = typer.Option("auto", "--transcribe", help=TRANSCRIBE_HELP + " Per input: an input with a "
                                   "transcript or text in the manifest keeps it under auto."),
    calibrate: str = typer.Option("auto", "--calibrate", help=CALIBRATE_HELP),
    faces: str = typer.Option(DEFAULT_FACES, "--faces", help=FACES_HELP),
    max_faces: int = typer.Option(DEFAULT_MAX_FACES, "--max-faces", help=MAX_FACES_HELP),
    face_detector: str = typer.Option(DEFAULT_FACE_DETECTOR, "--face-detector", help=FACE_DETECTOR_HELP),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Analyse again the inputs whose line in the output is an error."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (the summary line is still printed)."),
) -> None:
    """Analyse many files into one JSON-lines file (one analysis or error per line), resumably.

    Inputs already in the output are skipped, so running the same command again after a stop
    goes on where it was. Exit status: 0 when every input has a result, 1 when some inputs
    failed (their lines hold the error), 2 for usage errors.
    """
    from ..batch import BatchInterrupted, as_items, check_run_options, read_manifest, run_batch
    from ..errors import BatchError, EmofusionError, InvalidOptions
    from ..options import AnalysisOptions

    if inputs and manifest is not None:
        fail("--manifest", "give input files or --manifest, not both")
    if not inputs and manifest is None:
        fail("batch", "no inputs: give input files or --manifest FILE")
    try:
        options = AnalysisOptions.from_flags(window, hop, fps, modalities, transcribe, calibrate,
                                               faces, max_faces, face_detector)
    except InvalidOptions as exc:
        fail_with(exc, FLAG_OF_OPTION.get(exc.option or "", "--modalities"))
    try:
        check_run_options(workers, engine, ray_address, out.expanduser())
        items = read_manifest(manifest) if manifest is not None else as_items(inputs or [])
    except BatchError as exc:
        fail_with(exc)

    bar = ProgressBar(enabled=not quiet and sys.stderr.isatty(), unit="inputs", show_failed=True)

    try:
        try:
            summary = run_batch(items, out, workers=workers, engine=engine, ray_address=ray_address, model=model,
                                backend=backend, precision=precision, analyzer_options=options,
                                retry_failed=retry_failed,
                                progress=lambda done, failed, total: bar.update(done, total, failed),
                                on_start=lambda analyzer: warn_untrained(analyzer.model if analyzer else None))
        finally:
            bar.stop()
    except BatchInterrupted as exc:
        s = exc.summary
        typer.echo(f"interrupted: {s.analysed} analysed, {s.failed} failed, {s.skipped} skipped in {s.seconds:.1f} s; "
                   "run the same command again to go on", err=True)
        raise typer.Exit(130)
    except EmofusionError as exc:
        # a Ray job that fails midway is not a usage error (`batch_failed`): what was done is in the output
        fail_with(exc)
    typer.echo(summary.line(), err=True)
    print_failed(summary.failed_inputs, out)
    raise typer.Exit(summary.exit_code)


def print_failed(failed: list[str], out: Path, shown: int = FAILED_SHOWN) -> None:
    """Name the inputs whose line is an error (the first `shown`, then how many more) on stderr."""
    if not failed:
        return
    typer.echo(f"failed ({len(failed)}; the error is in each one's line in {out}):", err=True)
    for name in failed[:shown]:
        typer.echo(f"  {name}", err=True)
    if len(failed) > shown:
        typer.echo(f"  ... and {len(failed) - shown} more", err=True)
