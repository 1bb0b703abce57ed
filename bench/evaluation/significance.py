"""Is model A better than model B on the same test images? The paired bootstrap and McNemar's exact test.

* :func:`paired_bootstrap` -- both models rescored on the *same* resamples of the test images, giving the CI
  and a two-sided p-value of the difference ``a - b``. Pairing removes the image-difficulty variance the two
  models share, so it detects far smaller differences than comparing two separate CIs.
* :func:`mcnemar` -- exact McNemar test on hard predictions (accuracy only, no resampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from bench.errors import DataError
from bench.evaluation.bootstrap import MetricFn, PairedComparison, check_confidence, resample_models


def paired_bootstrap(
    y_true: np.ndarray,
    probs_a: np.ndarray | Sequence[np.ndarray],
    probs_b: np.ndarray | Sequence[np.ndarray],
    metric: str | MetricFn,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    positive: int = 1,
) -> PairedComparison:
    """Paired bootstrap of ``metric(a) - metric(b)``: both models rescored on the same resampled images.

    ``probs_a``/``probs_b`` may also be lists, one array per training seed of a backbone: the score of
    a side is then its mean over seeds, on every resample, so the comparison covers seed-to-seed
    variation as well as test-set sampling. The p-value is :meth:`bench.evaluation.bootstrap.Resampled.paired`'s.
    """
    check_confidence(confidence)
    sides = {"a": probs_a, "b": probs_b}
    (resampled,) = resample_models(y_true, sides, [metric], n_resamples, seed, positive).values()
    return resampled.paired("a", "b", confidence)


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test: only the images on which exactly one model is right carry information."""

    only_a_correct: int
    only_b_correct: int
    p_value: float


def mcnemar(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> McNemarResult:
    """Exact (binomial) McNemar test of equal accuracy for two models' hard predictions.

    Under the null hypothesis each image on which exactly one model is right is equally likely to
    favour either, so ``only_a_correct ~ Binomial(discordant, 1/2)``; the p-value is two-sided
    (``scipy.stats.binomtest``) and 1 when there are no discordant images.
    """
    y, a, b = (np.asarray(x) for x in (y_true, pred_a, pred_b))
    if not (y.ndim == a.ndim == b.ndim == 1) or not (y.shape == a.shape == b.shape):
        shapes = f"{y.shape}, {a.shape}, {b.shape}"
        raise DataError(f"y_true, pred_a, pred_b must be 1-D arrays of equal length, got {shapes}")
    a_right, b_right = a == y, b == y
    only_a = int(np.count_nonzero(a_right & ~b_right))
    only_b = int(np.count_nonzero(b_right & ~a_right))
    discordant = only_a + only_b
    p_value = float(binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0
    return McNemarResult(only_a_correct=only_a, only_b_correct=only_b, p_value=p_value)
