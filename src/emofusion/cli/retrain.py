"""`emofusion retrain` (gated fine-tuning on new data, once or watching for it) and
`emofusion registry ...` (model versions: create, list, roll back, serve a version again)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer

from .common import fail, fail_with, tame_lightning_logging

T = TypeVar("T")
EXIT_KEPT = 3  # retrain: the gate kept the current model (not an error)

registry_app = typer.Typer(no_args_is_help=True, help="Model versions: create a registry, list, roll back, serve one.")


def _on_registry(root: str, action: Callable[[Any], T]) -> T:
    """`action(registry)` on the registry at `root`; any EmofusionError is a one-line error about `root`."""
    from ..errors import EmofusionError
    from ..models.registry import ModelRegistry

    try:
        return action(ModelRegistry(root))
    except EmofusionError as exc:
        fail_with(exc, root)


def retrain(
    recipe: Path = typer.Argument(..., help="The voice recipe the current voice part was trained with (its sources "
                                  "are replayed, its val_speakers are the old validation sets)."),
    registry: str = typer.Option(..., "--registry", help="Model registry folder (`emofusion registry init`)."),
    data: Optional[Path] = typer.Option(None, "--data", help="New labelled data: a manifest (.csv/.jsonl with path, "
                                        "label, speaker)."),
    watch: Optional[str] = typer.Option(None, "--watch", help="Instead of --data: a folder or s3://bucket/prefix to "
                                        "watch; each new manifest there starts a retraining."),
    work: Path = typer.Option(..., "--work", help="Work folder: training run, candidate, report.json (with --watch: "
                              "one run folder per manifest, and watch-state.json)."),
    epochs: int = typer.Option(8, "--epochs", min=1, help="Fine-tuning epochs (the last one is the candidate)."),
    lr_scale: float = typer.Option(0.3, "--lr-scale", help="The recipe's learning rate times this."),
    tolerance: float = typer.Option(0.02, "--tolerance", help="Largest UAR drop allowed on any old validation set."),
    min_gain: float = typer.Option(0.0, "--min-gain", help="UAR gain the candidate must exceed on the new held-out "
                                   "speakers."),
    holdout_fraction: float = typer.Option(0.25, "--holdout-fraction", help="Share of the new data's speakers held "
                                           "out for the gate (at least one)."),
    holdout_speakers: Optional[list[str]] = typer.Option(None, "--holdout-speaker", help="Hold out exactly these "
                                                         "new speakers (repeatable) instead."),
    seed: int = typer.Option(0, "--seed"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoded-audio cache (default WORK/cache)."),
    interval: float = typer.Option(30.0, "--interval", help="--watch: seconds between looks."),
    once: bool = typer.Option(False, "--once", help="--watch: handle the manifests there now, then exit."),
) -> None:
    """Fine-tune the served model's voice part on new data and promote it only if a gate passes.

    The candidate must be no worse than the current model on the recipe's validation sets (by more
    than --tolerance) and better on the new data's held-out speakers. Exit status: 0 promoted,
    3 kept the current model (the reason is printed), 2 bad input. With --watch, runs until
    interrupted (or, with --once, exits 0 after the manifests present).
    """
    from ..errors import EmofusionError
    from ..train.retrain import RetrainSettings

    if (data is None) == (watch is None):
        fail("retrain", "give either --data MANIFEST or --watch DIR|s3://bucket/prefix")
    settings = RetrainSettings(epochs=epochs, lr_scale=lr_scale, tolerance=tolerance, min_gain=min_gain,
                               holdout_fraction=holdout_fraction, holdout_speakers=list(holdout_speakers or []),
                               seed=seed)
    reg = _on_registry(registry, lambda r: r)
    echo = lambda line: typer.echo(line, err=True)  # noqa: E731
    try:
        import lightning.fabric  # noqa: F401
    except ImportError as exc:
        fail("retrain", f"retraining needs the train extra (pip install 'emofusion[train]'): {exc}")
    tame_lightning_logging()
    try:
        settings.check()
        if watch is not None:
            from ..train.watch import watch as run_watch

            outcomes = run_watch(watch, reg, recipe, work, settings=settings, interval=interval, once=once,
                                 endpoint_url=os.environ.get("EMOFUSION_S3_ENDPOINT_URL") or None,
                                 cache_dir=cache_dir, log=echo)
            typer.echo(json.dumps(outcomes, indent=2))
            return
        from ..train.retrain import retrain as run_retrain

        assert data is not None
        report = run_retrain(reg, recipe, data, work, settings=settings, cache_dir=cache_dir, log=echo)
    except EmofusionError as exc:
        fail_with(exc, str(data or watch))
    typer.echo(json.dumps(report, indent=2))
    if not report["promoted"]:
        echo(f"kept {report['serving']}: {report['gate']['reason']}")
        raise typer.Exit(EXIT_KEPT)
    echo(f"promoted {report['version']} ({report['model_version']}): {report['gate']['reason']}")


@registry_app.command("init")
def registry_init(
    root: str = typer.Argument(..., help="New registry folder."),
    model: str = typer.Option("default", "--model", help="Its first version: a bundled model name or model folder."),
) -> None:
    """Create a registry whose first (served) version is a copy of --model."""
    from ..models.loading import load_model, resolve_model_folder

    def seed(registry):
        loaded = load_model(model, load_text_encoder=False)
        version = registry.seed(resolve_model_folder(model), {"source": model, "name": loaded.config.name,
                                                              "model_version": loaded.config.version})
        return f"{version} ({loaded.config.name} {loaded.config.version})"

    typer.echo(f"{root}: {_on_registry(root, seed)} is current")


@registry_app.command("list")
def registry_list(
    root: str = typer.Argument(..., help="Registry folder."),
    as_json: bool = typer.Option(False, "--json", help="The whole index as JSON."),
) -> None:
    """Every version: status, model version, gate numbers; the served one is marked with *."""
    state = _on_registry(root, lambda registry: registry.state())
    if as_json:
        typer.echo(json.dumps({"current": state.current, "versions": state.versions, "history": state.history}, indent=2))
        return
    for rec in state.versions:
        mark = "*" if rec["id"] == state.current else " "
        gate = rec.get("gate")
        detail = ("; ".join(f"{c['set']} {c['current']:.4f}->{c['candidate']:.4f}" for c in gate["checks"])
                  if gate else rec.get("provenance", {}).get("source", ""))
        typer.echo(f"{mark} {rec['id']}  {rec['status']:<8}  {rec.get('model_version') or rec.get('provenance', {}).get('model_version', '')}"
                   f"  {rec['created']}  {detail}")


@registry_app.command("rollback")
def registry_rollback(root: str = typer.Argument(..., help="Registry folder.")) -> None:
    """Serve again the version the current one replaced (a running `emofusion serve --registry` follows)."""
    typer.echo(f"{root}: {_on_registry(root, lambda registry: registry.rollback())} is current")


@registry_app.command("serve-version")
def registry_serve_version(
    root: str = typer.Argument(..., help="Registry folder."),
    version: str = typer.Argument(..., help="A seed or promoted version id (e.g. v0003)."),
) -> None:
    """Make a version that passed its gate current again (e.g. after a rollback)."""
    _on_registry(root, lambda registry: registry.set_current(version, "serve"))
    typer.echo(f"{root}: {version} is current")
