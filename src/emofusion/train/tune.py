"""Hyperparameter search over a recipe's numbers with Optuna (`emofusion tune`).

The recipe declares what may change in a `[tune]` table:

    [tune]
    folds = [1, 2, 3]        # voice / multimodal: speaker folds each trial trains and validates on
                             # (a trial's score is the mean over them); default: the recipe's own split
    pruner = "median"        # "median" (stop a trial whose running score is below the median of
                             # earlier trials at the same epoch), "none", or { threshold = 0.3 }
    warmup_epochs = 2        # epochs before a trial can be pruned
    [tune.space]
    "optim.lr" = { low = 1e-4, high = 1e-2, log = true }
    "optim.batch_size" = { choices = [16, 32, 64] }
    "model.dropout" = { low = 0.1, high = 0.5 }
    "optim.epochs" = { low = 4, high = 12, step = 4 }    # integers when low and high are

Each trial trains with the recipe changed as the trial suggests (`--set`-style dotted keys) and
scores its best validation epoch on the recipe's selection metric (optim.select_on). Written to
OUT: trials.csv and tune.json (every trial: state, score, values, seconds), tune.png (scores by
trial and the best so far), best.toml (the recipe with the best trial's values) and trial-N/ runs.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import EmofusionError, RecipeError
from .recipe import apply_setting, load_recipe, toml_value, write_recipe

SCALAR = (bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """One searched value: a float or int range (optionally log-scaled or stepped), or choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @classmethod
    def parse(cls, key: str, spec: Any) -> "Param":
        where = f"[tune.space] {key!r}"
        if not isinstance(spec, dict):
            raise RecipeError(f"{where}: expected {{ low = .., high = .. }} or {{ choices = [..] }}, not {spec!r}")
        unknown = set(spec) - {"low", "high", "log", "step", "choices"}
        if unknown:
            raise RecipeError(f"{where}: unknown key(s) {sorted(unknown)}; known: low, high, log, step, choices")
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise RecipeError(f"{where}: choices must be a non-empty list")
            return cls(key, choices=tuple(choices))
        low, high = spec.get("low"), spec.get("high")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
            raise RecipeError(f"{where}: low and high must both be numbers")
        if not low < high:
            raise RecipeError(f"{where}: low ({low}) must be below high ({high})")
        log, step = bool(spec.get("log", False)), spec.get("step")
        if log and low <= 0:
            raise RecipeError(f"{where}: a log range needs low > 0")
        if step is not None and (log or not isinstance(step, (int, float)) or step <= 0):
            raise RecipeError(f"{where}: step must be a positive number, and not with log = true")
        return cls(key, low=low, high=high, log=log, step=step)

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and (self.step is None or isinstance(self.step, int))

    def suggest(self, trial: Any) -> Any:
        if self.choices:
            if all(isinstance(c, SCALAR) for c in self.choices):
                return trial.suggest_categorical(self.key, list(self.choices))
            return json.loads(trial.suggest_categorical(self.key, [json.dumps(c) for c in self.choices]))
        if self.is_int:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


def search_space(tune: dict[str, Any], where: str) -> list[Param]:
    space = tune.get("space")
    if not isinstance(space, dict) or not space:
        raise RecipeError(f"{where}: the search space is empty; declare ranges in [tune.space], e.g. "
                          "\"optim.lr\" = { low = 1e-4, high = 1e-2, log = true }")
    return [Param.parse(key, spec) for key, spec in space.items()]


def _pruner(tune: dict[str, Any], where: str) -> Any:
    import optuna

    warmup = tune.get("warmup_epochs", 1)
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise RecipeError(f"{where}: [tune] warmup_epochs must be a whole number of epochs, not {warmup!r}")
    kind = tune.get("pruner", "median")
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup)
    if kind == "none":
        return optuna.pruners.NopPruner()
    if isinstance(kind, dict) and set(kind) == {"threshold"} and isinstance(kind["threshold"], (int, float)):
        return optuna.pruners.ThresholdPruner(lower=float(kind["threshold"]), n_warmup_steps=warmup)
    raise RecipeError(f"{where}: [tune] pruner must be \"median\", \"none\" or {{ threshold = X }}, not {kind!r}")


def tune(recipe_path: str | Path, out_dir: str | Path, trials: int, *, timeout: float | None = None, seed: int = 0,
         cache_dir: str | Path | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the search; returns the summary written to OUT/tune.json."""
    import optuna

    from .loop import train as run_training

    path = Path(recipe_path)
    base = load_recipe(path)  # a broken recipe is an error before any trial
    raw = tomllib.loads(path.read_text())
    where = str(path)
    if trials < 1:
        raise RecipeError(f"--trials must be at least 1, not {trials}")
    if not base.tune:
        raise RecipeError(f"{where}: no [tune] table; declare the search space in [tune.space]")
    unknown = set(base.tune) - {"space", "folds", "pruner", "warmup_epochs"}
    if unknown:
        raise RecipeError(f"{where}: unknown [tune] key(s) {sorted(unknown)}; known: space, folds, pruner, warmup_epochs")
    space = search_space(base.tune, where)
    for param in space:  # every key must name a value the recipe has, and loads with the range's values
        if not _has_key(raw, param.key):
            raise RecipeError(f"{where}: [tune.space] {param.key!r} is not in the recipe; searching it would change "
                              "nothing (write it in the recipe with its current value first)")
        for value in (param.choices or (param.low, param.high)):
            load_recipe(path, settings=[f"{param.key}={toml_value(value)}"])
    given_folds = base.tune.get("folds", [None])
    if not isinstance(given_folds, list):
        raise RecipeError(f"{where}: [tune] folds must be a list of fold numbers, e.g. [1, 2]")
    folds = list(given_folds)
    if folds != [None]:
        if base.task not in ("voice", "multimodal"):
            raise RecipeError(f"{where}: [tune] folds applies to voice and multimodal recipes (speaker folds)")
        count = int(base.data.get("folds", 5))
        if not folds or not all(isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= count for k in folds):
            raise RecipeError(f"{where}: [tune] folds must be fold numbers from 1 to {count} (the recipe's data.folds)")
    pruner = _pruner(base.tune, where)
    # a fold's epochs are reported at steps of their own, so trials of different lengths compare
    # the same fold's epochs with each other
    epoch_param = next((p for p in space if p.key == "optim.epochs"), None)
    fold_span = int(max(epoch_param.choices or [epoch_param.high])) if epoch_param else base.optim.epochs
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir or out / "cache")
    metric = base.optim.select_on
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        values = {p.key: p.suggest(trial) for p in space}
        recipe = load_recipe(path, settings=[f"{k}={toml_value(v)}" for k, v in values.items()])
        offset, scores = 0, []
        for fold in folds:
            if fold is not None:
                recipe.data["fold"] = int(fold)

            def report(epoch: int, score: float, offset: int = offset) -> None:
                trial.report(score, offset + epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{metric} {score:.4f} at epoch {epoch} of fold {fold}")

            run = out / f"trial-{trial.number}" / (f"fold{fold}" if fold is not None else "run")
            summary = run_training(recipe, run, cache_dir=cache, log=lambda line: None, on_epoch=report)
            scores.append(float(summary[f"best_{metric}"]))
            offset += fold_span
        return float(sum(scores) / len(scores))

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        steps = sorted(trial.intermediate_values.items())
        if trial.state == optuna.trial.TrialState.COMPLETE:
            value = f"{metric}={trial.value:.4f}"
        else:
            value = f"at step {steps[-1][0]}: {metric} {steps[-1][1]:.4f}" if steps else ""
        log(f"trial {trial.number}: {trial.state.name.lower()} {value} {json.dumps(trial.params)}")
        _write_table([_row(t, metric) for t in study.trials], space, metric, out / "trials.csv")  # kept if stopped

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[progress], catch=(EmofusionError, ValueError))
    rows = [_row(t, metric) for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    summary: dict[str, Any] = {"recipe": str(path), "metric": metric, "folds": folds, "trials": rows,
                               "space": {p.key: {"low": p.low, "high": p.high, "log": p.log, "step": p.step,
                                                 "choices": list(p.choices) or None} for p in space}}
    _write_table(rows, space, metric, out / "trials.csv")
    _plot(rows, metric, out / "tune.png")
    if not complete:
        (out / "tune.json").write_text(json.dumps(summary, indent=2) + "\n")
        raise RecipeError(f"{where}: no trial completed ({', '.join(sorted({r['state'] for r in rows}))}); "
                          f"see {out / 'trials.csv'} (a pruning threshold above every score prunes every trial)")
    best = study.best_trial
    values = {p.key: _decoded(p, best.params[p.key]) for p in space}
    best_raw = copy.deepcopy(raw)
    for key, value in values.items():
        apply_setting(best_raw, f"{key}={toml_value(value)}")
    header = (f"The best of {len(rows)} trials of `emofusion tune {path}` (trial {best.number}: "
              f"{metric} {best.value:.4f}, mean over folds {folds}).\nSearched: {', '.join(values)}")
    write_recipe(best_raw, out / "best.toml", header)
    summary["best"] = {"trial": best.number, "value": best.value, "values": values, "recipe": str(out / "best.toml")}
    (out / "tune.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _has_key(raw: dict[str, Any], dotted: str) -> bool:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _decoded(param: Param, value: Any) -> Any:
    if param.choices and not all(isinstance(c, SCALAR) for c in param.choices):
        return json.loads(value)
    return value


def _row(trial: Any, metric: str) -> dict[str, Any]:
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
    steps = sorted(trial.intermediate_values.items())
    complete = trial.state.name == "COMPLETE"  # a pruned trial's value is only its last epoch's: not a score
    return {"trial": trial.number, "state": trial.state.name.lower(), metric: trial.value if complete else None,
            "params": trial.params,
            "epochs_run": len(steps), "last_intermediate": steps[-1][1] if steps else None,
            "seconds": round(seconds, 1) if seconds is not None else None}


def _write_table(rows: list[dict[str, Any]], space: list[Param], metric: str, path: Path) -> None:
    keys = [p.key for p in space]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "state", metric, *keys, "epochs_run", "seconds"])
        for r in rows:
            writer.writerow([r["trial"], r["state"], "" if r[metric] is None else f"{r[metric]:.4f}",
                             *[r["params"].get(k, "") for k in keys], r["epochs_run"], r["seconds"]])


def _plot(rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    done = [(r["trial"], r[metric]) for r in rows if r[metric] is not None]
    pruned = [(r["trial"], r["last_intermediate"]) for r in rows if r["state"] == "pruned" and r["last_intermediate"] is not None]
    if done:
        ax.plot(*zip(*done), "o", label="completed")
        best, so_far = -math.inf, []
        for n, v in done:
            best = max(best, v)
            so_far.append((n, best))
        ax.step(*zip(*so_far), where="post", label="best so far")
    if pruned:
        ax.plot(*zip(*pruned), "x", color="grey", label="pruned (last score)")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"emofusion tune: {len(rows)} trials")
    if done or pruned:
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
