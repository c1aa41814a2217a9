"""`emofusion evaluate`: a model's metrics on a labelled dataset, or pooled over cross-validation folds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..data.registry import DATASETS
from .common import check_output, fail, fail_with, warn


def evaluate(
    dataset: str = typer.Option(..., "--dataset", help=f"Dataset reader: {', '.join(DATASETS)}."),
    root: Path = typer.Option(..., "--root", help="Dataset folder (or the manifest file for --dataset manifest)."),
    split: Optional[str] = typer.Option(
        None, "--split", help="Split to evaluate, or 'all' (default: val for fer2013, dev for meld and goemotions, all otherwise)."
    ),
    model: str = typer.Option("default", "--model", help="Bundled model name, model folder, or hub id."),
    speakers: Optional[str] = typer.Option(
        None, "--speakers", help="Comma-separated speaker ids to keep (e.g. ravdess_17,ravdess_18): held-out-speaker evaluation."
    ),
    cv_dir: Optional[Path] = typer.Option(
        None, "--cv-dir", help="Folder of fold models (fold*/last/): each predicts its own held-out speakers, pooled. Ignores --model."
    ),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the report as JSON to PATH, or '-' for stdout (JSON only)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the confusion matrix to this PNG file."),
    calibrate: str = typer.Option(
        "off", "--calibrate", help="Voice datasets: 'speaker' reads each clip relative to its speaker's own baseline "
        "(mean and spread of the voice functionals over that speaker's clips), as an analysis calibrates over one "
        "recording; 'off' (default) reads each clip alone."),
) -> None:
    """Evaluate a model on a labelled dataset: accuracy, UAR, F1, per-class scores, confusion matrix, ROC-AUC, ECE."""
    from ..data import get_dataset
    from ..errors import EmofusionError
    from ..evaluate import (ALL, DEFAULT_SPLITS, evaluate_cross_validation, evaluate_dataset, jsonable, print_summary,
                            require_net)
    from ..models import load_model

    try:
        spec = get_dataset(dataset)
    except EmofusionError as exc:
        fail_with(exc, dataset)
    if not root.exists():
        fail(str(root), f"no such file or folder; expected {spec.layout}")
    check_output(json_out, "--json")
    check_output(plot, "--plot")
    from ..evaluate.predict import check_calibrate_mode

    try:
        check_calibrate_mode(calibrate, spec.modality)  # before the model loads
    except EmofusionError as exc:
        fail_with(exc, "--calibrate")
    if cv_dir is not None and speakers is not None:
        fail(str(cv_dir), "give --cv-dir or --speakers, not both (each fold model evaluates its own held-out speakers)")
    split_name = split if split is not None else DEFAULT_SPLITS.get(spec.name, ALL)
    speaker_list = [s.strip() for s in speakers.split(",") if s.strip()] if speakers is not None else None
    if speakers is not None and not speaker_list:
        fail("--speakers", "no speaker ids given")

    subject = str(root)
    try:
        if cv_dir is not None:
            subject = str(cv_dir)
            report = evaluate_cross_validation(cv_dir, spec, root, split=split_name, calibrate=calibrate)
        else:
            subject = model
            loaded = load_model(model, load_text_encoder=spec.modality == "text")
            require_net(loaded, spec.modality, spec.name)
            subject = str(root)
            report = evaluate_dataset(loaded, spec, root, split=split_name, speakers=speaker_list, calibrate=calibrate)
    except EmofusionError as exc:
        fail_with(exc, subject)
    except ValueError as exc:  # a reader's own complaint about a file's content (readers start with the path)
        fail(subject, str(exc).removeprefix(f"{subject}: ") or str(exc))

    if not report["model"].get("trained", False):
        warn(f"model {report['model']['name']!r} has no trained {spec.modality} weights: "
             "its output is random, these metrics are chance")
    if plot is not None:
        from ..metrics import plot_confusion_matrix

        try:
            plot_confusion_matrix(
                report["confusion_matrix"], report["labels"], plot.expanduser(),
                title=f"{report['model']['name']} on {spec.name} ({split_name}), n={report['n']}",
            )
        except OSError as exc:
            fail(str(plot), str(exc))
    text = json.dumps(jsonable(report), indent=2) + "\n"
    if json_out == "-":
        sys.stdout.write(text)
        return
    if json_out is not None:
        try:
            Path(json_out).expanduser().write_text(text)
        except OSError as exc:
            fail(json_out, str(exc))
    print_summary(report)
