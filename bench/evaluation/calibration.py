"""Calibration from saved probabilities: does a confidence of 0.8 mean right 80% of the time?

Pure functions of a run's saved scores (``labels``, ``probs`` and, where the file has them, ``logits``), so a
record's calibration is recomputable from its ``.probs.npz`` alone, as its accuracy is. Definitions:

* **ECE** (expected calibration error, top-label): each image's confidence is its top probability and it is
  right when its argmax (ties to the lowest index, as :mod:`bench.evaluation.metrics`) is the true class.
  Images are put in bins by confidence; ECE is ``sum_b n_b / N * |accuracy_b - mean confidence_b|``.
  *Equal-width* (:func:`ece`): 15 bins ``[k/15, (k+1)/15)``, a confidence of exactly 1 in a bin of its own,
  which is torchmetrics' binning (``multiclass_calibration_error(norm="l1", n_bins=15)``, the tests' oracle);
  Guo et al.'s right-closed bins ``(k/15, (k+1)/15]`` differ only for a confidence exactly on an edge (a
  saturated softmax's 1.0: 62 of the committed mission test images). *Equal-mass* (:func:`ece_equal_mass`):
  images sorted by confidence (stably) and cut into 15 bins of ``N // 15`` or ``N // 15 + 1`` images
  (``numpy.array_split``), so no bin is empty and none holds a handful. A binary task is scored the same way
  (top label of the two); torchmetrics' ``binary_calibration_error`` measures the positive class's
  probability instead, another quantity.
* **Brier score** (:func:`brier`): the multi-class form, ``mean_i sum_k (p_ik - [y_i = k])^2``, in [0, 2]
  (Brier 1950); for a binary task it is twice the familiar ``mean (p_positive - y)^2``
  (scikit-learn's ``brier_score_loss(..., scale_by_half=False)`` is this definition for every task).
* **NLL** (:func:`nll`): ``mean_i -log p_i,y_i``, in nats, from ``log_softmax(logits)`` in float64 where the
  file has logits (exact even where the softmax saturated), else ``log(probs)`` (infinite for a true class
  given probability 0, which a float32 softmax can do).
* **Temperature scaling** (:func:`fit_temperature`): one scalar ``T > 0`` for all classes, ``softmax(logits /
  T)``, fitted to minimise the NLL of the **validation** split (Guo et al. 2017), by a bounded Brent search
  over ``log T`` in ``[log 0.01, log 100]``. The test split is never used to fit it: it is where the fitted
  ``T`` is judged (:func:`calibrate` gives the test metrics before and after).
* **Cross-fitted temperature** (:func:`cross_fitted_logits`), for a run that saved no validation scores (every
  record written before they were saved): the test images are cut into two halves stratified by class
  (scikit-learn's ``StratifiedKFold(2, shuffle=True, random_state=0)``), each half is scaled by the ``T`` fitted
  on the other, and the test metrics are taken over both. No image is scaled by a temperature its own label
  helped fit, so the figure is an honest estimate of what scaling would buy; it is marked
  (:data:`CROSS_FITTED`), as it is fitted on half as many images from the test distribution rather than on
  validation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from bench.errors import DataError
from bench.evaluation.metrics import validate_predictions

N_BINS = 15
LOG_T_BOUNDS = (float(np.log(0.01)), float(np.log(100.0)))
NO_VALIDATION = "no saved validation probabilities"
CROSS_FITTED = "cross-fitted on test halves"
"""How a temperature was fitted where no validation scores were saved (:func:`cross_fitted_logits`)."""
FOLDS = 2


def _top_label(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's confidence (top probability) and whether its argmax is the true class (1.0 or 0.0)."""
    y, p = validate_predictions(labels, probs)
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def _binned_error(bin_of: np.ndarray, confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    count = np.bincount(bin_of, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(np.bincount(bin_of, correct, n_bins) - np.bincount(bin_of, confidence, n_bins)) / count
    return float(np.sum(np.where(count > 0, gap, 0.0) * count) / confidence.size)


def bin_edges(n_bins: int = N_BINS) -> np.ndarray:
    """The equal-width edges ``0, 1/n, ..., 1``."""
    if n_bins < 1:
        raise DataError(f"n_bins must be at least 1, got {n_bins}")
    return np.linspace(0.0, 1.0, n_bins + 1)


def equal_width_bins(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Bin index of each confidence: ``k`` for ``[k/n, (k+1)/n)``, ``n`` for exactly 1 (torchmetrics' rule)."""
    return np.searchsorted(bin_edges(n_bins), confidence, side="right") - 1


def ece(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> float:
    """Top-label ECE over ``n_bins`` equal-width bins (module docstring)."""
    confidence, correct = _top_label(labels, probs)
    return _binned_error(equal_width_bins(confidence, n_bins), confidence, correct, n_bins + 1)


def ece_equal_mass(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> float:
    """Top-label ECE over ``n_bins`` bins holding equal numbers of images (sizes differ by at most one)."""
    if n_bins < 1:
        raise DataError(f"n_bins must be at least 1, got {n_bins}")
    confidence, correct = _top_label(labels, probs)
    order = np.argsort(confidence, kind="stable")
    bin_of = np.empty(confidence.size, dtype=np.int64)
    for k, members in enumerate(np.array_split(order, n_bins)):
        bin_of[members] = k
    return _binned_error(bin_of, confidence, correct, n_bins)


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score: mean over images of the squared distance to the one-hot label, in [0, 2]."""
    y, p = validate_predictions(labels, probs)
    onehot = np.zeros_like(p)
    onehot[np.arange(y.size), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def log_probs(probs: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
    """float64 log-probabilities: ``log_softmax(logits)`` where there are logits, else ``log(probs)``."""
    if logits is not None:
        return log_softmax(np.asarray(logits, dtype=np.float64), axis=1)
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(probs, dtype=np.float64))


def nll(labels: np.ndarray, probs: np.ndarray, logits: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood of the true class, in nats (from the logits where given)."""
    y, p = validate_predictions(labels, probs)
    return float(-np.mean(log_probs(p, logits)[np.arange(y.size), y]))


def _scaled_nll(log_t: float, y: np.ndarray, logits: np.ndarray) -> float:
    return float(-np.mean(log_softmax(logits / np.exp(log_t), axis=1)[np.arange(y.size), y]))


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """The temperature minimising the NLL of ``softmax(logits / T)`` on these (validation) images.

    ``logits`` may be any log-probabilities (``log(probs)`` of a file without logits): a softmax does not see
    a per-row constant. Searched over ``log T`` (bounded Brent, :data:`LOG_T_BOUNDS`, to 1e-10); a ``T`` at a
    bound means the NLL kept falling that way (every validation image right: ever sharper is ever better).
    """
    z = np.asarray(logits, dtype=np.float64)
    y, _ = validate_predictions(labels, softmax(z, axis=1))
    found = minimize_scalar(_scaled_nll, bounds=LOG_T_BOUNDS, args=(y, z), method="bounded", options={"xatol": 1e-10})
    return float(np.exp(found.x))


@dataclass(frozen=True)
class Calibration:
    """One set of scores' calibration figures (module docstring for each definition)."""

    ece: float
    """Top-label ECE, 15 equal-width bins."""
    ece_equal_mass: float
    """Top-label ECE, 15 equal-mass bins."""
    brier: float
    nll: float

    @classmethod
    def of(cls, labels: np.ndarray, probs: np.ndarray, logits: np.ndarray | None = None) -> Calibration:
        return cls(ece(labels, probs), ece_equal_mass(labels, probs), brier(labels, probs), nll(labels, probs, logits))

    def to_dict(self) -> dict[str, float]:
        return {"ece": self.ece, "ece_equal_mass": self.ece_equal_mass, "brier": self.brier, "nll": self.nll}


def cross_fitted_logits(labels: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
    """``logits`` temperature-scaled by cross-fitting: each of :data:`FOLDS` class-stratified parts of the images
    divided by the ``T`` fitted on the others; returns the scaled logits and each part's ``T``.

    Why not one ``T`` fitted on all of test: then every image's scaled score would depend on its own label, and
    the after-scaling ECE would flatter the method (the over-fitting temperature scaling is judged against).
    """
    from sklearn.model_selection import StratifiedKFold

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    scaled = np.empty_like(z)
    temperatures = []
    with warnings.catch_warnings():  # a class with fewer images than folds: its images go where they can
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(z, y))
    for fit, apply in folds:
        t = fit_temperature(y[fit], z[fit])
        scaled[apply] = z[apply] / t
        temperatures.append(t)
    return scaled, tuple(temperatures)


@dataclass(frozen=True)
class CalibrationReport:
    """A run's test calibration as saved, and after temperature scaling.

    ``fitted_on`` says where the temperature came from: ``"validation"``, or :data:`CROSS_FITTED` for a file
    without validation scores (then ``temperature`` is the mean of the halves' and ``not_scaled`` says why it was
    not fitted on validation). ``scaled`` and ``temperature`` are None where no scaling was fitted at all.
    """

    before: Calibration
    scaled: Calibration | None = None
    temperature: float | None = None
    not_scaled: str | None = None
    fitted_on: str | None = None


def calibrate(
    labels: np.ndarray,
    probs: np.ndarray,
    logits: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    val_logits: np.ndarray | None = None,
    cross_fit: bool = True,
) -> CalibrationReport:
    """Test calibration before and after temperature scaling; the temperature is fitted on the validation
    ``val_labels``/``val_logits`` (log-probabilities do too) alone, then applied to the test logits (or
    ``log(probs)``). Without validation scores it is cross-fitted on test halves (:func:`cross_fitted_logits`),
    or with ``cross_fit=False`` not fitted at all."""
    before = Calibration.of(labels, probs, logits)
    test_logits = log_probs(probs, logits)
    if val_labels is not None and val_logits is not None:
        t = fit_temperature(val_labels, val_logits)
        scaled_logits, not_scaled, fitted_on = test_logits / t, None, "validation"
    elif cross_fit and np.bincount(np.asarray(labels)).max() >= FOLDS:  # else one image a class: nothing to fit on
        scaled_logits, temperatures = cross_fitted_logits(labels, test_logits)
        t, not_scaled, fitted_on = float(np.mean(temperatures)), NO_VALIDATION, CROSS_FITTED
    else:
        return CalibrationReport(before, not_scaled=NO_VALIDATION)
    scaled = Calibration.of(labels, softmax(scaled_logits, axis=1), scaled_logits)
    return CalibrationReport(before, scaled, t, not_scaled, fitted_on)


@dataclass(frozen=True)
class ReliabilityBins:
    """What a reliability diagram draws: per equal-width bin, its images, accuracy and mean confidence."""

    edges: np.ndarray
    count: np.ndarray
    accuracy: np.ndarray
    """NaN for an empty bin."""
    confidence: np.ndarray


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> ReliabilityBins:
    """The equal-width bins of :func:`ece` (a confidence of exactly 1 counted in the top bin, for drawing)."""
    confidence, correct = _top_label(labels, probs)
    bin_of = np.minimum(equal_width_bins(confidence, n_bins), n_bins - 1)
    count = np.bincount(bin_of, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(bin_of, correct, n_bins) / count
        mean_conf = np.bincount(bin_of, confidence, n_bins) / count
    return ReliabilityBins(bin_edges(n_bins), count, accuracy, mean_conf)
