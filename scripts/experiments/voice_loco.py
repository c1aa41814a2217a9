#!/usr/bin/env python
"""Groundwork for issue 18: how the voice functionals travel across corpora, with and without
per-speaker standardisation (a speaker's own mean and spread over their clips), measured
leave-one-corpus-out.

    PYTHONPATH=src python scripts/experiments/voice_loco.py [--c 0.003]

Features: `spectral_v1` functionals of each whole clip (what the bundled voice part's regression
reads). Classifier: L2 logistic regression, balanced class weights (the bundled recipe's).
Corpora: RAVDESS actors 1-20, EmoDB (boredom left out), tess-eval (test only, never trained on).
Rows: train on RAVDESS + EmoDB -> test tess-eval; train on RAVDESS -> test EmoDB; train on
EmoDB -> test RAVDESS. Standardisation: "global" (the training set's mean and SD), or "speaker"
(each clip's features standardised over the clips of its own speaker, in training and at test;
what a recording's calibration over its own voiced windows would approximate).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from emofusion.data import default_data_root, get_dataset
from emofusion.features import spectral_functionals
from emofusion.labels import EMOTIONS
from emofusion.media import read_audio
from emofusion.metrics import classification_report

CACHE = Path(__file__).resolve().parents[2] / "benchmarks" / ".cache" / "voice_loco"


def corpus(name: str, root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, label index, speaker) of a corpus, cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    file = CACHE / f"{name}.npz"
    if file.exists():
        d = np.load(file, allow_pickle=False)
        return d["x"], d["y"], d["s"]
    scan = get_dataset("manifest" if name == "tess" else name).scan(root, "all")
    items = [i for i in scan.items if i.label in EMOTIONS]
    t0 = time.time()
    x = np.stack([spectral_functionals(read_audio(str(i.path))) for i in items])
    print(f"{name}: {len(items)} clips in {time.time() - t0:.0f} s", file=sys.stderr)
    y = np.array([EMOTIONS.index(i.label) for i in items])
    s = np.array([i.speaker for i in items])
    np.savez(file, x=x, y=y, s=s)
    return x, y, s


def by_speaker(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for sp in np.unique(speakers):
        rows = speakers == sp
        mu, sd = x[rows].mean(0), x[rows].std(0) + 1e-6
        out[rows] = (x[rows] - mu) / sd
    return out


def run(train, test, mode: str, c: float) -> dict:
    from sklearn.linear_model import LogisticRegression

    (xa, ya, sa), (xb, yb, sb) = train, test
    if mode == "speaker":
        xa, xb = by_speaker(xa, sa), by_speaker(xb, sb)
    mu, sd = xa.mean(0), xa.std(0) + 1e-6
    xa, xb = np.clip((xa - mu) / sd, -5, 5), np.clip((xb - mu) / sd, -5, 5)
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    clf.fit(xa, ya)
    probs = np.zeros((len(xb), len(EMOTIONS)))
    probs[:, clf.classes_] = clf.predict_proba(xb)
    rep = classification_report(yb, probs, EMOTIONS)
    return {"n": int(len(yb)), "accuracy": round(rep["accuracy"], 4), "uar": round(rep["uar"], 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--c", type=float, default=0.003)
    args = ap.parse_args()
    data = default_data_root()
    rav = corpus("ravdess", data / "ravdess-speech-16k")
    emo = corpus("emodb", data / "emodb")
    tess = corpus("tess", data / "tess-eval" / "manifest.csv")
    both = tuple(np.concatenate([a, b]) for a, b in zip(rav, emo))
    rows = {"ravdess+emodb -> tess": (both, tess), "ravdess -> emodb": (rav, emo), "emodb -> ravdess": (emo, rav)}
    out = {name: {mode: run(tr, te, mode, args.c) for mode in ("global", "speaker")} for name, (tr, te) in rows.items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
