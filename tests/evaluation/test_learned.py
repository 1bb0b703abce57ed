"""Did a run learn? The verdict on validation predictions: collapsed, chance-level, learned, too few images to tell.

The permutation test is held to the exact answer where one exists: for two classes, balanced accuracy under a
shuffle of the true labels is a function of one hypergeometric cell, so its tail is computable exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import hypergeom

from bench.evaluation.learned import ALPHA, PERMUTATIONS, check_learned, permutation_p_value

BINARY = ("benign", "malignant")

# confusion matrix (rows true, columns predicted), expected status, a phrase of the reason
CASES = [
    pytest.param([[49, 0], [41, 0]], "did not learn", "predicts one class (benign) for all 90 validation images",
                 id="collapsed to the majority"),
    pytest.param([[0, 49], [0, 41]], "did not learn", "predicts one class (malignant) for all 90 validation images",
                 id="collapsed to the minority"),
    pytest.param([[26, 23], [21, 20]], "did not learn", "validation balanced accuracy 0.509 not above chance 0.500",
                 id="chance level"),
    pytest.param([[40, 9], [10, 31]], "learned", "validation balanced accuracy 0.786 above chance 0.500",
                 id="clearly learned"),
    pytest.param([[2, 0], [0, 2]], "did not learn", "validation balanced accuracy 1.000 not above chance",
                 id="perfect on 4 images: too few to tell"),
    pytest.param([[5, 0], [0, 5]], "learned", "n = 10", id="perfect on 10 images"),
    pytest.param([[30, 5, 5], [5, 30, 5], [5, 5, 30]], "learned", "above chance 0.333", id="three classes"),
    pytest.param([[5, 0, 0], [0, 0, 0], [0, 0, 5]], "learned", "above chance 0.500",
                 id="a class absent from validation: chance over the present ones"),
    pytest.param([[90, 0], [0, 0]], "not assessed", "fewer than two classes", id="one class in validation"),
    pytest.param(None, "not assessed", "no validation confusion matrix", id="an old record without one"),
    pytest.param([[1, 2, 3]], "not assessed", "no validation confusion matrix", id="not K x K"),
]  # fmt: skip


@pytest.mark.parametrize("cm, status, phrase", CASES)
def test_verdicts(cm, status, phrase):
    k = len(cm) if cm and len(cm) == len(cm[0]) else 2
    verdict = check_learned(cm, BINARY if k == 2 else tuple("abc"))
    assert verdict.status == status
    assert phrase in verdict.reason


def test_the_reason_names_the_test_its_p_and_n():
    verdict = check_learned([[26, 23], [21, 20]], BINARY)
    assert verdict.did_not_learn and verdict.n == 90 and verdict.p_value >= ALPHA
    assert verdict.reason.endswith(f"(one-sided permutation test, p = {verdict.p_value:.2g}, n = 90)")


def test_collapsed_predictions_are_exactly_chance_under_every_shuffle():
    assert permutation_p_value(((49, 0), (41, 0))) == 1.0
    assert check_learned([[49, 0], [41, 0]], BINARY).balanced_accuracy == 0.5


def test_the_smallest_p_is_one_over_the_shuffles_plus_one():
    assert permutation_p_value(((45, 4), (3, 38))) == 1 / (PERMUTATIONS + 1)


def test_seeded_the_same_matrix_gets_the_same_p():
    cm = ((30, 19), (20, 21))
    permutation_p_value.cache_clear()
    first = permutation_p_value(cm)
    permutation_p_value.cache_clear()
    assert permutation_p_value(cm) == first
    assert permutation_p_value(cm, seed=1) != first  # another stream: another estimate of the same p


def exact_binary_p(cm: list[list[int]]) -> float:
    """P(balanced accuracy >= observed) when the true labels are shuffled against fixed predictions (two classes).

    With margins fixed, the cell "true 0, predicted 0" is hypergeometric and fixes the whole matrix.
    """
    (a, b), (c, d) = cm
    n0, n1, p0 = a + b, c + d, a + c  # class counts, and how many images are predicted class 0
    n = n0 + n1
    cells = np.arange(max(0, p0 - n1), min(n0, p0) + 1)
    ba = 0.5 * (cells / n0 + (n1 - (p0 - cells)) / n1)
    observed = 0.5 * (a / n0 + d / n1)
    return float(hypergeom(n, n0, p0).pmf(cells)[ba >= observed - 1e-12].sum())


@pytest.mark.parametrize("cm", [[[30, 19], [20, 21]], [[35, 14], [20, 21]], [[26, 23], [21, 20]], [[3, 1], [1, 3]]])
def test_the_permutation_p_is_the_exact_p_within_its_sampling_error(cm):
    exact = exact_binary_p(cm)
    estimate = permutation_p_value(tuple(map(tuple, cm)))
    # p's binomial standard error at 2000 shuffles is at most 0.011: four of them
    assert estimate == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / PERMUTATIONS) + 1 / PERMUTATIONS)
