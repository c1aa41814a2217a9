"""The `emofusion` command line: analyze, batch, evaluate, train, export, info, serve, keys.

Every typer command lives in this package, one module per command; the library (`emofusion.*`
outside `cli`) raises `EmofusionError`s and never imports typer. Starting the CLI imports no
torch: each command imports what it runs.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Emotion in video from the face, the voice and the words.")


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


def _register() -> None:
    from . import analyze, batch, evaluate, export, info, serve, train

    app.command("analyze")(analyze.analyze)
    app.command("train")(train.train)
    app.command("evaluate")(evaluate.evaluate)
    app.command("export")(export.export)
    app.command("info")(info.info)
    app.command("batch")(batch.batch)
    app.command("serve")(serve.serve)
    app.add_typer(serve.keys_app, name="keys")


_register()


def main() -> None:
    """Entry point of the `emofusion` console script."""
    app()
