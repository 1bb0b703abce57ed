"""Every metric of the table computed the plain way, with scikit-learn: the oracle the tests compare against.

Written from the definitions in :mod:`bench.evaluation.metrics` (and, for ``balanced_accuracy_isic``, from the
ISIC challenge scorer, isic-challenge-scoring ``metrics.py``: ``_to_labels`` marks rows with several maxima
'undecided', ``_label_balanced_multiclass_accuracy`` divides the confusion matrix's diagonal by the true-class
frequencies), without the harness's vectorised formulas. Scores are used as given, never renormalised.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)

NAN = math.nan


def _all_present(y: np.ndarray, k: int) -> bool:
    return np.unique(y).size == k


def _isic_balanced_accuracy(y: np.ndarray, probs: np.ndarray) -> float:
    k = probs.shape[1]
    top = probs.max(axis=1, keepdims=True)
    pred = np.where((probs == top).sum(axis=1) > 1, -1, probs.argmax(axis=1))  # -1: 'undecided'
    cm = confusion_matrix(y, pred, labels=list(range(k)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.mean(np.diagonal(cm) / np.bincount(y, minlength=k)))


def sklearn_metric(name: str, y: np.ndarray, probs: np.ndarray, positive: int = 1) -> float:
    """``name`` of ``(y, probs)`` by scikit-learn; NaN where the absent-class rule says so."""
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    labels = list(range(k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # absent classes: exactly the cases the rule decides
        if name == "accuracy":
            return float(accuracy_score(y, pred))
        if name == "balanced_accuracy":
            return float(balanced_accuracy_score(y, pred)) if _all_present(y, k) else NAN
        if name == "balanced_accuracy_sklearn":
            return float(balanced_accuracy_score(y, pred))
        if name == "balanced_accuracy_isic":
            return _isic_balanced_accuracy(y, probs)
        if name == "macro_f1":
            return float(f1_score(y, pred, average="macro", labels=labels)) if _all_present(y, k) else NAN
        if name == "auc":
            if not _all_present(y, k):
                return NAN
            if k == 2:
                return float(roc_auc_score(y == positive, probs[:, positive]))
            return float(roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=labels))
        if name == "f1":
            return float(f1_score(y, pred, pos_label=positive, labels=labels, zero_division=np.nan))
        if name == "sensitivity":
            return float(recall_score(y, pred, pos_label=positive, labels=labels, zero_division=np.nan))
        if name == "specificity":
            return float(recall_score(y, pred, pos_label=1 - positive, labels=labels, zero_division=np.nan))
    raise KeyError(name)
