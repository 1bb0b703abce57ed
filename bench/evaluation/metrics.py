"""Classification metrics computed from saved softmax probabilities.

Everything is scikit-learn underneath; this module fixes the conventions (which labels, which
average, what happens when a class is missing) so that every record in the harness means the same.

Conventions
-----------
* ``y_true`` holds integer labels in ``range(K)``; ``probs`` is ``(N, K)`` with rows summing to 1
  (within :data:`PROB_SUM_TOLERANCE`; accepted rows are renormalised exactly before scoring).
  Predictions are ``probs.argmax(axis=1)``. A binary task is ``K == 2`` with column 1 the positive
  class.
* Every per-class quantity is taken over **all K classes of the task** (``labels=range(K)``), not
  only over the classes that happen to occur, so a class with no test image keeps its row in the
  confusion matrix and its entry in ``per_class``.

Balanced accuracy
-----------------
The ISIC challenge defines balanced multi-class accuracy as the mean, over the diagnostic categories
of the task, of ``true_positives / positives``, i.e. the mean per-class recall over all K classes.
scikit-learn's ``balanced_accuracy_score`` averages the per-class recall over the classes *present in
y_true* only. The two agree whenever every class occurs in ``y_true`` (always the case for a proper,
stratified test split) and differ only when a class is absent. Both are reported:

* ``balanced_accuracy`` -- the ISIC definition, a headline metric. When a class is absent its recall
  is 0/0, so the mean over the K classes is **NaN**.
* ``balanced_accuracy_sklearn`` -- ``sklearn.metrics.balanced_accuracy_score``: the mean recall over
  the classes present, i.e. the absent classes are dropped from the average. It is kept because it is
  what scikit-learn-based papers report; it never is NaN.

Absent classes (the one rule)
-----------------------------
A class of the task with no image in ``y_true`` has no recall and no ROC curve. Every score that
averages a per-class quantity over the K classes of the task -- ``balanced_accuracy``, ``macro_f1``
and ``auc`` -- is then **NaN** rather than quietly becoming an average over fewer classes, and
``absent_classes`` names the classes responsible. In particular:

* ``auc``: binary -> ``roc_auc_score`` on column 1, NaN when ``y_true`` holds a single class;
  multiclass -> macro one-vs-rest over ``labels=range(K)``, NaN when any class is absent (its
  one-vs-rest AUC is undefined; scikit-learn raises or warns there depending on its version, so the
  case is decided here before calling it).
* ``macro_f1``: mean of the K per-class F1 scores, NaN when any class is absent. Otherwise it equals
  ``f1_score(average="macro", labels=range(K))``.
* ``sensitivity`` / ``specificity`` (binary only): recall of class 1 / class 0, NaN when ``y_true``
  has no positive / no negative image.
* ``per_class``: ``precision`` is NaN for a class never predicted, ``recall`` is NaN for a class
  absent from ``y_true``, ``f1`` is NaN only for a class neither present nor predicted (an absent
  class that *is* predicted has F1 = 0, scikit-learn's ``2TP / (2TP + FP + FN)``).

These are the only places NaN appears; ``accuracy`` and ``balanced_accuracy_sklearn`` are always
finite. ``json.dumps`` writes NaN as ``NaN``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from bench.errors import DataError

HEADLINE_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1", "auc")
"""The metrics leaderboards show, in display order; all are higher-is-better."""

PROB_SUM_TOLERANCE = 1e-3
"""How far a row of ``probs`` may sum from 1: float32/float16 softmax outputs, not logits."""


def validate_predictions(
    y_true: np.ndarray, probs: np.ndarray, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Check saved predictions and return ``(labels as int64, probs as float64 with rows summing to 1)``.

    Raises :class:`DataError` with a one-line message for anything that would otherwise produce a
    wrong number quietly: mismatched shapes, logits instead of probabilities, labels out of range.
    """
    probs = np.asarray(probs)
    y = np.asarray(y_true)
    if probs.ndim != 2:
        raise DataError(f"probs must be a 2-D (images, classes) array, got shape {probs.shape}")
    n, k = probs.shape
    if n_classes is not None and k != n_classes:
        raise DataError(f"probs has {k} columns but the task has {n_classes} classes")
    if k < 2:
        raise DataError(f"probs has {k} column(s); a classification task needs at least 2")
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"y_true has shape {y.shape} but probs has {n} rows; expected shape ({n},)")
    if n == 0:
        raise DataError("no images to score: y_true and probs are empty")
    if not np.issubdtype(probs.dtype, np.number) or not np.all(np.isfinite(probs)):
        raise DataError("probs contains NaN, infinite or non-numeric values")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.mod(y, 1) == 0):
            raise DataError(f"y_true must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    outside = (y < 0) | (y >= k)
    if outside.any():
        raise DataError(f"y_true holds label {y[outside][0]} outside range({k})")
    probs = probs.astype(np.float64)
    if probs.min() < -PROB_SUM_TOLERANCE:
        raise DataError(f"probs has negative entries (min {probs.min():.3g}); expected softmax outputs")
    sums = probs.sum(axis=1)
    bad = np.abs(sums - 1.0) > PROB_SUM_TOLERANCE
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"probs row {row} sums to {sums[row]:.4g}, not 1 (logits instead of softmax?)")
    probs = np.clip(probs, 0.0, None)
    return y, probs / probs.sum(axis=1, keepdims=True)


def roc_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC by the module's rule: binary on column 1, else macro one-vs-rest; NaN if a class is absent."""
    y, p = validate_predictions(y_true, probs)
    k = p.shape[1]
    if np.unique(y).size < k:
        return float("nan")
    if k == 2:
        return float(roc_auc_score(y, p[:, 1]))
    return float(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(k))))


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Score one model's test predictions; see the module docstring for every convention.

    Returns a JSON-serialisable dict with ``accuracy``, ``balanced_accuracy`` (ISIC),
    ``balanced_accuracy_sklearn``, ``macro_f1``, ``auc``, ``absent_classes`` (list of names),
    ``per_class`` ({name: {precision, recall, f1, support}}), ``confusion_matrix`` (K x K nested list,
    rows = true class, columns = predicted class, in the order of ``classes``) and, for binary tasks,
    ``sensitivity`` and ``specificity``.
    """
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise DataError(f"class names must be distinct, got {classes}")
    y, p = validate_predictions(y_true, probs, n_classes=len(classes))
    k = len(classes)
    labels = list(range(k))
    pred = p.argmax(axis=1)

    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, average=None, zero_division=np.nan
    )
    with warnings.catch_warnings():
        # Raised when a class is predicted but absent from y_true: exactly the documented case.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced_sklearn = balanced_accuracy_score(y, pred)

    result: dict = {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(np.mean(recall)),
        "balanced_accuracy_sklearn": float(balanced_sklearn),
        "macro_f1": float(np.mean(f1)) if support.all() else float("nan"),
        "auc": roc_auc(y, p),
        "absent_classes": [name for name, count in zip(classes, support, strict=True) if count == 0],
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
    }
    if k == 2:
        result["sensitivity"] = float(recall[1])
        result["specificity"] = float(recall[0])
    return result
