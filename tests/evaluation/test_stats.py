"""Tests for :mod:`bench.evaluation.stats`: metric lookup, bootstrap coverage, paired tests, McNemar, leader ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bench.errors import ConfigError, DataError
from bench.evaluation.metrics import compute_metrics, validate_predictions
from bench.evaluation.stats import (
    METRIC_NAMES,
    bootstrap_ci,
    get_metric,
    mcnemar,
    paired_bootstrap,
    resample_models,
    tied_with_leader,
)


def probs_for(pred: np.ndarray, k: int, confidence: float = 0.7) -> np.ndarray:
    """Softmax-like rows whose argmax is ``pred``."""
    pred = np.asarray(pred)
    probs = np.full((pred.size, k), (1 - confidence) / (k - 1))
    probs[np.arange(pred.size), pred] = confidence
    return probs


def noisy_model(y: np.ndarray, k: int, strength: float, seed: int) -> np.ndarray:
    """Probabilities of a model whose logit for the true class is raised by ``strength``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(y.size, k))
    logits[np.arange(y.size), y] += strength
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def binary_right_with(y: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Binary probabilities whose prediction is right exactly where ``correct`` is True."""
    return probs_for(np.where(correct, y, 1 - y), 2)


def same(actual: float, expected: float) -> bool:
    """Equal to 1e-12, NaN equal to NaN (NaN is a documented value)."""
    if math.isnan(expected):
        return math.isnan(actual)
    return actual == pytest.approx(expected, abs=1e-12)


# (id, y_true, probs): every class present, a class absent, binary, and a single-class y_true.
Y7 = np.random.default_rng(0).integers(0, 7, 120)
Y_ABSENT = np.array([0, 0, 1, 1, 1, 0, 1, 0])
LOOKUP_CASES = [
    ("seven_class", Y7, noisy_model(Y7, 7, 1.0, seed=1)),
    ("absent_class", Y_ABSENT, probs_for(np.array([0, 2, 1, 1, 0, 0, 1, 2]), 3)),
    ("binary", Y_ABSENT, noisy_model(Y_ABSENT, 2, 0.5, seed=2)),
    ("single_class", np.ones(5, dtype=int), probs_for(np.array([1, 0, 1, 1, 0]), 2)),
]


@pytest.mark.parametrize(("case_id", "y", "probs"), LOOKUP_CASES, ids=[c[0] for c in LOOKUP_CASES])
def test_metric_lookup_matches_compute_metrics(case_id: str, y: np.ndarray, probs: np.ndarray) -> None:
    """The vectorised confusion-matrix formulas must give exactly the sklearn-based record, NaNs included."""
    k = probs.shape[1]
    record = compute_metrics(y, probs, [str(i) for i in range(k)])
    for name in METRIC_NAMES:
        if name in ("sensitivity", "specificity") and k != 2:
            continue
        assert same(get_metric(name)(y, probs), record[name]), f"{case_id}: {name}"


@pytest.mark.parametrize("name", ["accuracy", "balanced_accuracy", "macro_f1", "auc"])
def test_vectorised_resampling_matches_per_resample_sklearn(name: str) -> None:
    """On the same resamples (same seed), the fast path must equal rescoring each resample with sklearn.

    The test set has a class of 2 images, so some resamples miss it: skipping must agree too.
    """
    y = np.concatenate([np.repeat([0, 1], 20), [2, 2]])
    probs = noisy_model(y, 3, 1.0, seed=4)

    def via_sklearn(y_true: np.ndarray, p: np.ndarray) -> float:
        return compute_metrics(y_true, p, ["a", "b", "c"])[name]

    fast = bootstrap_ci(y, probs, name, n_resamples=60, seed=11)
    slow = bootstrap_ci(y, probs, via_sklearn, n_resamples=60, seed=11)
    assert (fast.point, fast.low, fast.high) == pytest.approx((slow.point, slow.low, slow.high), abs=1e-12)
    assert fast.n_skipped == slow.n_skipped
    if name != "accuracy":
        assert fast.n_skipped > 0  # ((42-2)/42)^42 ~ 13% of resamples miss class 2


def test_metric_lookup_rejects_unknown_and_misapplied_names() -> None:
    """A typo in a sweep file, or sensitivity asked of a 7-class task, must be a clear ConfigError."""
    with pytest.raises(ConfigError, match="unknown metric 'acuracy'"):
        get_metric("acuracy")
    with pytest.raises(ConfigError, match="binary tasks only"):
        get_metric("sensitivity")(Y7, noisy_model(Y7, 7, 1.0, seed=1))


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
    assert point == pytest.approx(compute_metrics(y, probs, list("abcdefg"))["balanced_accuracy"])
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


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "macro_f1", "auc"])
def test_paired_identical_models_are_indistinguishable(metric: str) -> None:
    """Same predictions give a difference of exactly 0 on every resample: p = 1, CI = [0, 0]."""
    y = np.repeat([0, 1, 2], 15)
    probs = noisy_model(y, 3, 1.0, seed=5)
    result = paired_bootstrap(y, probs, probs.copy(), metric, n_resamples=200)
    assert (result.difference, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_clearly_better_model_is_significant_and_antisymmetric() -> None:
    """90% vs 60% accuracy on the same 200 images must be significant, whichever way round."""
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 200)
    good = binary_right_with(y, rng.random(200) < 0.9)
    poor = binary_right_with(y, rng.random(200) < 0.6)
    ab = paired_bootstrap(y, good, poor, "accuracy", n_resamples=1000, seed=1)
    ba = paired_bootstrap(y, poor, good, "accuracy", n_resamples=1000, seed=1)
    assert ab.p_value < 0.05 and 0 < ab.low < ab.difference < ab.high
    assert ab.difference == pytest.approx(ab.score_a - ab.score_b)
    assert (ba.difference, ba.low, ba.high) == pytest.approx((-ab.difference, -ab.high, -ab.low))
    assert ba.p_value == ab.p_value


def test_paired_p_value_is_calibrated_under_the_null() -> None:
    """Two equally good, independent models: a two-sided 5% test should reject about 5% of the time.

    A one-sided p-value (not doubled) rejects 8-10% of the time here and fails the upper bound.
    """
    rng = np.random.default_rng(77)
    n_sets, n_images = 600, 150
    rejections = 0
    for i in range(n_sets):
        y = rng.integers(0, 2, n_images)
        a = binary_right_with(y, rng.random(n_images) < 0.8)
        b = binary_right_with(y, rng.random(n_images) < 0.8)
        rejections += paired_bootstrap(y, a, b, "accuracy", n_resamples=400, seed=i).p_value < 0.05
    assert 0.02 <= rejections / n_sets <= 0.07


def test_paired_inputs_must_match() -> None:
    """Two models scored on different label spaces cannot be compared image by image."""
    y = np.repeat([0, 1, 2], 4)
    with pytest.raises(DataError, match="3 classes"):
        paired_bootstrap(y, noisy_model(y, 3, 1.0, 0), probs_for(np.zeros(12, dtype=int), 4), "accuracy")


def mcnemar_inputs(only_a: int, only_b: int, both_right: int, both_wrong: int) -> tuple[np.ndarray, ...]:
    """Label/prediction arrays with the given counts of each agreement pattern (true label always 0)."""
    patterns = [(0, 1)] * only_a + [(1, 0)] * only_b + [(0, 0)] * both_right + [(1, 1)] * both_wrong
    pred_a, pred_b = (np.array(column) for column in zip(*patterns, strict=True))
    return np.zeros(len(patterns), dtype=int), pred_a, pred_b


# (only a right, only b right, both right, both wrong, exact two-sided p by hand)
MCNEMAR_CASES = [
    (8, 2, 30, 5, 2 * (1 + 10 + 45) / 2**10),  # 2 * P(X <= 2 | n=10, 1/2) = 112/1024
    (6, 0, 10, 0, 2 / 2**6),  # 2 * P(X = 0 | n=6)
    (0, 0, 12, 3, 1.0),  # no discordant image: no evidence either way
    (5, 5, 0, 0, 1.0),
]


@pytest.mark.parametrize(("only_a", "only_b", "both_right", "both_wrong", "expected"), MCNEMAR_CASES)
def test_mcnemar_matches_hand_computed_binomial(
    only_a: int, only_b: int, both_right: int, both_wrong: int, expected: float
) -> None:
    """Only discordant images count; concordant ones must not move the p-value."""
    result = mcnemar(*mcnemar_inputs(only_a, only_b, both_right, both_wrong))
    assert (result.only_a_correct, result.only_b_correct) == (only_a, only_b)
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    y, pred_a, pred_b = mcnemar_inputs(only_a, only_b, both_right, both_wrong)
    assert mcnemar(y, pred_b, pred_a).p_value == pytest.approx(expected, rel=1e-12)


def test_mcnemar_rejects_mismatched_lengths() -> None:
    with pytest.raises(DataError, match="equal length"):
        mcnemar(np.zeros(4), np.zeros(4), np.zeros(3))


def leaderboard() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Three backbones on 400 binary images, listed worst first so ordering is the function's doing.

    best: right on 360. close: best with 3 of its hits turned into misses and 1 miss into a hit (358;
    4 discordant images, far from significant). poor: right on a random ~70%.
    """
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    best_right = np.arange(400) < 360
    close_right = best_right.copy()
    close_right[[0, 1, 2, 399]] = [False, False, False, True]
    return y, {
        "poor": binary_right_with(y, rng.random(400) < 0.7),
        "close": binary_right_with(y, close_right),
        "best": binary_right_with(y, best_right),
    }


def test_tied_with_leader_keeps_close_and_drops_clearly_worse() -> None:
    """The leader comes first, the statistically indistinguishable runner-up next, the poor one out."""
    y, probs = leaderboard()
    assert tied_with_leader(y, probs, "accuracy", n_resamples=500) == ["best", "close"]
    # The decision is the documented paired bootstrap against the leader at alpha = 0.05.
    assert paired_bootstrap(y, probs["best"], probs["poor"], "accuracy", n_resamples=500).p_value < 0.05
    assert paired_bootstrap(y, probs["best"], probs["close"], "accuracy", n_resamples=500).p_value >= 0.05


def test_tied_with_leader_refuses_undefined_metric_and_empty_input() -> None:
    """No ranking exists when the metric is NaN (single-class test set) or there is nothing to rank."""
    y = np.ones(6, dtype=int)
    with pytest.raises(DataError, match="auc is undefined"):
        tied_with_leader(y, {"a": noisy_model(y, 2, 1.0, 0)}, "auc", n_resamples=10)
    with pytest.raises(ConfigError):
        tied_with_leader(y, {}, "accuracy")


def test_paired_bootstrap_over_seeds_averages_each_side():
    """Lists of per-seed probabilities: each side's score is its mean over seeds, on every resample."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)

    def model(acc: float, seed: int) -> np.ndarray:
        right = np.random.default_rng(seed).random(300) < acc
        pred = np.where(right, y, 1 - y)
        return np.eye(2)[pred] * 0.8 + 0.1

    a1, a2, b1 = model(0.9, 1), model(0.8, 2), model(0.7, 3)
    single = paired_bootstrap(y, a1, b1, "accuracy", n_resamples=200, seed=0)
    as_lists = paired_bootstrap(y, [a1], [b1], "accuracy", n_resamples=200, seed=0)
    assert (single.low, single.high, single.p_value) == (as_lists.low, as_lists.high, as_lists.p_value)
    two = paired_bootstrap(y, [a1, a2], [b1], "accuracy", n_resamples=200, seed=0)
    expected = (np.mean(a1.argmax(1) == y) + np.mean(a2.argmax(1) == y)) / 2
    assert two.score_a == pytest.approx(expected)
    assert two.difference == pytest.approx(expected - np.mean(b1.argmax(1) == y))


def tied_scores(y: np.ndarray, k: int, decimals: int, seed: int) -> np.ndarray:
    """Validated probabilities rounded to ``decimals``: many exact ties between images."""
    probs = np.round(noisy_model(y, k, 0.8, seed), decimals) + 1e-9
    return validate_predictions(y, probs / probs.sum(axis=1, keepdims=True))[1]


def sklearn_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """scikit-learn's AUC under the module's absent-class rule, on probabilities used as they are."""
    k = probs.shape[1]
    if np.unique(y).size < k:
        return math.nan
    if k == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    return float(roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=list(range(k))))


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
    slow = bootstrap_ci(y, probs, sklearn_auc, n_resamples=150, seed=2)
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


def test_tied_with_leader_over_seeds_ranks_and_tests_seed_averages() -> None:
    """A backbone with one lucky seed is not the leader when its seed average is lower."""
    y, probs = leaderboard()
    rng = np.random.default_rng(12)
    lucky = [binary_right_with(y, rng.random(400) < 0.95), binary_right_with(y, rng.random(400) < 0.6)]
    by_seed = {"lucky": lucky, "best": [probs["best"]], "close": [probs["close"], probs["close"]]}
    tied = tied_with_leader(y, by_seed, "accuracy", n_resamples=500)
    assert tied == ["best", "close"]  # lucky averages ~0.775 < best's 0.9, and is significantly worse
    assert paired_bootstrap(y, by_seed["best"], lucky, "accuracy", n_resamples=500).p_value < 0.05
