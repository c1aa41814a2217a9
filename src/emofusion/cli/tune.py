"""`emofusion tune`: hyperparameter search over a recipe's [tune] ranges (Optuna)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import fail, fail_with, tame_lightning_logging


def tune(
    recipe: Path = typer.Argument(..., help="Recipe TOML with a [tune] table (see `emofusion.train.tune`)."),
    out: Path = typer.Option(..., "--out", help="Output folder: trials.csv, tune.json, tune.png, best.toml, trial-N/."),
    trials: int = typer.Option(20, "--trials", min=1, help="Number of trials."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop starting trials after this many seconds."),
    seed: int = typer.Option(0, "--seed", help="The sampler's seed (TPE)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Feature cache shared by the trials "
                                             "(default OUT/cache)."),
) -> None:
    """Search the recipe's declared ranges; prune trials that fall behind; write the best trial as a recipe."""
    from ..errors import EmofusionError

    try:
        import lightning.fabric  # noqa: F401
        import optuna  # noqa: F401
    except ImportError as exc:
        fail("tune", f"tuning needs the train and tune extras (pip install 'emofusion[train,tune]'): {exc}")
    tame_lightning_logging()
    from ..train.tune import tune as run_tune

    try:
        summary = run_tune(recipe, out, trials, timeout=timeout, seed=seed, cache_dir=cache_dir,
                           log=lambda line: typer.echo(line, err=True))
    except EmofusionError as exc:
        fail_with(exc, str(recipe))
    metric = summary["metric"]
    typer.echo(f"{'trial':>5}  {'state':<8}  {metric:>8}  values")
    for row in summary["trials"]:
        value = f"{row[metric]:.4f}" if row[metric] is not None else "-"
        typer.echo(f"{row['trial']:>5}  {row['state']:<8}  {value:>8}  {json.dumps(row['params'])}")
    best = summary["best"]
    typer.echo(f"best: trial {best['trial']} ({metric} {best['value']:.4f}) -> {best['recipe']}; table "
               f"{out / 'trials.csv'}, plot {out / 'tune.png'}")
