"""The `emofusion` command line: analyze, batch, evaluate, train, tune, retrain, registry, export, info, serve, keys.

Every typer command lives in this package, one module per command; the library (`emofusion.*`
outside `cli`) raises `EmofusionError`s and never imports typer. Starting the CLI imports no
torch: each command imports what it runs.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer
import typer.core

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Emotion in video from the face, the voice and the words.")


def _flags_show_no_type() -> None:
    """typer 0.29's rich help gives every option a type column, flags too (`--quiet <bool>`,
    `--help <bool>`), as if they took a value: `TyperOption.display_type_rich` does not check
    `is_flag`, which its plain help (`get_help_record`) does. Flags and counters get no type here."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "_emofusion_flags", False):
        return

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        if getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        return shown(self, ctx)

    display_type_rich._emofusion_flags = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich  # type: ignore[union-attr]


_flags_show_no_type()


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"emofusion {__version__}")
        raise typer.Exit()


@app.callback()
def _configure_logging(
    version: Optional[bool] = typer.Option(None, "--version", callback=_print_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
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


def _register() -> None:
    from . import analyze, batch, evaluate, export, info, retrain, serve, train, tune

    app.command("analyze")(analyze.analyze)
    app.command("train")(train.train)
    app.command("tune")(tune.tune)
    app.command("retrain")(retrain.retrain)
    app.add_typer(retrain.registry_app, name="registry")
    app.command("evaluate")(evaluate.evaluate)
    app.command("export")(export.export)
    app.command("info")(info.info)
    app.command("batch")(batch.batch)
    app.command("serve")(serve.serve)
    app.add_typer(serve.keys_app, name="keys")
    app.add_typer(serve.labels_app, name="labels")


_register()


def main() -> None:
    """Entry point of the `emofusion` console script."""
    app()
