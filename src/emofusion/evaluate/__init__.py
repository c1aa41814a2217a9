"""`emofusion evaluate`: metrics of a model on a labelled dataset.

Face datasets (fer2013, imagefolder) go through the face net, speech datasets (ravdess,
emodb, cremad, manifest) through the voice net, MELD through the text net. Preprocessing is
the one in `emofusion.features` (the same as training); nothing is re-implemented here.

    evaluate_dataset(model, "ravdess", root, speakers=["ravdess_17", ...])  -> report dict
    evaluate_cross_validation(cv_dir, "ravdess", root)                        -> pooled report

A report is `emofusion.metrics.classification_report` (accuracy, uar, macro_f1,
weighted_f1, per_class, confusion_matrix, roc_auc_ovr, ece, n, ...) plus `dataset`,
`root`, `split`, `model`, `skipped` ({reason: count}) and, for text with sentiment truth,
`sentiment`. Nothing is ever reported on n=0: when no item is left an EvaluationError
(a ValueError) says why.
"""

from __future__ import annotations

from ..errors import EvaluationError
from .predict import predict_items, require_net
from .report import jsonable, print_summary
from .run import ALL, DEFAULT_SPLITS, evaluate_cross_validation, evaluate_dataset, fold_model_dirs

__all__ = ["ALL", "DEFAULT_SPLITS", "EvaluationError", "evaluate_cross_validation", "evaluate_dataset",
           "fold_model_dirs", "jsonable", "predict_items", "print_summary", "require_net"]
