#!/usr/bin/env python
"""Issue 18: how the voice functionals regression travels across corpora, measured
leave-one-corpus-out, with and without per-speaker standardisation (calibration), with and without
the band levels, with and without simulated recording conditions in training.

    PYTHONPATH=src python scripts/experiments/voice_loco.py                 # the main table
    PYTHONPATH=src python scripts/experiments/voice_loco.py --augment 1     # + 1 copy of each training clip
                                                                            #   through train/channel.py
    PYTHONPATH=src python scripts/experiments/voice_loco.py --calibration-size   # TESS vs baseline size

Features: `spectral_v1` functionals of each whole clip. Classifier: L2 logistic regression with
balanced class weights, inputs standardised on the training set and held within 5 SD (as the
bundled head). Corpora: RAVDESS actors 1-20, EmoDB (boredom left out), tess-eval (test only).
Rows: RAVDESS -> EmoDB and EmoDB -> RAVDESS (the selection criterion: their mean UAR), RAVDESS +
EmoDB -> tess-eval (reported, never used to choose), RAVDESS 10 folds by actor pair (fold k also
holds out the k-th EmoDB speaker; the recipe's protocol). "speaker": each clip's features
standardised over the clips of its own speaker, in training and at test (what an analysis's
calibration does over a recording's voiced windows). "no band levels": without the mean and
percentiles of the log-mel bands and MFCCs (`features.spectral_band_level_columns`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from emofusion.data import default_data_root, get_dataset
from emofusion.features import spectral_band_level_columns, spectral_functionals
from emofusion.labels import EMOTIONS
from emofusion.media import read_audio
from emofusion.metrics import classification_report
from emofusion.models.voice import standardise_per_speaker

CACHE = Path(__file__).resolve().parents[2] / "benchmarks" / ".cache" / "voice_loco"
CORPORA = {"ravdess": "ravdess-speech-16k", "emodb": "emodb", "tess": "tess-eval/manifest.csv"}


def _items(name: str):
    scan = get_dataset("manifest" if name == "tess" else name).scan(default_data_root() / CORPORA[name], "all")
    return [i for i in scan.items if i.label in EMOTIONS]


def corpus(name: str, augment: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, label index, speaker) of a corpus, cached; with `augment`, (copies, N, D) features of
    the clips through random recording conditions (`emofusion.train.channel`, seeded)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    file = CACHE / (f"{name}.npz" if not augment else f"{name}_aug{augment}.npz")
    if file.exists():
        d = np.load(file, allow_pickle=False)
        return d["x"], d["y"], d["s"]
    items = _items(name)
    t0 = time.time()
    wavs = [read_audio(str(i.path)) for i in items]
    if augment:
        from emofusion.train.channel import random_recording

        rng = np.random.default_rng(18)
        x = np.stack([np.stack([spectral_functionals(random_recording(w, rng)) for w in wavs]) for _ in range(augment)])
    else:
        x = np.stack([spectral_functionals(w) for w in wavs])
    x = np.nan_to_num(x)
    print(f"{name}: {len(items)} clips in {time.time() - t0:.0f} s", file=sys.stderr)
    y = np.array([EMOTIONS.index(i.label) for i in items])
    s = np.array([i.speaker for i in items])
    np.savez(file, x=x, y=y, s=s)
    return x, y, s


def fit_predict(xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, c: float = 0.001, make=None) -> np.ndarray:
    """Probabilities for `xb` of a classifier fitted on (xa, ya), inputs standardised on xa and held
    within 5 SD: the balanced L2 logistic regression with inverse strength `c`, or `make()`."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = xa.mean(0), xa.std(0) + 1e-6
    clf = make() if make is not None else LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    clf.fit(np.clip((xa - mu) / sd, -5, 5), ya)
    probs = np.zeros((len(xb), len(EMOTIONS)))
    probs[:, clf.classes_] = clf.predict_proba(np.clip((xb - mu) / sd, -5, 5))
    return probs


def score(y: np.ndarray, probs: np.ndarray) -> list[float]:
    rep = classification_report(y, probs, EMOTIONS)
    return [round(rep["accuracy"], 4), round(rep["uar"], 4)]


class Setting:
    """One way of reading the features: standardisation, columns, augmentation copies."""

    def __init__(self, mode: str, band_levels: bool, augment: dict[str, np.ndarray] | None):
        self.mode, self.augment = mode, augment
        self.keep = np.ones(spectral_band_level_columns().size, bool) if band_levels else ~spectral_band_level_columns()

    def test(self, data) -> np.ndarray:
        x, _, s = data
        x = x[:, self.keep]
        return standardise_per_speaker(x, s) if self.mode == "speaker" else x

    def train(self, name: str, data, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        x, y, s = data
        rows = np.ones(len(y), bool) if rows is None else rows
        copies = [x[rows]] + ([a[rows] for a in self.augment[name]] if self.augment else [])
        xs = [c[:, self.keep] for c in copies]
        if self.mode == "speaker":
            xs = [standardise_per_speaker(c, s[rows]) for c in xs]
        return np.concatenate(xs), np.concatenate([y[rows]] * len(xs))


def evaluate(setting: Setting, rav, emo, tess, c: float) -> dict:
    out = {}
    xr, yr = setting.train("ravdess", rav)
    xe, ye = setting.train("emodb", emo)
    out["ravdess->emodb"] = score(emo[1], fit_predict(xr, yr, setting.test(emo), c))
    out["emodb->ravdess"] = score(rav[1], fit_predict(xe, ye, setting.test(rav), c))
    out["selection (mean LOCO UAR)"] = round((out["ravdess->emodb"][1] + out["emodb->ravdess"][1]) / 2, 4)
    out["ravdess+emodb->tess"] = score(tess[1], fit_predict(np.concatenate([xr, xe]), np.concatenate([yr, ye]),
                                                            setting.test(tess), c))
    actor = np.array([int(s.split("_")[1]) for s in rav[2]])
    emo_speakers = sorted(set(emo[2]))
    test_r = setting.test(rav)
    probs = np.zeros((len(rav[1]), len(EMOTIONS)))
    for k in range(1, 11):
        held_r, held_e = np.isin(actor, [2 * k - 1, 2 * k]), emo[2] == emo_speakers[k - 1]
        a, b = setting.train("ravdess", rav, ~held_r)
        a2, b2 = setting.train("emodb", emo, ~held_e)
        probs[held_r] = fit_predict(np.concatenate([a, a2]), np.concatenate([b, b2]), test_r[held_r], c)
    out["ravdess 10 folds"] = score(rav[1], probs)
    return out


def calibration_size(rav, emo, tess, c: float, band_levels: bool) -> dict:
    """tess-eval accuracy of the calibrated regression when each speaker's baseline is taken over
    only n of their clips (drawn at random, 10 draws), or over clips of a few emotions only."""
    setting = Setting("speaker", band_levels, None)
    xa = np.concatenate([setting.train("ravdess", rav)[0], setting.train("emodb", emo)[0]])
    ya = np.concatenate([rav[1], emo[1]])
    from sklearn.linear_model import LogisticRegression

    mu, sd = xa.mean(0), xa.std(0) + 1e-6
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(np.clip((xa - mu) / sd, -5, 5), ya)
    x, y, s = tess[0][:, setting.keep], tess[1], tess[2]
    rng = np.random.default_rng(0)

    def accuracy(n: int, emotions: list[str] | None = None) -> list[float]:
        accs = []
        for _ in range(10):
            pred = np.zeros(len(y), int)
            for speaker in np.unique(s):
                rows = np.flatnonzero(s == speaker)
                pool = rows if emotions is None else rows[np.isin(y[rows], [EMOTIONS.index(e) for e in emotions])]
                cal = rng.choice(pool, size=min(n, len(pool)), replace=False)
                m, sc = x[cal].mean(0), x[cal].std(0)
                sc[sc < 1e-6] = 1.0
                pred[rows] = clf.predict(np.clip(((x[rows] - m) / sc - mu) / sd, -5, 5))
            accs.append(float((pred == y).mean()))
        return [round(float(np.mean(accs)), 4), round(float(np.std(accs)), 4)]

    out = {f"{n} clips": accuracy(n) for n in (5, 10, 20, 40, 80, 350)}
    for emotions in (["neutral"], ["angry"], ["neutral", "angry"], ["neutral", "happy", "sad"]):
        out[f"40 clips of {'+'.join(emotions)} only"] = accuracy(40, emotions)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--c", type=float, nargs="+", default=[0.001, 0.003])
    ap.add_argument("--augment", type=int, default=0, help="copies of each training clip through random recording conditions")
    ap.add_argument("--calibration-size", action="store_true")
    args = ap.parse_args()
    rav, emo, tess = corpus("ravdess"), corpus("emodb"), corpus("tess")
    if args.calibration_size:
        print(json.dumps(calibration_size(rav, emo, tess, args.c[-1], band_levels=False)))
        return
    augment = {n: corpus(n, args.augment)[0] for n in ("ravdess", "emodb")} if args.augment else None
    for mode in ("global", "speaker"):
        for band_levels in (True, False):
            for c in args.c:
                row = evaluate(Setting(mode, band_levels, augment), rav, emo, tess, c)
                print(json.dumps({"standardise": mode, "band_levels": band_levels, "c": c, "augment": args.augment, **row}),
                      flush=True)


if __name__ == "__main__":
    main()
