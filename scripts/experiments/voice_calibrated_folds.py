#!/usr/bin/env python
"""Issue 18: the calibrated voice reading of the bundled voice recipe on RAVDESS and EmoDB, 10 folds
(fold k holds out RAVDESS actors 2k-1 and 2k and the k-th EmoDB speaker: the recipe's protocol).

    PYTHONPATH=src python scripts/experiments/voice_calibrated_folds.py [--recipe recipes/voice_ravdess_emodb.toml]

With calibration the voice answer is the calibrated regression alone (the recipe's
`functionals.calibrated.weight` is 1.0: the CNN takes no part), so the folds need no CNN: each fold
fits the regression exactly as `emofusion train` does (`VoiceTask.fit_functionals_head` on the
fold's training speakers: C from the recipe's grid by speaker-held-out likelihood, band levels
left out), and its held-out clips are read against their own speaker's clips, as
`emofusion evaluate --calibrate speaker` does. The features of every clip are taken here, once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from emofusion.data import get_dataset, speaker_folds
from emofusion.features import acoustic_functionals, spectral_band_level_columns
from emofusion.labels import EMOTIONS
from emofusion.media import read_audio
from emofusion.metrics import classification_report
from emofusion.models.voice import SpeakerBaseline, fit_calibrated_head
from emofusion.train.recipe import load_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/voice_ravdess_emodb.toml")
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    cal = recipe.model["functionals"]["calibrated"]
    if float(cal.get("weight", 0.5)) != 1.0:
        raise SystemExit("the calibrated reading mixes in the CNN (weight < 1): use emofusion evaluate --cv-dir instead")
    grid = sorted(float(c) for c in (cal["c"] if isinstance(cal["c"], list) else [cal["c"]]))
    ignore = None if cal.get("band_levels", True) else spectral_band_level_columns()
    folds = int(recipe.data.get("folds", 10))
    corpora = []
    for source in recipe.data["sources"]:
        items = [i for i in get_dataset(source["dataset"]).scan(source["root"], "all").items if i.label in EMOTIONS]
        feats = acoustic_functionals([read_audio(str(i.path)) for i in items], recipe.model["functionals"]["feature_set"])
        held = [{i.speaker for i in out} for _, out in speaker_folds(items, folds)]
        corpora.append((source["dataset"], items, feats, held))
    y_all = {name: np.array([EMOTIONS.index(i.label) for i in items]) for name, items, _, _ in corpora}
    probs = {name: np.zeros((len(items), len(EMOTIONS))) for name, items, _, _ in corpora}
    chosen = []
    for k in range(folds):
        train_x, train_y, train_s = [], [], []
        for name, items, feats, held in corpora:
            rows = np.array([i.speaker not in held[k] for i in items])
            train_x.append(feats[rows])
            train_y.append(y_all[name][rows])
            train_s += [i.speaker for i, r in zip(items, rows) if r]
        x, y = np.concatenate(train_x), np.concatenate(train_y)
        head, c = fit_calibrated_head(x, y, train_s, len(EMOTIONS), grid, ignore)
        chosen.append(c)
        for name, items, feats, held in corpora:
            for speaker in held[k]:
                rows = np.flatnonzero([i.speaker == speaker for i in items])
                probs[name][rows] = head.probs(SpeakerBaseline.of(feats[rows]).standardise(feats[rows]))
    out = {"c_per_fold": chosen}
    for name, _, _, _ in corpora:
        rep = classification_report(y_all[name], probs[name], EMOTIONS)
        out[name] = {"n": int(len(y_all[name])), **{k: round(rep[k], 4) for k in ("accuracy", "uar", "macro_f1", "weighted_f1")}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
