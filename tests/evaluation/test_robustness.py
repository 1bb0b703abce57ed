"""MedMNIST-C's robustness figures, table-driven with hand-computable values: balanced error per corruption and
severity, its mean over corruptions, and relative to a reference (their relative BE and rBE)."""

from __future__ import annotations

import math

import pytest

from bench.evaluation.eval_results import EvalSetResult
from bench.evaluation.robustness import (
    balanced_errors,
    corruption_errors,
    mean_balanced_error,
    relative_balanced_error,
    relative_degradation,
)


def corrupted(accuracies: dict[str, float | None]) -> EvalSetResult:
    parts = {part: {"balanced_accuracy": acc} for part, acc in accuracies.items()}
    return EvalSetResult("corrupted", "corrupted", ["a", "b"], "b", 10, "x.evalsets.npz", parts)


def test_errors_by_corruption_and_severity_and_their_means():
    result = corrupted({"noise@1": 0.9, "noise@3": 0.7, "blur@1": 0.8, "blur@3": 0.6})
    by_part = balanced_errors(result)
    assert list(by_part) == ["noise", "blur"]
    assert by_part["noise"] == pytest.approx({1: 0.1, 3: 0.3}) and by_part["blur"] == pytest.approx({1: 0.2, 3: 0.4})
    errors = corruption_errors(result)
    assert errors == pytest.approx({"noise": 0.2, "blur": 0.3})
    assert mean_balanced_error(errors) == pytest.approx(0.25)
    assert math.isnan(mean_balanced_error({}))


def test_an_undefined_balanced_accuracy_is_a_nan_error_not_a_guess():
    """A class absent from the test split makes balanced accuracy NaN (stored null): so is the error built on it."""
    assert math.isnan(corruption_errors(corrupted({"noise@1": None, "noise@2": 0.5}))["noise"])


CASES = [
    # errors, reference errors, relative BE = mean(e / r) over shared corruptions
    ({"noise": 0.2, "blur": 0.3}, {"noise": 0.4, "blur": 0.3}, (0.5 + 1.0) / 2),
    ({"noise": 0.2, "blur": 0.3}, {"noise": 0.4}, 0.5),  # only the shared corruption
    ({"noise": 0.2}, {"blur": 0.3}, math.nan),  # none shared
    ({"noise": 0.2}, {"noise": 0.0}, math.nan),  # a reference that never errs divides nothing
]


@pytest.mark.parametrize(("errors", "reference", "expected"), CASES)
def test_relative_balanced_error(errors, reference, expected):
    got = relative_balanced_error(errors, reference)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_relative_degradation_subtracts_each_ones_clean_error():
    # model: clean 0.1, corrupted 0.2 and 0.3 (it loses 0.1 and 0.2); reference: clean 0.2, 0.4 and 0.3 (0.2, 0.1)
    got = relative_degradation({"noise": 0.2, "blur": 0.3}, 0.1, {"noise": 0.4, "blur": 0.3}, 0.2)
    assert got == pytest.approx((0.1 / 0.2 + 0.2 / 0.1) / 2)
    assert math.isnan(relative_degradation({"noise": 0.2}, 0.1, {"noise": 0.2}, 0.2))  # the reference lost nothing
