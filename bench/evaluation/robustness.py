"""Robustness to corruptions as MedMNIST-C scores it: balanced error per corruption and severity, and relative to
a reference model.

Di Salvo et al. (MedMNIST-C, 2024, and their ``medmnistc.eval.Evaluator``) score a model by its balanced error,
``BE = 1 - balanced accuracy``, on each corruption at each severity; a corruption's error is the mean over its
severities, and two figures compare models:

* the **relative balanced error**, each corruption's error divided by a reference model's on the same
  corruption, averaged over corruptions (their "normalised BE", with AlexNet as the reference);
* the **relative degradation** (their rBE): each corruption's error minus the model's clean error, divided by
  the same difference of the reference, averaged: how much of the damage is the corruption's, not the model's.

Pure functions over the stored parts of a corrupted eval set (:class:`bench.evaluation.eval_results.EvalSetResult`);
a balanced accuracy that is undefined (a class absent from the test split) gives a NaN error, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from bench.evaluation.eval_results import EvalSetResult, split_part

METRIC = "balanced_accuracy"
"""What a balanced error is one minus: the metric table's balanced accuracy (mean recall over the task's classes)."""


def balanced_errors(result: EvalSetResult) -> dict[str, dict[int, float]]:
    """``{corruption: {severity: balanced error}}`` of a corrupted set, in its stored order."""
    out: dict[str, dict[int, float]] = {}
    for part in result.parts:
        corruption, severity = split_part(part)
        out.setdefault(corruption, {})[severity] = 1.0 - result.value(part, METRIC)
    return out


def corruption_errors(result: EvalSetResult) -> dict[str, float]:
    """Each corruption's balanced error, the mean over its severities."""
    return {c: float(np.mean(list(by_severity.values()))) for c, by_severity in balanced_errors(result).items()}


def mean_balanced_error(errors: Mapping[str, float]) -> float:
    """The mean over corruptions of their errors (NaN with none)."""
    return float(np.mean(list(errors.values()))) if errors else math.nan


def relative_balanced_error(errors: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """The mean over the corruptions both have of ``errors[c] / reference[c]`` (NaN where none is shared or the
    reference's error is 0)."""
    shared = [c for c in errors if c in reference and reference[c] > 0]
    return float(np.mean([errors[c] / reference[c] for c in shared])) if shared else math.nan


def relative_degradation(
    errors: Mapping[str, float], clean: float, reference: Mapping[str, float], reference_clean: float
) -> float:
    """MedMNIST-C's rBE: the mean over shared corruptions of ``(errors[c] - clean) / (reference[c] - reference_clean)``
    (NaN where none is shared or the reference lost nothing to a corruption)."""
    shared = [c for c in errors if c in reference and reference[c] - reference_clean != 0]
    if not shared:
        return math.nan
    return float(np.mean([(errors[c] - clean) / (reference[c] - reference_clean) for c in shared]))
