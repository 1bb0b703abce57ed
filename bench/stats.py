"""Uncertainty and paired comparisons of test-set scores, computed from saved probabilities.

A test set is a sample of images, so a score measured on it has sampling error; these helpers put a
number on it without retraining anything.

* :func:`bootstrap_ci` -- percentile bootstrap over test images: draw N images with replacement,
  rescore, repeat; the CI is the central ``confidence`` interval of the rescored values.
* :func:`paired_bootstrap` -- the same resamples applied to two models' predictions on the *same*
  images, giving the CI and a two-sided p-value for the difference ``a - b``. Pairing removes the
  image-difficulty variance the two models share, so it detects far smaller differences than
  comparing two separate CIs.
* :func:`mcnemar` -- exact McNemar test on hard predictions (accuracy only, no resampling).
* :func:`tied_with_leader` -- which backbones a leaderboard should mark as tied with the best.

Metrics are named as in :func:`bench.metrics.compute_metrics` (see :data:`METRIC_NAMES`) and follow
its rules, including NaN when a class of the task is absent; any ``(y_true, probs) -> float``
callable works too. All metrics here are higher-is-better.

Undefined resamples. A resample can miss a rare class entirely; ``auc``, ``balanced_accuracy`` and
``macro_f1`` are then NaN by the absent-class rule (``sensitivity``/``specificity`` when it misses
the positives/negatives). Such resamples are *skipped*: the CI comes from the remaining ones and
``n_skipped`` says how many were dropped. Many skips mean the test set is too small for that metric's
CI to be trusted. If the metric is NaN on the full test set, every resample is skipped and the CI is
NaN.

Why not ``scipy.stats.bootstrap``: the paired test and :func:`tied_with_leader` need the *same*
resampled indices for every model (scipy draws its own), undefined resamples must be skipped and
counted (scipy propagates NaN into the interval), and scipy gives no p-value. Resampling is seeded
(``numpy.random.default_rng(seed)``), so equal seeds give equal indices for equal ``N`` and
``n_resamples``. The confusion-matrix metrics are vectorised over resamples (one ``bincount`` per
chunk); ``auc`` and custom callables call scikit-learn once per resample, about 1-5 ms each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from bench.errors import ConfigError, DataError
from bench.metrics import roc_auc, validate_predictions

MetricFn = Callable[[np.ndarray, np.ndarray], float]
"""A score from ``(y_true int labels (N,), probs (N, K))``, higher is better."""

METRIC_NAMES: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "balanced_accuracy_sklearn",
    "macro_f1",
    "auc",
    "sensitivity",
    "specificity",
)

_CELLS_PER_CHUNK = 2_000_000
"""Resampled indices held at once (16 MB of int64): bounds memory for large test sets."""


def _recall(cm: np.ndarray) -> np.ndarray:
    """Per-class recall of stacked confusion matrices ``(..., K, K)``; NaN for a class with no image."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diagonal(cm, axis1=-2, axis2=-1) / cm.sum(axis=-1)


def _accuracy(cm: np.ndarray) -> np.ndarray:
    return np.trace(cm, axis1=-2, axis2=-1) / cm.sum(axis=(-2, -1))


def _balanced_accuracy(cm: np.ndarray) -> np.ndarray:
    """ISIC definition: mean recall over all K classes, NaN when one is absent."""
    return _recall(cm).mean(axis=-1)


def _balanced_accuracy_sklearn(cm: np.ndarray) -> np.ndarray:
    """scikit-learn's definition: mean recall over the classes present."""
    return np.nanmean(_recall(cm), axis=-1)


def _macro_f1(cm: np.ndarray) -> np.ndarray:
    """Mean of ``2TP / (2TP + FP + FN)`` over all K classes, NaN when one is absent."""
    support = cm.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * np.diagonal(cm, axis1=-2, axis2=-1) / (support + cm.sum(axis=-2))
    return np.where(support > 0, f1, np.nan).mean(axis=-1)


def _binary_recall(cm: np.ndarray, cls: int, name: str) -> np.ndarray:
    if cm.shape[-1] != 2:
        raise ConfigError(f"{name} is defined for binary tasks only; this task has {cm.shape[-1]} classes")
    return _recall(cm)[..., cls]


def _sensitivity(cm: np.ndarray) -> np.ndarray:
    return _binary_recall(cm, 1, "sensitivity")


def _specificity(cm: np.ndarray) -> np.ndarray:
    return _binary_recall(cm, 0, "specificity")


_COUNT_FORMULAS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "accuracy": _accuracy,
    "balanced_accuracy": _balanced_accuracy,
    "balanced_accuracy_sklearn": _balanced_accuracy_sklearn,
    "macro_f1": _macro_f1,
    "sensitivity": _sensitivity,
    "specificity": _specificity,
}


def _confusion_matrices(y: np.ndarray, pred: np.ndarray, k: int, idx: np.ndarray) -> np.ndarray:
    """Confusion matrices ``(B, K, K)`` (rows = true) of the resamples ``idx`` ``(B, N)``, in one bincount."""
    b = idx.shape[0]
    cells = (y * k + pred)[idx] + (np.arange(b) * (k * k))[:, None]
    return np.bincount(cells.ravel(), minlength=b * k * k).reshape(b, k, k)


@dataclass(frozen=True)
class _Metric:
    """A resolved metric: a confusion-matrix formula (vectorised) or a per-resample function."""

    name: str
    formula: Callable[[np.ndarray], np.ndarray] | None
    fn: MetricFn | None

    def on_resamples(self, y: np.ndarray, probs: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Scores ``(B,)`` of the resamples ``idx`` ``(B, N)`` of validated ``y``, ``probs``."""
        if self.formula is not None:
            cm = _confusion_matrices(y, probs.argmax(axis=1), probs.shape[1], idx)
            return np.asarray(self.formula(cm), dtype=np.float64)
        assert self.fn is not None
        return np.array([self.fn(y[row], probs[row]) for row in idx], dtype=np.float64)

    def score(self, y: np.ndarray, probs: np.ndarray) -> float:
        """The score on the whole (validated) test set."""
        return float(self.on_resamples(y, probs, np.arange(y.shape[0])[None, :])[0])


def _resolve(metric: str | MetricFn) -> _Metric:
    if callable(metric):
        return _Metric(getattr(metric, "__name__", "metric"), None, metric)
    if metric == "auc":
        return _Metric("auc", None, roc_auc)
    if metric in _COUNT_FORMULAS:
        return _Metric(metric, _COUNT_FORMULAS[metric], None)
    raise ConfigError(f"unknown metric {metric!r}; known: {', '.join(METRIC_NAMES)}")


def get_metric(name: str) -> MetricFn:
    """The ``(y_true, probs) -> float`` function for a metric name, equal to ``compute_metrics()[name]``.

    Works for any number of classes (``sensitivity``/``specificity`` need K = 2); unknown names raise
    :class:`ConfigError`, bad inputs :class:`DataError`.
    """
    metric = _resolve(name)

    def score(y_true: np.ndarray, probs: np.ndarray) -> float:
        return metric.score(*validate_predictions(y_true, probs))

    score.__name__ = metric.name
    return score


@dataclass(frozen=True)
class BootstrapCI:
    """A score with its percentile-bootstrap CI; unpacks as ``point, low, high``."""

    metric: str
    point: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    n_skipped: int
    """Resamples dropped because the metric was undefined on them (a class missing)."""

    def __iter__(self) -> Iterator[float]:
        return iter((self.point, self.low, self.high))


@dataclass(frozen=True)
class PairedComparison:
    """Paired-bootstrap comparison of models a and b on the same test images (``difference = a - b``)."""

    metric: str
    score_a: float
    score_b: float
    difference: float
    low: float
    high: float
    p_value: float
    """Two-sided; NaN when every resample was skipped."""
    confidence: float
    n_resamples: int
    n_skipped: int


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test: only the images on which exactly one model is right carry information."""

    only_a_correct: int
    only_b_correct: int
    p_value: float


def _check_resampling(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _resample_scores(
    metric: _Metric, y: np.ndarray, probs: list[np.ndarray], n_resamples: int, seed: int
) -> np.ndarray:
    """Scores ``(M, n_resamples)`` of M models, all rescored on the same resampled images."""
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // n)
    scores = np.empty((len(probs), n_resamples))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        for m, p in enumerate(probs):
            scores[m, start:stop] = metric.on_resamples(y, p, idx)
    return scores


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Central percentile interval of the defined values; NaN when there are none."""
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def bootstrap_ci(
    y_true: np.ndarray,
    probs: np.ndarray,
    metric: str | MetricFn,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile-bootstrap CI of ``metric`` over test images; resamples where it is NaN are skipped."""
    resolved = _resolve(metric)
    _check_resampling(n_resamples, confidence)
    y, p = validate_predictions(y_true, probs)
    scores = _resample_scores(resolved, y, [p], n_resamples, seed)[0]
    defined = scores[~np.isnan(scores)]
    low, high = _interval(defined, confidence)
    return BootstrapCI(
        metric=resolved.name,
        point=resolved.score(y, p),
        low=low,
        high=high,
        confidence=confidence,
        n_resamples=n_resamples,
        n_skipped=n_resamples - defined.size,
    )


def _compare(
    metric: str,
    score_a: float,
    score_b: float,
    resampled_a: np.ndarray,
    resampled_b: np.ndarray,
    confidence: float,
) -> PairedComparison:
    """CI and p-value of ``a - b`` from the two models' scores on the same resamples.

    p-value: ``min(1, 2 * min(P(d <= 0), P(d >= 0)))`` over the resampled differences d, each share
    counted as ``(count + 1) / (B + 1)`` so that finitely many resamples never report p = 0. It is the
    smallest alpha at which the percentile CI at confidence ``1 - alpha`` excludes 0, so ``p < 0.05``
    agrees with the 95% CI excluding 0 (up to that +1). Identical models give d = 0 always, p = 1.
    """
    diffs = resampled_a - resampled_b
    defined = diffs[~np.isnan(diffs)]
    low, high = _interval(defined, confidence)
    if defined.size:
        tail = min(np.count_nonzero(defined <= 0), np.count_nonzero(defined >= 0))
        p_value = float(min(1.0, 2 * (tail + 1) / (defined.size + 1)))
    else:
        p_value = float("nan")
    return PairedComparison(
        metric=metric,
        score_a=score_a,
        score_b=score_b,
        difference=score_a - score_b,
        low=low,
        high=high,
        p_value=p_value,
        confidence=confidence,
        n_resamples=diffs.size,
        n_skipped=diffs.size - defined.size,
    )


def paired_bootstrap(
    y_true: np.ndarray,
    probs_a: np.ndarray | Sequence[np.ndarray],
    probs_b: np.ndarray | Sequence[np.ndarray],
    metric: str | MetricFn,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Paired bootstrap of ``metric(a) - metric(b)``: both models rescored on the same resampled images.

    ``probs_a``/``probs_b`` may also be lists, one array per training seed of a backbone: the score of
    a side is then its mean over seeds, on every resample, so the comparison covers seed-to-seed
    variation as well as test-set sampling.
    """
    resolved = _resolve(metric)
    _check_resampling(n_resamples, confidence)
    side_a = [probs_a] if isinstance(probs_a, np.ndarray) else list(probs_a)
    side_b = [probs_b] if isinstance(probs_b, np.ndarray) else list(probs_b)
    if not side_a or not side_b:
        raise ConfigError("paired_bootstrap needs at least one set of probabilities on each side")
    y, first = validate_predictions(y_true, side_a[0])
    probs = [first] + [validate_predictions(y, p, n_classes=first.shape[1])[1] for p in [*side_a[1:], *side_b]]
    scores = _resample_scores(resolved, y, probs, n_resamples, seed)
    points = np.array([resolved.score(y, p) for p in probs])
    na = len(side_a)
    with np.errstate(invalid="ignore"):
        return _compare(
            resolved.name,
            float(points[:na].mean()),
            float(points[na:].mean()),
            scores[:na].mean(axis=0),
            scores[na:].mean(axis=0),
            confidence,
        )


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


def tied_with_leader(
    y_true: np.ndarray,
    probs_by_backbone: Mapping[str, np.ndarray],
    metric: str | MetricFn,
    alpha: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
) -> list[str]:
    """Backbones not significantly worse than the best one: the leader first, then by score, descending.

    The leader has the highest ``metric`` on the full test set (the first listed wins an exact tie).
    Each other backbone is compared with it by :func:`paired_bootstrap` (all on the same resamples)
    and is tied when ``p >= alpha``. The comparisons are not corrected for multiplicity: each is a
    plain test at level ``alpha``, which marks *fewer* backbones as tied than a corrected procedure
    would. Raises :class:`DataError` if the metric is undefined (NaN) for some backbone, since
    there is then no ranking to make.
    """
    if not probs_by_backbone:
        raise ConfigError("tied_with_leader needs at least one backbone")
    resolved = _resolve(metric)
    _check_resampling(n_resamples, 1 - alpha)
    names = list(probs_by_backbone)
    y, first = validate_predictions(y_true, probs_by_backbone[names[0]])
    probs = [first] + [
        validate_predictions(y, probs_by_backbone[name], n_classes=first.shape[1])[1] for name in names[1:]
    ]
    points = [resolved.score(y, p) for p in probs]
    for name, point in zip(names, points, strict=True):
        if np.isnan(point):
            raise DataError(f"{resolved.name} is undefined for {name!r} on this test set (a class absent?)")
    leader = int(np.argmax(points))
    scores = _resample_scores(resolved, y, probs, n_resamples, seed)
    tied = [
        i
        for i in range(len(names))
        if i != leader
        and _compare(resolved.name, points[leader], points[i], scores[leader], scores[i], 1 - alpha).p_value
        >= alpha
    ]
    tied.sort(key=lambda i: -points[i])
    return [names[leader]] + [names[i] for i in tied]
