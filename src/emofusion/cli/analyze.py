"""The `emofusion` command line: analyze, evaluate, train, serve, keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Emotion in video from the face, the voice and the words.")

EXIT_USAGE = 2


@app.callback()
def _configure_logging() -> None:
    """Library warnings (e.g. skipped undecodable packets) reach stderr as `warning: ...` lines."""
    import logging

    class _Stderr(logging.Handler):  # resolves sys.stderr at each record (it may be swapped)
        def emit(self, record: logging.LogRecord) -> None:
            sys.stderr.write(self.format(record) + "\n")

    handler = _Stderr()
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    root = logging.getLogger("emofusion")
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
        root.propagate = False


def fail(subject: str, reason: str, code: int = EXIT_USAGE) -> None:
    """Print `error: <subject>: <reason>` on stderr (one line) and exit."""
    reason = " ".join(str(reason).split())
    typer.echo(f"error: {subject}: {reason}", err=True)
    raise typer.Exit(code)


def _warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def _load_model_or_fail(model: str, backend: str = "auto", precision: Optional[str] = None):
    from .models import ModelLoadError
    from .models.onnx_backend import load_model_backend

    try:
        return load_model_backend(model, backend, precision=precision)
    except ModelLoadError as exc:
        fail(model, str(exc))


@app.command()
def analyze(
    input: str = typer.Argument(..., help="Video or audio file to analyse."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Separate audio file to use instead of the input's audio track."),
    transcript: Optional[Path] = typer.Option(None, "--transcript", help="Transcript: .txt (whole input), .srt or .vtt."),
    text: Optional[str] = typer.Option(None, "--text", help="Text for the whole input (instead of --transcript)."),
    transcribe: bool = typer.Option(False, "--transcribe", help="Transcribe the audio with faster-whisper (needs the asr extra and a local model)."),
    window: float = typer.Option(2.0, "--window", help="Window length in seconds."),
    hop: float = typer.Option(1.0, "--hop", help="Seconds between window starts."),
    modalities: Optional[str] = typer.Option(None, "--modalities", help="Comma-separated subset of face,voice,text (default: all the model has)."),
    model: str = typer.Option("default", "--model", help="Bundled model name, model folder, ONNX export folder, or hub id."),
    backend: str = typer.Option("auto", "--backend", help="torch, onnx (an `emofusion export` folder), or auto (onnx for an export folder)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="ONNX only: fp32 or int8 (default: what the export was made with)."),
    fps: float = typer.Option(2.0, "--fps", help="Video frames sampled per second for the face net."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the analysis as JSON to PATH, or '-' for stdout (JSON only)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the timeline to this PNG file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Analyse a video or audio file: emotions per window of time from face, voice and text, fused."""
    from .limits import InvalidOptions, check_options
    from .media import MediaError
    from .pipeline import AnalysisError, Analyzer, ExternalAudioError
    from .transcript import TranscriptError

    if transcript is not None and text is not None:
        fail(input, "give --transcript or --text, not both")
    try:
        check_options(window, hop, fps)
    except InvalidOptions as exc:
        fail(input, str(exc))
    if json_out not in (None, "-") and not Path(json_out).parent.exists():
        fail(json_out, "the folder for --json does not exist")
    if plot is not None and not plot.parent.exists():
        fail(str(plot), "the folder for --plot does not exist")
    wanted = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None
    loaded = _load_model_or_fail(model, backend, precision)
    try:
        analyzer = Analyzer(loaded, window=window, hop=hop, modalities=wanted, frames_per_second=fps)
    except AnalysisError as exc:
        fail(input, str(exc))
    if transcript is not None and not transcript.exists():
        fail(str(transcript), "no such file")
    if audio is not None and not audio.exists():
        fail(str(audio), "no such file")
    progress = _LazyProgress(enabled=not quiet and sys.stderr.isatty())
    try:
        try:
            analysis = analyzer.analyze(
                input,
                audio=str(audio) if audio is not None else None,
                transcript=transcript,
                text=text,
                transcribe_audio=transcribe,
                progress=progress.update,
            )
        finally:
            progress.stop()
    except ExternalAudioError as exc:  # the --audio file, not the input, is at fault
        fail(str(audio), str(exc))
    except MediaError as exc:
        fail(input, str(exc))
    except TranscriptError as exc:
        fail(str(transcript) if transcript is not None else input, str(exc))
    except AnalysisError as exc:
        fail(input, str(exc))
    if not loaded.is_trained:
        # warned only once the input was analysed: a rejected input gets its one error line only
        untrained = [m for m in loaded.modalities if not loaded.config.trained.get(m, False)]
        _warn(f"model {loaded.config.name!r} has untrained parts ({', '.join(untrained)}): their output is random, not a prediction")
    result = analysis.to_dict()
    if plot is not None:
        from .plot import save_timeline

        save_timeline(result, plot)
    if json_out == "-":
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    if json_out is not None:
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")
    _print_table(result)


class _LazyProgress:
    """A progress bar on stderr that appears only for long inputs (more than 30 windows)."""

    MIN_WINDOWS = 30

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self._task = None

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total <= self.MIN_WINDOWS:
            return
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("analysing"), BarColumn(), TextColumn("{task.completed}/{task.total} windows"),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._task = self._bar.add_task("analyse", total=total)
            self._bar.start()
        self._bar.update(self._task, completed=done, total=total)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    def top(part: Optional[dict]) -> str:
        if not part:
            return "-"
        label = max(part["probs"], key=part["probs"].get)
        return f"{label} {part['probs'][label]:.2f}"

    table = Table()
    for column in ("start", "end", "face", "voice", "text", "fused"):
        table.add_column(column, justify="right" if column in ("start", "end") else "left")
    for s in result["segments"]:
        fused = s["fused"]
        table.add_row(
            f"{s['start']:.1f}", f"{s['end']:.1f}", top(s["face"]), top(s["voice"]), top(s["text"]),
            f"[bold]{fused['top']} {fused['score']:.2f}[/bold]" if fused else "-",
        )
    console = Console()
    console.print(table)
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


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="Recipe TOML file (see recipes/)."),
    out: Path = typer.Option(..., "--out", help="Output folder: best/, last/, metrics.json, tensorboard/."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the recipe's number of epochs."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override the recipe's batch size."),
    accelerator: str = typer.Option("cpu", "--accelerator", help="cpu, gpu, cuda, mps or auto."),
    devices: str = typer.Option("1", "--devices", help="Number of devices (or 'auto')."),
    num_nodes: int = typer.Option(1, "--num-nodes"),
    strategy: str = typer.Option("auto", "--strategy", help="auto or ddp."),
    precision: str = typer.Option("32-true", "--precision", help="32-true, bf16-mixed, 16-mixed."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last and its trainer state."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Feature cache folder (default OUT/cache)."),
    fold: Optional[int] = typer.Option(None, "--fold", help="Voice / multimodal: hold out the speakers of fold K (1-based) of every source, for cross-validation."),
    settings: Optional[list[str]] = typer.Option(None, "--set", help="Change a recipe value: KEY=VALUE with a dotted key, e.g. --set model.fusion.type=late (repeatable)."),
) -> None:
    """Train a face, voice or text net, or a multimodal seed architecture, from a recipe."""
    from .data import DatasetLayoutError
    from .train.recipe import RecipeError, load_recipe

    try:
        r = load_recipe(recipe, {"epochs": epochs, "batch_size": batch_size}, settings)
    except RecipeError as exc:
        fail(str(recipe), str(exc).removeprefix(f"{recipe}: "))
    if fold is not None:
        if r.task not in ("voice", "multimodal"):
            fail(str(recipe), "--fold applies to voice and multimodal recipes (speaker folds)")
        r.data["fold"] = fold
    try:
        import lightning.fabric  # noqa: F401  (imported here to tame its logging below)

        from .train.loop import train as run_training
    except ImportError as exc:
        fail("train", f"training needs the train extra (pip install 'emofusion[train]'): {exc}")
    import logging

    for name in ("lightning.fabric", "lightning_fabric"):
        # Lightning binds a handler to the stderr of the moment it is imported; route its
        # warnings through ours instead, and drop its INFO chatter.
        lightning_logger = logging.getLogger(name)
        lightning_logger.handlers.clear()
        lightning_logger.setLevel(logging.WARNING)
        lightning_logger.propagate = True
    try:
        summary = run_training(
            r, out, accelerator=accelerator, devices=int(devices) if devices.isdigit() else devices,
            num_nodes=num_nodes, strategy=strategy, precision=precision, resume=resume, cache_dir=cache_dir,
            log=lambda line: typer.echo(line, err=True),
        )
    except (DatasetLayoutError, FileNotFoundError, ValueError) as exc:
        fail(str(recipe), str(exc))
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))


def _register_evaluate() -> None:
    from .evaluate import evaluate_command

    app.command("evaluate")(evaluate_command)


def _register_batch() -> None:
    from .batch import batch_command

    app.command("batch")(batch_command)


def _register_info() -> None:
    from .info import info_command

    app.command("info")(info_command)


def _register_export() -> None:
    from .export import export_command

    app.command("export")(export_command)


def _register_serve() -> None:
    from .serve.cli import keys_app, serve

    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")


_register_evaluate()
_register_export()
_register_info()
_register_batch()
_register_serve()


def main() -> None:
    """Entry point of the `emofusion` console script."""
    app()


if __name__ == "__main__":
    main()
