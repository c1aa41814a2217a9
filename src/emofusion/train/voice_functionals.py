"""Fit a recipe's acoustic-functionals head onto an already trained voice net.

`emofusion train` fits the head itself (before the first epoch) when the recipe has
`[model] functionals`; this command gives the same head to voice models trained before the
recipe had it, e.g. the folds of a cross-validation:

    python -m emofusion.train.voice_functionals recipes/voice_ravdess_emodb.toml \\
        --fold 3 --model runs/voice-cv/fold3/last --cache-dir runs/voice-cache

The head is fitted on exactly the speakers the recipe (and fold) trains on; the model's own
held-out speakers must be the recipe's validation speakers, so a head never sees them. The
model's validation record (`extra.val`) is measured again with the new head.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..metrics import classification_report
from ..models import load_model
from .loop import short_report
from .recipe import load_recipe
from .tasks import VoiceTask


def attach(recipe_path: str | Path, model_dir: str | Path, fold: int | None = None,
           cache_dir: str | Path | None = None) -> dict:
    """Fit the head of `recipe_path` (fold `fold`) and save it into the voice model at `model_dir`."""
    recipe = load_recipe(recipe_path)
    if recipe.task != "voice" or not recipe.model.get("functionals"):
        raise SystemExit(f"error: {recipe_path}: not a voice recipe with [model] functionals")
    if fold is not None:
        recipe.data["fold"] = fold
    model_dir = Path(model_dir)
    model = load_model(model_dir, load_text_encoder=False)
    if model.voice is None:
        raise SystemExit(f"error: {model_dir}: the model has no voice net")
    task = VoiceTask(recipe, Path(cache_dir or model_dir.parent / "cache"))
    held = sorted((model.config.extra or {}).get("data", {}).get("val_speakers", []))
    if held != task.val_speakers:
        raise SystemExit(f"error: {model_dir} held out {held}, the recipe (fold {fold}) holds out {task.val_speakers}")
    if list(model.config.labels) != list(task.labels):
        raise SystemExit(f"error: {model_dir} has labels {model.config.labels}, the recipe {task.labels}")
    task.attach_functionals(model)
    # the validation record describes the model as saved: the net with its new head
    model.eval()
    report = short_report(classification_report(task.val_y, task.predict_val(model), task.labels))
    model.config.extra = {**(model.config.extra or {}), "val": report}
    model.save_pretrained(model_dir)
    return {"model": str(model_dir), "train_n": int(len(task.train_y)), "train_speakers": len(task.train_speakers),
            **model.config.voice["functionals"], "val": report}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("--model", required=True, action="append", help="voice model folder (repeatable)")
    ap.add_argument("--fold", type=int)
    ap.add_argument("--cache-dir")
    args = ap.parse_args(argv)
    for m in args.model:
        print(attach(args.recipe, m, args.fold, args.cache_dir), flush=True)


if __name__ == "__main__":
    main()
