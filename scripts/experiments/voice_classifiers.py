#!/usr/bin/env python
"""Issue 18: non-linear classifiers on the voice functionals, each clip alone (uncalibrated),
leave-one-corpus-out: RAVDESS -> EmoDB, EmoDB -> RAVDESS, RAVDESS + EmoDB -> tess-eval.

    PYTHONPATH=src python scripts/experiments/voice_classifiers.py [svc_rbf_C1 svc_rbf_C0.3 mlp ...]

Features and scoring as scripts/experiments/voice_loco.py (its cache); inputs standardised on the
training set and held within 5 SD. A few minutes per classifier on 2 cores.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from voice_loco import corpus, fit_predict, score  # noqa: E402


def _models() -> dict:
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    return {
        "svc_rbf_C1": lambda: SVC(C=1.0, gamma="scale", class_weight="balanced", probability=True, random_state=0),
        "svc_rbf_C0.3": lambda: SVC(C=0.3, gamma="scale", class_weight="balanced", probability=True, random_state=0),
        "mlp": lambda: MLPClassifier(hidden_layer_sizes=(128,), alpha=1.0, max_iter=300, random_state=0),
    }


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    rav, emo, tess = corpus("ravdess"), corpus("emodb"), corpus("tess")
    models = _models()
    for name in sys.argv[1:] or list(models):
        make, t0 = models[name], time.time()
        row = {"ravdess->emodb": score(emo[1], fit_predict(rav[0], rav[1], emo[0], make=make)),
               "emodb->ravdess": score(rav[1], fit_predict(emo[0], emo[1], rav[0], make=make)),
               "ravdess+emodb->tess": score(tess[1], fit_predict(np.concatenate([rav[0], emo[0]]),
                                                                np.concatenate([rav[1], emo[1]]), tess[0], make=make))}
        row["selection (mean LOCO UAR)"] = round((row["ravdess->emodb"][1] + row["emodb->ravdess"][1]) / 2, 4)
        print(json.dumps({"classifier": name, **row, "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
