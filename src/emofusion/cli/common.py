"""What every command shares: one-line errors with the exit status of `emofusion.errors`,
warnings, the untrained-model warning, output-path checks and the progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, Optional

import typer

from ..errors import EXIT_USAGE, EmofusionError


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


class ProgressBar:
    """A progress bar on stderr, only when `enabled` (stderr is a terminal) and the total is
    over `min_total`; `unit` names what is counted, and failures are shown when counted."""

    def __init__(self, enabled: bool, unit: str, *, min_total: int = 0, show_failed: bool = False):
        self.enabled, self.unit, self.min_total, self.show_failed = enabled, unit, min_total, show_failed
        self._bar: Any = None
        self._task: Any = None

    def update(self, done: int, total: int, failed: int = 0) -> None:
        if not self.enabled or total == 0 or total <= self.min_total:
            return
        if self._bar is None:
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
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
