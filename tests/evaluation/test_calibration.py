"""Calibration from saved scores: hand-computable cases, torchmetrics and scikit-learn as oracles, every
committed record, and temperature scaling fitted on validation only."""

from __future__ import annotations

from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.model_selection import StratifiedKFold
from torchmetrics.functional.classification import multiclass_calibration_error
from torchmetrics.functional.classification.calibration_error import _ce_compute

from bench.errors import DataError
from bench.evaluation.calibration import (
    CROSS_FITTED,
    N_BINS,
    NO_VALIDATION,
    Calibration,
    brier,
    calibrate,
    cross_fitted_logits,
    ece,
    ece_equal_mass,
    fit_temperature,
    nll,
    reliability_bins,
)
from bench.evaluation.scores import TestScores

REPO = Path(__file__).resolve().parents[2]
MISSION = sorted((REPO / "results" / "mission" / "runs").glob("*/*/*.probs.npz"))


def torchmetrics_ece(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> float:
    """torchmetrics' top-label ECE (``norm="l1"``) computed in float64.

    ``multiclass_calibration_error`` casts the confidences to float32 before binning
    (``_multiclass_calibration_error_update``), which caps its agreement with any float64 computation near
    1e-7; the same binning and sum (``_ce_compute``, what the public function calls next) fed float64
    confidences is the 1e-9 oracle. The public function itself is checked at float32's precision below.
    """
    p = torch.from_numpy(np.asarray(probs, dtype=np.float64))
    confidences, predictions = p.max(dim=1)
    accuracies = predictions.eq(torch.from_numpy(np.asarray(labels))).to(torch.float64)
    return float(_ce_compute(confidences, accuracies, n_bins, norm="l1"))


def _random_case(n: int, k: int, seed: int, sharpness: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, size=(n, k)).astype(np.float32)
    labels = np.array([rng.choice(k, p=p) for p in softmax(logits.astype(np.float64) * sharpness, axis=1)])
    return labels, softmax(logits.astype(np.float64), axis=1), logits


# --- hand-computable cases -------------------------------------------------------------------------------------

# (labels, probs, expected ECE over 15 equal-width bins)
ECE_CASES = [
    # confidences 0.9 (right), 0.85 (wrong), 0.7 (right), 0.62 (right): four bins of one image each
    ([0, 1, 1, 1], [[0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.38, 0.62]], (0.1 + 0.85 + 0.3 + 0.38) / 4),
    # 0.9 and 0.92 share the bin [13/15, 14/15): accuracy 1/2, confidence 0.91
    ([0, 1], [[0.9, 0.1], [0.92, 0.08]], 0.41),
    # a confidence of exactly 1 is a bin of its own (torchmetrics): |0 - 1| / 2 + |1 - 0.95| / 2
    ([1, 0], [[1.0, 0.0], [0.95, 0.05]], 0.525),
    # three classes: top labels 0.5 (right) and 0.6 (wrong) in bins 7 and 9
    ([0, 2], [[0.5, 0.3, 0.2], [0.6, 0.3, 0.1]], (0.5 + 0.6) / 2),
    # every image right at confidence 1: perfectly calibrated
    ([0, 1], [[1.0, 0.0], [0.0, 1.0]], 0.0),
]


@pytest.mark.parametrize("labels, probs, expected", ECE_CASES)
def test_ece_by_hand(labels, probs, expected):
    assert ece(np.array(labels), np.array(probs)) == pytest.approx(expected, abs=1e-12)
    assert torchmetrics_ece(np.array(labels), np.array(probs)) == pytest.approx(expected, abs=1e-12)


def test_a_confidence_of_one_differs_from_right_closed_bins_as_documented():
    """Guo et al.'s bins (k/15, (k+1)/15] would pool 1.0 with 0.95: accuracy 1/2, confidence 0.975 -> 0.475."""
    labels, probs = np.array([1, 0]), np.array([[1.0, 0.0], [0.95, 0.05]])
    assert ece(labels, probs) == pytest.approx(0.525, abs=1e-12)
    assert ece(labels, probs) != pytest.approx(0.475)


def test_equal_mass_bins_by_hand():
    # confidences sorted: 0.6 (wrong), 0.7 (right) | 0.8 (right), 0.9 (wrong); two bins of two images
    labels = np.array([1, 1, 0, 0])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.8, 0.2]])
    first, second = abs(0.5 - 0.65), abs(0.5 - 0.85)
    assert ece_equal_mass(labels, probs, n_bins=2) == pytest.approx((first + second) / 2, abs=1e-12)
    # one bin: |accuracy - mean confidence| over all; as many bins as images: the mean per-image gap
    assert ece_equal_mass(labels, probs, n_bins=1) == pytest.approx(abs(0.5 - 0.75), abs=1e-12)
    assert ece_equal_mass(labels, probs, n_bins=4) == pytest.approx((0.9 + 0.6 + 0.3 + 0.2) / 4, abs=1e-12)


def test_equal_mass_bins_never_leave_one_empty():
    """15 bins over 7 images: 7 bins of one image, the rest empty and ignored (not NaN)."""
    labels, probs, _ = _random_case(7, 3, seed=1)
    assert ece_equal_mass(labels, probs) == pytest.approx(np.mean(np.abs((probs.argmax(1) == labels) - probs.max(1))))


@pytest.mark.parametrize(
    "labels, probs, expected",
    [
        ([0], [[0.7, 0.2, 0.1]], 0.3**2 + 0.2**2 + 0.1**2),
        ([1], [[0.8, 0.2]], 2 * 0.8**2),  # twice the binary (p_positive - y)^2
        ([0, 1], [[1.0, 0.0], [1.0, 0.0]], (0 + 2) / 2),
    ],
)
def test_brier_by_hand(labels, probs, expected):
    assert brier(np.array(labels), np.array(probs)) == pytest.approx(expected, abs=1e-12)


def test_nll_by_hand_from_probs_and_from_logits():
    assert nll(np.array([0, 1]), np.array([[0.5, 0.5], [0.5, 0.5]])) == pytest.approx(np.log(2), abs=1e-15)
    logits = np.array([[0.0, np.log(3.0)]])  # softmax: 1/4, 3/4
    assert nll(np.array([1]), softmax(logits, axis=1), logits) == pytest.approx(-np.log(0.75), abs=1e-15)


def test_nll_from_logits_stays_finite_where_the_softmax_saturates():
    logits = np.array([[0.0, 800.0]], dtype=np.float32)
    probs = softmax(logits.astype(np.float64), axis=1)  # [0, 1] exactly
    assert probs[0, 0] == 0.0
    assert nll(np.array([0]), probs, logits) == pytest.approx(800.0)
    assert nll(np.array([0]), probs) == np.inf  # from the probabilities alone, the truth had probability 0


def test_bad_input_is_one_data_error():
    with pytest.raises(DataError, match="sums to"):
        ece(np.array([0]), np.array([[2.0, 3.0]]))  # logits, not probabilities
    with pytest.raises(DataError, match="n_bins"):
        ece_equal_mass(np.array([0]), np.array([[0.5, 0.5]]), n_bins=0)


# --- library oracles ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_ece_is_torchmetrics(k, seed):
    labels, probs, _ = _random_case(500, k, seed)
    ours = ece(labels, probs)
    assert ours == pytest.approx(torchmetrics_ece(labels, probs), abs=1e-9)
    public = multiclass_calibration_error(
        torch.from_numpy(probs), torch.from_numpy(labels), num_classes=k, n_bins=N_BINS, norm="l1"
    )
    assert ours == pytest.approx(float(public), abs=1e-6)  # float32 inside, see torchmetrics_ece


@pytest.mark.parametrize("k", [2, 7])
def test_brier_and_nll_are_scikit_learn_and_torch(k):
    labels, probs, logits = _random_case(400, k, seed=3)
    expected = brier_score_loss(labels, probs, labels=list(range(k)), scale_by_half=False)
    assert brier(labels, probs) == pytest.approx(expected, abs=1e-12)
    assert nll(labels, probs) == pytest.approx(log_loss(labels, probs, labels=list(range(k))), abs=1e-9)
    torch_nll = torch.nn.functional.cross_entropy(torch.from_numpy(logits.astype(np.float64)), torch.from_numpy(labels))
    assert nll(labels, probs, logits) == pytest.approx(float(torch_nll), abs=1e-9)


@pytest.mark.skipif(not MISSION, reason="no committed mission records")
def test_every_committed_mission_record_is_torchmetrics():
    """The leaderboard's ECE cells rest on these: every committed test file, to 1e-9."""
    assert len(MISSION) == 117
    for path in MISSION:
        saved = TestScores.load(path)
        assert ece(saved.labels, saved.probs) == pytest.approx(torchmetrics_ece(saved.labels, saved.probs), abs=1e-9)
        assert saved.val is None  # written before validation scores were saved: no temperature scaling


# --- temperature scaling ----------------------------------------------------------------------------------------


def test_temperature_recovers_the_one_the_labels_were_drawn_with():
    """Labels drawn from softmax(z / 2): the NLL-optimal temperature on many images is close to 2."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3.0, size=(20_000, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(logits / 2.0, axis=1)])
    assert fit_temperature(labels, logits) == pytest.approx(2.0, abs=0.1)


def test_temperature_is_the_minimum_of_the_validation_nll():
    labels, _, logits = _random_case(300, 4, seed=5, sharpness=0.5)
    t = fit_temperature(labels, logits)
    z = logits.astype(np.float64)

    def at(temperature: float) -> float:
        return nll(labels, softmax(z / temperature, axis=1), z / temperature)

    assert at(t) <= min(at(t * 1.001), at(t / 1.001))
    assert t > 1.2  # over-confident logits (labels drawn at half their sharpness) are softened


def test_scaling_is_fitted_on_validation_and_judged_on_test():
    val_labels, _, val_logits = _random_case(300, 3, seed=6, sharpness=0.5)
    test_labels, test_probs, test_logits = _random_case(300, 3, seed=7, sharpness=2.0)
    report = calibrate(test_labels, test_probs, test_logits, val_labels, val_logits)
    t = fit_temperature(val_labels, val_logits)
    assert report.temperature == t and t != pytest.approx(fit_temperature(test_labels, test_logits), rel=0.1)
    assert report.fitted_on == "validation" and report.not_scaled is None
    scaled_logits = test_logits.astype(np.float64) / t
    expected = Calibration.of(test_labels, softmax(scaled_logits, axis=1), scaled_logits)
    assert report.scaled == expected
    assert report.before == Calibration.of(test_labels, test_probs, test_logits)


def test_without_validation_scores_each_test_half_is_scaled_by_the_other_halfs_temperature():
    labels, probs, logits = _random_case(300, 3, seed=8, sharpness=0.5)
    report = calibrate(labels, probs, logits)
    z = log_softmax(logits.astype(np.float64), axis=1)  # what calibrate scales: a row's constant is no change
    scaled, temperatures = np.empty_like(z), []
    for fit, apply in StratifiedKFold(2, shuffle=True, random_state=0).split(z, labels):  # the library's halves
        temperatures.append(fit_temperature(labels[fit], z[fit]))
        scaled[apply] = z[apply] / temperatures[-1]
    expected = Calibration.of(labels, softmax(scaled, axis=1), scaled)
    assert astuple(report.scaled) == pytest.approx(astuple(expected), abs=1e-9)
    assert report.temperature == pytest.approx(np.mean(temperatures), abs=1e-9)
    assert report.fitted_on == CROSS_FITTED and report.not_scaled == NO_VALIDATION
    assert report.before.ece == ece(labels, probs) and report.scaled.ece < report.before.ece  # over-confident


def test_a_cross_fitted_temperature_never_sees_the_image_it_scales():
    """Moving one image's logits moves no other image of its half: their temperature is fitted on the other half
    (one temperature fitted on all of test would move every image)."""
    labels, _, logits = _random_case(200, 2, seed=12, sharpness=0.5)
    before, _ = cross_fitted_logits(labels, logits)
    moved = logits.astype(np.float64).copy()
    moved[0] *= 3.0
    after, _ = cross_fitted_logits(labels, moved)
    halves = StratifiedKFold(2, shuffle=True, random_state=0).split(logits, labels)
    half = next(apply for _, apply in halves if 0 in apply)
    others = half[half != 0]
    np.testing.assert_array_equal(after[others], before[others])
    assert not np.allclose(np.delete(after, half, axis=0), np.delete(before, half, axis=0))  # the other half's T moved


@pytest.mark.parametrize(
    "labels, cross_fit",
    [
        pytest.param(np.array([0, 1, 1, 0, 1]), False, id="cross-fitting turned off"),
        pytest.param(np.array([0, 1, 2, 3, 4]), True, id="one image a class: nothing to fit the other half on"),
    ],
)
def test_scaling_is_n_a_with_the_reason_where_it_cannot_be_fitted(labels, cross_fit):
    logits = np.random.default_rng(1).normal(size=(labels.size, 5))
    report = calibrate(labels, softmax(logits, axis=1), logits, cross_fit=cross_fit)
    assert report.scaled is None and report.temperature is None and report.not_scaled == NO_VALIDATION
    assert report.fitted_on is None


def test_reliability_bins_count_every_image_once():
    labels, probs, _ = _random_case(250, 3, seed=9)
    bins = reliability_bins(labels, probs)
    assert bins.count.sum() == 250 and bins.edges.size == N_BINS + 1
    filled = bins.count > 0
    ece_from_bins = np.sum(np.abs(bins.accuracy[filled] - bins.confidence[filled]) * bins.count[filled]) / 250
    assert ece_from_bins == pytest.approx(ece(labels, probs), abs=1e-12)  # no confidence of exactly 1 here
