"""`emofusion tune`: Optuna over a recipe's [tune] ranges, on a generated voice corpus, with
speaker folds, pruning, the results table and plot, and the best trial written as a recipe."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emofusion.cli import app
from emofusion.train.recipe import load_recipe
from conftest import tiny_voice_recipe
from support import noise, ravdess_grid, write_ravdess_wavs

pytest.importorskip("optuna")
runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    return write_ravdess_wavs(tmp_path_factory.mktemp("tune") / "ravdess", ravdess_grid(),
                              lambda actor, emotion, rep: noise(0.6, rng))


def _recipe(path: Path, data: Path, tune: str) -> Path:
    """The tiny voice recipe (1 epoch, two speaker folds) with a learning rate, UAR selection and `tune`."""
    tiny_voice_recipe(path, data, model_lines="dropout = 0.3")  # its [optim] table comes last
    path.write_text(path.read_text() + f'lr = 0.003\nselect_on = "uar"\n{tune}\n')
    return path


SPACE = """[tune]
folds = [1, 2]
pruner = "median"
[tune.space]
"optim.lr" = { low = 1e-4, high = 1e-2, log = true }
"model.dropout" = { low = 0.0, high = 0.5 }
"optim.batch_size" = { choices = [4, 8] }
"model.channels" = { choices = [[4, 8], [8, 8]] }
"""


def test_a_tiny_tune_writes_its_table_plot_and_best_recipe(tmp_path, corpus):
    recipe = _recipe(tmp_path / "voice.toml", corpus, SPACE)
    out = tmp_path / "tune"
    result = runner.invoke(app, ["tune", str(recipe), "--trials", "3", "--out", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "tune.json").read_text())
    assert len(summary["trials"]) == 3 and summary["folds"] == [1, 2] and summary["metric"] == "uar"
    complete = [t for t in summary["trials"] if t["state"] == "complete"]
    best = max(complete, key=lambda t: t["uar"])
    assert summary["best"]["trial"] == best["trial"] and summary["best"]["value"] == best["uar"]
    for t in complete:  # every fold of every completed trial trained: two folds of one epoch
        assert t["epochs_run"] == 2 and 0.0 <= t["uar"] <= 1.0
        assert {p.name for p in (out / f"trial-{t['trial']}").iterdir()} == {"fold1", "fold2"}
        assert 1e-4 <= t["params"]["optim.lr"] <= 1e-2 and t["params"]["optim.batch_size"] in (4, 8)
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2] and "optim.lr" in rows[0]
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the best recipe loads, holds the best trial's values and keeps the rest (unexpanded)
    written = load_recipe(out / "best.toml")
    values = summary["best"]["values"]
    assert written.optim.lr == values["optim.lr"] and written.optim.batch_size == values["optim.batch_size"]
    assert written.model["dropout"] == values["model.dropout"] and written.model["channels"] == values["model.channels"]
    assert written.model["segment_seconds"] == 0.5 and written.optim.epochs == 1
    assert written.tune == tomllib.loads(SPACE)["tune"]
    assert "trial" in result.stdout and "best: trial" in result.stdout


def test_pruning_stops_trials_and_a_tune_with_no_completed_trial_says_so(tmp_path, corpus):
    space = SPACE.replace('pruner = "median"', "pruner = { threshold = 1.01 }\nwarmup_epochs = 0")
    recipe = _recipe(tmp_path / "voice.toml", corpus, space)
    out = tmp_path / "tune"
    result = runner.invoke(app, ["tune", str(recipe), "--trials", "2", "--out", str(out)])
    assert result.exit_code == 2 and "no trial completed (pruned)" in result.output, result.output
    summary = json.loads((out / "tune.json").read_text())
    assert [t["state"] for t in summary["trials"]] == ["pruned", "pruned"]
    assert all(t["epochs_run"] == 1 for t in summary["trials"])  # stopped after the first epoch
    assert all(t["uar"] is None and t["last_intermediate"] is not None for t in summary["trials"])
    assert not (out / "best.toml").exists()


@pytest.mark.parametrize("tune, expected", [
    ("", "no [tune] table"),
    ("[tune]\nfolds = [1]\n", "the search space is empty"),
    ("[tune.space]\n", "the search space is empty"),
    ('[tune.space]\n"optim.lr" = { low = 0.1, high = 0.01 }\n', "must be below high"),
    ('[tune.space]\n"optim.lr" = { low = 0.0, high = 0.01, log = true }\n', "a log range needs low > 0"),
    ('[tune.space]\n"optim.lr" = { choices = [] }\n', "choices must be a non-empty list"),
    ('[tune.space]\n"optim.lrate" = { low = 0.001, high = 0.01 }\n', "'optim.lrate' is not in the recipe"),
    ('[tune.space]\n"model.dropuot" = { low = 0.1, high = 0.2 }\n', "'model.dropuot' is not in the recipe"),
    ('[tune]\nfolds = 3\n[tune.space]\n"optim.lr" = { low = 0.001, high = 0.01 }\n', "folds must be a list"),
    ('[tune]\nwarmup_epochs = "two"\n[tune.space]\n"optim.lr" = { low = 0.001, high = 0.01 }\n', "warmup_epochs must be"),
    ('[tune]\npruner = { threshold = "high" }\n[tune.space]\n"optim.lr" = { low = 0.001, high = 0.01 }\n', "pruner must be"),
    ('[tune]\nfolds = [3]\n[tune.space]\n"optim.lr" = { low = 0.001, high = 0.01 }\n', "fold numbers from 1 to 2"),
    ('[tune]\npruner = "hyperband"\n[tune.space]\n"optim.lr" = { low = 0.001, high = 0.01 }\n', "pruner must be"),
])
def test_bad_search_spaces_are_refused_before_any_trial(tmp_path, corpus, tune, expected):
    recipe = _recipe(tmp_path / "voice.toml", corpus, tune)
    result = runner.invoke(app, ["tune", str(recipe), "--trials", "2", "--out", str(tmp_path / "tune")])
    assert result.exit_code == 2 and expected in result.output, result.output
    assert "Traceback" not in result.output and not list((tmp_path / "tune").glob("trial-*"))
