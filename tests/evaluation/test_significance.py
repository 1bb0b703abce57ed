"""Tests for :mod:`bench.evaluation.significance`: the paired bootstrap and McNemar's exact test."""

from __future__ import annotations

import numpy as np
import pytest
from predictions import binary_right_with, noisy_model, probs_for

from bench.errors import DataError
from bench.evaluation.significance import mcnemar, paired_bootstrap


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
