"""`emofusion train`: a face, voice, text or multimodal seed net from a recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import fail, fail_with, tame_lightning_logging


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
    from ..errors import EmofusionError
    from ..train.recipe import load_recipe

    try:
        r = load_recipe(recipe, {"epochs": epochs, "batch_size": batch_size}, settings)
    except EmofusionError as exc:
        fail_with(exc, str(recipe))
    if fold is not None:
        if r.task not in ("voice", "multimodal"):
            fail(str(recipe), "--fold applies to voice and multimodal recipes (speaker folds)")
        r.data["fold"] = fold
    try:
        import lightning.fabric  # noqa: F401  (imported here to tame its logging below)

        from ..train.loop import train as run_training
    except ImportError as exc:
        fail("train", f"training needs the train extra (pip install 'emofusion[train]'): {exc}")
    tame_lightning_logging()
    try:
        summary = run_training(
            r, out, accelerator=accelerator, devices=int(devices) if devices.isdigit() else devices,
            num_nodes=num_nodes, strategy=strategy, precision=precision, resume=resume, cache_dir=cache_dir,
            log=lambda line: typer.echo(line, err=True),
        )
    except EmofusionError as exc:
        fail_with(exc, str(recipe))
    except (FileNotFoundError, ValueError) as exc:
        fail(str(recipe), str(exc))
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
