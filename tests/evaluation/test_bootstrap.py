"""Tests for :mod:`bench.evaluation.bootstrap`: coverage, skipped resamples, shared resamples, AUC on ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from predictions import binary_right_with, noisy_model
from sklearn_oracle import sklearn_metric

from bench.errors import ConfigError
from bench.evaluation.bootstrap import bootstrap_ci, resample_models
from bench.evaluation.metrics import METRICS
from bench.evaluation.significance import paired_bootstrap
from bench.evaluation.values import compute_metrics


def same(actual: float, expected: float) -> bool:
    """Equal to 1e-12, NaN equal to NaN (NaN is a documented value)."""
    if math.isnan(expected):
        return math.isnan(actual)
    return actual == pytest.approx(expected, abs=1e-12)


# (id, y_true, probs): every class present, a class absent, binary, and a single-class y_true.
Y7 = np.random.default_rng(0).integers(0, 7, 120)


@pytest.mark.parametrize("k", [2, 7])
def test_point_is_the_stored_value_for_every_metric(k: int) -> None:
    """The CI's point is what the record stores: the bootstrap reads the same table and positive class."""
    y = Y7 % k
    probs = noisy_model(y, k, 1.0, seed=1)
    stored = compute_metrics(y, probs, [str(i) for i in range(k)], "0" if k == 2 else None).values
    for metric in (m for m in METRICS if m.applies_to(k)):
        point = bootstrap_ci(y, probs, metric.name, n_resamples=2, positive=0).point
        assert point == stored[metric.name] or (math.isnan(point) and math.isnan(stored[metric.name])), metric.name


def test_bootstrap_ci_covers_true_accuracy_at_nominal_rate() -> None:
    """A 95% CI must cover the true accuracy about 95% of the time; too narrow or too wide both fail.

    A classifier right with probability 0.8 is scored on 200 independent test sets of 200 images.
    The percentile bootstrap is slightly liberal at this N, so the accepted band is 90-99%.
    """
    rng = np.random.default_rng(2024)
    n_sets, n_images, p_right = 200, 200, 0.8
    covered = 0
    for i in range(n_sets):
        y = rng.integers(0, 2, n_images)
        probs = binary_right_with(y, rng.random(n_images) < p_right)
        ci = bootstrap_ci(y, probs, "accuracy", n_resamples=500, seed=i)
        covered += ci.low <= p_right <= ci.high
    assert 0.90 <= covered / n_sets <= 0.99


def test_bootstrap_ci_basic_contract() -> None:
    """Unpacks as (point, low, high) around the full-set score; the seed makes it reproducible."""
    y = Y7
    probs = noisy_model(y, 7, 1.0, seed=1)
    ci = bootstrap_ci(y, probs, "balanced_accuracy", n_resamples=300, seed=3)
    point, low, high = ci
    assert point == pytest.approx(compute_metrics(y, probs, list("abcdefg")).values["balanced_accuracy"])
    assert low < point < high
    assert (ci.n_resamples, ci.n_skipped, ci.confidence, ci.metric) == (300, 0, 0.95, "balanced_accuracy")
    assert bootstrap_ci(y, probs, "balanced_accuracy", n_resamples=300, seed=3) == ci
    assert bootstrap_ci(y, probs, "balanced_accuracy", n_resamples=300, seed=4) != ci
    narrower = bootstrap_ci(y, probs, "balanced_accuracy", n_resamples=300, confidence=0.5, seed=3)
    assert low < narrower.low < narrower.high < high


def test_bootstrap_auc_skips_resamples_missing_a_class() -> None:
    """With one positive in 20 images, P(resample has none) = (19/20)^20 = 0.358: those are skipped."""
    y = np.zeros(20, dtype=int)
    y[7] = 1
    probs = noisy_model(y, 2, 1.0, seed=0)
    ci = bootstrap_ci(y, probs, "auc", n_resamples=1000, seed=0)
    assert 300 <= ci.n_skipped <= 420  # 358 expected, binomial sd 15
    assert 0.0 <= ci.low <= ci.point <= ci.high <= 1.0


def test_bootstrap_undefined_on_full_set_is_nan_not_an_error() -> None:
    """AUC of a single-class test set is undefined: NaN CI, every resample skipped, no exception."""
    ci = bootstrap_ci(np.ones(6, dtype=int), noisy_model(np.ones(6, dtype=int), 2, 1.0, seed=0), "auc", 50)
    assert all(math.isnan(v) for v in ci)
    assert ci.n_skipped == 50


@pytest.mark.parametrize(("n_resamples", "confidence"), [(0, 0.95), (100, 1.0), (100, 0.0)])
def test_bootstrap_rejects_meaningless_settings(n_resamples: int, confidence: float) -> None:
    """Zero resamples or a 0%/100% interval cannot produce a CI; say so instead of returning garbage."""
    with pytest.raises(ConfigError):
        bootstrap_ci(Y7, noisy_model(Y7, 7, 1.0, seed=1), "accuracy", n_resamples, confidence)


def tied_scores(y: np.ndarray, k: int, decimals: int, seed: int) -> np.ndarray:
    """Probabilities rounded to ``decimals``: many exact ties between images."""
    probs = np.round(noisy_model(y, k, 0.8, seed), decimals) + 1e-9
    return probs / probs.sum(axis=1, keepdims=True)


Y_TIES = np.random.default_rng(9).integers(0, 4, 150)
# (id, y_true, probs): the vectorised AUC must equal scikit-learn's trapezoid, ties and missing classes included.
AUC_CASES = [
    ("binary, scores tied in tenths", Y_TIES % 2, tied_scores(Y_TIES % 2, 2, 1, seed=1)),
    ("binary, two distinct scores", Y_TIES % 2, tied_scores(Y_TIES % 2, 2, 0, seed=2)),
    ("four classes, ties", Y_TIES, tied_scores(Y_TIES, 4, 1, seed=3)),
    (
        "a class of 2 images: resamples miss it",
        np.r_[Y_TIES[:60] % 3, 3, 3],
        tied_scores(np.r_[Y_TIES[:60] % 3, 3, 3], 4, 2, 4),
    ),
]


@pytest.mark.parametrize(("case_id", "y", "probs"), AUC_CASES, ids=[c[0] for c in AUC_CASES])
def test_vectorised_auc_equals_sklearn_on_every_resample(case_id: str, y: np.ndarray, probs: np.ndarray) -> None:
    fast = bootstrap_ci(y, probs, "auc", n_resamples=150, seed=2)
    slow = bootstrap_ci(y, probs, lambda yy, pp: sklearn_metric("auc", yy, pp), n_resamples=150, seed=2)
    assert tuple(fast) == pytest.approx(tuple(slow), abs=1e-12), case_id
    assert fast.n_skipped == slow.n_skipped


def test_resample_models_shares_resamples_across_models_and_metrics() -> None:
    """One call for several models and metrics gives exactly what separate calls give: nothing leaks between them."""
    y = Y7
    probs = {"a": noisy_model(y, 7, 1.0, seed=1), "b": [noisy_model(y, 7, 2.0, seed=2), noisy_model(y, 7, 0.5, seed=3)]}
    metrics = ["accuracy", "macro_f1", "auc"]
    together = resample_models(y, probs, metrics, n_resamples=200, seed=7)
    assert list(together) == metrics
    for name in metrics:
        alone = bootstrap_ci(y, probs["a"], name, n_resamples=200, seed=7)
        assert together[name].ci("a") == alone
        paired = paired_bootstrap(y, probs["a"], probs["b"], name, n_resamples=200, seed=7)
        assert together[name].paired("a", "b") == paired
        single = resample_models(y, {"b": probs["b"]}, [name], n_resamples=200, seed=7)[name]
        assert np.array_equal(single.scores[0], together[name].scores[1])


def test_resampled_names_are_checked() -> None:
    resampled = resample_models(Y7, {"a": noisy_model(Y7, 7, 1.0, seed=1)}, ["accuracy"], n_resamples=10)["accuracy"]
    with pytest.raises(ConfigError, match="no model 'b' was resampled; models: a"):
        resampled.ci("b")
    with pytest.raises(ConfigError, match="model 'c' has no probabilities"):
        resample_models(Y7, {"c": []}, ["accuracy"])
