"""What every command shares: one-line errors with the exit status of `emofusion.errors`,
warnings, the untrained-model warning, input- and output-path checks, the status line and the
progress bar."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer

from ..errors import EXIT_USAGE, EmofusionError

CALIBRATE_HELP = (
    "Read the voice relative to the recording's own speaker (the voice functionals standardised over the "
    "recording's voiced windows): auto (when the model's voice part can and there are at least 20 voiced windows), "
    "on (always; an error with fewer), off. See media.voice_calibration in the JSON.")

FACES_HELP = ("Faces read per frame: all (up to --max-faces, the largest first, each followed as a person: the "
              "JSON's people and each window's speaker) or largest (one per frame).")
MAX_FACES_HELP = "With --faces all: the most faces read per frame (1-20); more are counted, not read."
FACE_DETECTOR_HELP = ("yunet (shipped; landmarks: aligned crops and who is speaking) or haar (OpenCV's frontal "
                      "cascade; boxes only, no speaker).")

TRANSCRIBE_HELP = (
    "Transcribe the speech for the text channel with Whisper (faster-whisper): auto (when no transcript or text is "
    "given and a model is available offline), on (always; may download a model; an error with a transcript or "
    "text), off. The model: EMOFUSION_ASR_MODEL (a faster-whisper model folder, or a size name such as base or "
    "small.en, found in the Hugging Face cache or, with on, downloaded), else the offline default installed with "
    "emofusion (Whisper tiny.en, English only).")


def fail(subject: str, reason: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `error: <subject>: <reason>` on stderr (one line) and exit with `code`."""
    reason = " ".join(str(reason).split())
    typer.echo(f"error: {subject}: {reason}", err=True)
    raise typer.Exit(code)


def fail_with(error: EmofusionError, subject: Optional[str] = None) -> NoReturn:
    """Exit with the error's own status (`errors.ERROR_CODES`); the subject is the one given,
    else the error's own. A message that starts with the subject does not repeat it."""
    where = subject or error.subject or "emofusion"
    reason = str(error)
    reason = reason.removeprefix(f"{where}: ") or reason
    fail(where, reason, error.exit_status)


def tame_lightning_logging() -> None:
    """Lightning binds a handler to the stderr of the moment it is imported; route its warnings
    through ours instead, and drop its INFO chatter ("Seed set to 0", ...). Call after importing it."""
    import logging

    for name in ("lightning.fabric", "lightning_fabric"):
        lightning_logger = logging.getLogger(name)
        lightning_logger.handlers.clear()
        lightning_logger.setLevel(logging.WARNING)
        lightning_logger.propagate = True


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def warn_untrained(model: Any, consequence: str = "their output is random, not a prediction") -> None:
    """Warn when some of the model's parts carry random weights."""
    if model is None or model.is_trained:
        return
    untrained = [m for m in model.modalities if not model.config.trained.get(m, False)]
    warn(f"model {model.config.name!r} has untrained parts ({', '.join(untrained)}): {consequence}")


def check_output(path: Optional[str | Path], option: str) -> None:
    """Exit with a usage error when an output file's folder does not exist ('-' is stdout)."""
    if path is None or str(path) == "-":
        return
    if not Path(path).expanduser().parent.exists():
        fail(str(path), f"the folder for {option} does not exist")


def check_input(path: str | Path, subject: Optional[str] = None) -> None:
    """Exit with a usage error when an input file does not exist or is a folder: checked
    before any model loads, so that a typo is answered at once."""
    p = Path(path).expanduser()
    if not p.exists():
        fail(subject or str(path), "no such file")
    if p.is_dir():
        fail(subject or str(path), "is a directory, not a file")


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal: the status line and the progress bar are shown only then."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


class ProgressBar:
    """What the command is doing, on stderr, only when `enabled` (stderr is a terminal and no
    --quiet): a spinner with a status line (`status`), then a progress bar once counted work
    (`update`) has gone on for `min_seconds`. `unit` names what
    is counted, and failures are shown when counted. Nothing is ever written to stdout."""

    def __init__(self, enabled: bool, unit: str, *, min_seconds: float = 0.0, show_failed: bool = False):
        self.enabled, self.unit, self.show_failed = enabled, unit, show_failed
        self.min_seconds = min_seconds
        self._bar: Any = None
        self._task: Any = None
        self._status: Any = None
        self._started: Optional[float] = None

    def status(self, text: str) -> None:
        """Show `text` beside a spinner (replacing the previous status) until the bar starts or `stop`."""
        if not self.enabled or self._bar is not None:
            return
        if self._status is None:
            from rich.console import Console

            self._status = Console(stderr=True).status(text)
            self._status.start()
        else:
            self._status.update(text)

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def update(self, done: int, total: int, failed: int = 0) -> None:
        if not self.enabled or total == 0:
            return
        if self._started is None:
            self._started = time.monotonic()
        if self._bar is None:
            if done >= total or time.monotonic() - self._started < self.min_seconds:
                return  # short work: the status line says enough
            self._stop_status()  # one live display at a time
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = [TextColumn("analysing"), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit)]
            if self.show_failed:
                columns.append(TextColumn("{task.fields[failed]} failed"))
            self._bar = Progress(*columns, TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=True)
            self._task = self._bar.add_task(self.unit, total=total, failed=0)
            self._bar.start()
        self._bar.update(self._task, completed=done, total=total, failed=failed)

    def stop(self) -> None:
        self._stop_status()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
