"""Late fusion of per-modality probabilities over the modalities that are present."""

from __future__ import annotations

import numpy as np

from ..options import MODALITIES  # noqa: F401  (the modality names live with the analysis options)


def fuse(probs: dict[str, np.ndarray | None], weights: dict[str, float]) -> np.ndarray | None:
    """Weighted geometric mean (a product of experts) of the present modalities' distributions.

    `probs` maps modality -> (..., C) probabilities or None when absent. Absent modalities
    take no part: they are not treated as uniform or as zeros. Returns None when none is present.
    """
    log_sum = None
    total = 0.0
    for name, p in probs.items():
        if p is None:
            continue
        w = float(weights.get(name, 1.0))
        if w <= 0:
            continue
        term = w * np.log(np.clip(p, 1e-8, 1.0))
        log_sum = term if log_sum is None else log_sum + term
        total += w
    if log_sum is None:
        return None
    log_sum = log_sum / total
    log_sum = log_sum - log_sum.max(axis=-1, keepdims=True)
    out = np.exp(log_sum)
    return out / out.sum(axis=-1, keepdims=True)
