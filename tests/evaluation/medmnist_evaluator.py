"""MedMNIST's own evaluator, ``getAUC`` and ``getACC``, for the binary-class and multi-class tasks.

Reimplemented (not vendored) from MedMNIST/MedMNIST ``medmnist/evaluator.py`` at commit
fba41dc0bc5103ac5613f1b440fc605d60fa1886 (Apache-2.0), keeping its exact rules:

* ``getAUC``: binary-class -> ``roc_auc_score(y_true, y_score[:, -1])``; multi-class -> the mean over the
  columns of ``roc_auc_score(y_true == i, y_score[:, i])``;
* ``getACC``: binary-class -> ``accuracy_score(y_true, y_score[:, -1] > 0.5)``; multi-class ->
  ``accuracy_score(y_true, argmax(y_score))``.

The multi-label task is left out: no dataset of the harness has one.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score


def get_auc(y_true: np.ndarray, y_score: np.ndarray, task: str) -> float:
    if task == "binary-class":
        return float(roc_auc_score(y_true, y_score[:, -1]))
    total = 0.0
    for i in range(y_score.shape[1]):
        total += roc_auc_score(np.where(y_true == i, 1, 0), y_score[:, i])
    return total / y_score.shape[1]


def get_acc(y_true: np.ndarray, y_score: np.ndarray, task: str, threshold: float = 0.5) -> float:
    if task == "binary-class":
        return float(accuracy_score(y_true, (y_score[:, -1] > threshold).astype(y_true.dtype)))
    return float(accuracy_score(y_true, np.argmax(y_score, axis=1)))
