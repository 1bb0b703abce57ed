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
* :func:`resample_models` -- the engine under all of them: several models, each given as one or more
  training seeds' probabilities, rescored on the *same* resamples for several metrics at once. A
  leaderboard reads every row's CI and every comparison with its leader off the :class:`Resampled` it
  returns, paying for the resampling once per dataset.

Metrics are named as in :func:`bench.evaluation.metrics.compute_metrics` (see :data:`METRIC_NAMES`) and follow
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
``n_resamples``. Every built-in metric is vectorised over resamples: the confusion-matrix ones share one
``bincount`` per model and chunk of resamples, and ``auc`` is the Mann-Whitney statistic weighted by how
often each image was drawn (one sort per class, then sums), equal to scikit-learn's trapezoidal area.
Custom callables are called once per resample (scikit-learn's AUC costs 1-5 ms a call).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.stats import binomtest

from bench.errors import ConfigError, DataError
from bench.evaluation.metrics import validate_predictions

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


def _draw_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of the N images is drawn in each resample: ``(B, N)`` from the indices ``(B, N)``."""
    b = idx.shape[0]
    return np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)


def _weighted_binary_auc(counts: np.ndarray, score: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC AUC ``(B,)`` of resamples given as draw counts ``(B, N)``: P(a positive outscores a negative).

    The Mann-Whitney form with ties counting 1/2 is the trapezoidal area scikit-learn computes. Negatives
    are sorted by score once; per resample, a running sum of their counts gives, for every positive, the
    drawn negatives below its score and those equal to it. NaN for a resample without a positive or
    without a negative image.
    """
    negatives = np.flatnonzero(~positive)
    negatives = negatives[np.argsort(score[negatives], kind="stable")]
    positives = np.flatnonzero(positive)
    below = np.searchsorted(score[negatives], score[positives], side="left")
    up_to = np.searchsorted(score[negatives], score[positives], side="right")
    cumulative = np.zeros((counts.shape[0], negatives.size + 1), dtype=np.int64)
    np.cumsum(counts[:, negatives], axis=1, out=cumulative[:, 1:])
    drawn = counts[:, positives]
    twice_wins = (drawn * (cumulative[:, below] + cumulative[:, up_to])).sum(axis=1)  # a tie counts 1 of 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return twice_wins / (2.0 * drawn.sum(axis=1) * cumulative[:, -1])


def _weighted_auc(y: np.ndarray, probs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """:func:`bench.evaluation.metrics.roc_auc` of each resample: column 1 if binary, else the macro one-vs-rest mean.

    A class missing from a resample makes its one-vs-rest AUC, hence the mean, NaN: the absent-class rule.
    """
    if probs.shape[1] == 2:
        return _weighted_binary_auc(counts, probs[:, 1], y == 1)
    return np.mean([_weighted_binary_auc(counts, probs[:, c], y == c) for c in range(probs.shape[1])], axis=0)


@dataclass(frozen=True)
class _Metric:
    """A resolved metric, with the cheapest way it has to score a block of resamples."""

    name: str
    formula: Callable[[np.ndarray], np.ndarray] | None = None
    """Of stacked confusion matrices ``(B, K, K)``."""
    weighted: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None
    """Of ``(y, probs, draw counts (B, N))``."""
    fn: MetricFn | None = None
    """Called on each resample in turn."""

    def score(self, y: np.ndarray, probs: np.ndarray) -> float:
        """The score on the whole (validated) test set."""
        return float(_Draws(y, np.arange(y.shape[0])[None, :]).scores([self], probs)[0, 0])


class _Draws:
    """A block of resamples ``idx`` ``(B, N)`` of one test set; what metrics derive from it is made once."""

    def __init__(self, y: np.ndarray, idx: np.ndarray) -> None:
        self.y = y
        self.idx = idx

    @cached_property
    def counts(self) -> np.ndarray:
        return _draw_counts(self.idx, self.y.shape[0])

    def scores(self, metrics: Sequence[_Metric], probs: np.ndarray) -> np.ndarray:
        """Scores ``(len(metrics), B)`` of one model; its confusion matrices are counted once for all formulas."""
        out = np.empty((len(metrics), self.idx.shape[0]))
        cm = None
        for j, metric in enumerate(metrics):
            if metric.formula is not None:
                if cm is None:
                    cm = _confusion_matrices(self.y, probs.argmax(axis=1), probs.shape[1], self.idx)
                out[j] = metric.formula(cm)
            elif metric.weighted is not None:
                out[j] = metric.weighted(self.y, probs, self.counts)
            else:
                assert metric.fn is not None
                out[j] = [metric.fn(self.y[row], probs[row]) for row in self.idx]
        return out


def _resolve(metric: str | MetricFn) -> _Metric:
    if callable(metric):
        return _Metric(getattr(metric, "__name__", "metric"), fn=metric)
    if metric == "auc":
        return _Metric("auc", weighted=_weighted_auc)
    if metric in _COUNT_FORMULAS:
        return _Metric(metric, formula=_COUNT_FORMULAS[metric])
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


def _check_count(n_resamples: int) -> None:
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _resample_scores(
    metrics: Sequence[_Metric], y: np.ndarray, probs: list[np.ndarray], n_resamples: int, seed: int
) -> np.ndarray:
    """Scores ``(len(metrics), M, n_resamples)`` of M models, all rescored on the same resampled images."""
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // n)
    scores = np.empty((len(metrics), len(probs), n_resamples))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        draws = _Draws(y, rng.integers(0, n, size=(stop - start, n)))
        for m, p in enumerate(probs):
            scores[:, m, start:stop] = draws.scores(metrics, p)
    return scores


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Central percentile interval of the defined values; NaN when there are none."""
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


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


@dataclass(frozen=True, eq=False)
class Resampled:
    """Models scored on the whole test set and on the same bootstrap resamples of it, for one metric.

    A model given as several seeds' probabilities scores their mean, on the whole set and on every
    resample: its CI is then the test-set uncertainty of the seed-averaged score (the spread between
    seeds is a separate number, the leaderboard's std). Intervals and comparisons are read off these
    arrays, so any number of them costs no further resampling.
    """

    metric: str
    names: tuple[str, ...]
    points: np.ndarray
    """``(M,)``: each model's score on the whole test set, averaged over its seeds."""
    scores: np.ndarray
    """``(M, B)``: the same on each resample; NaN where the metric is undefined there."""

    def _index(self, name: str) -> int:
        if name not in self.names:
            raise ConfigError(f"no model {name!r} was resampled; models: {', '.join(self.names)}")
        return self.names.index(name)

    def ci(self, name: str, confidence: float = 0.95) -> BootstrapCI:
        """Percentile CI of ``name``'s score; undefined resamples skipped and counted."""
        _check_confidence(confidence)
        i = self._index(name)
        defined = self.scores[i][~np.isnan(self.scores[i])]
        low, high = _interval(defined, confidence)
        n = self.scores.shape[1]
        return BootstrapCI(self.metric, float(self.points[i]), low, high, confidence, n, n - defined.size)

    def paired(self, a: str, b: str, confidence: float = 0.95) -> PairedComparison:
        """Paired comparison of ``a - b`` (see :func:`paired_bootstrap`)."""
        _check_confidence(confidence)
        i, j = self._index(a), self._index(b)
        return _compare(self.metric, float(self.points[i]), float(self.points[j]), *self.scores[[i, j]], confidence)


def resample_models(
    y_true: np.ndarray,
    probs_by_model: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    metrics: Sequence[str | MetricFn],
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Resampled]:
    """Every model, for every metric, rescored on the same ``n_resamples`` resamples of the test images.

    ``probs_by_model`` maps a name to one ``(N, K)`` array, or to a list of them (one per training seed),
    all predictions on the images of ``y_true`` in its order. One draw of indices serves every model and
    metric: that is what makes comparisons paired and a leaderboard's rows resampled alike. Returns one
    :class:`Resampled` per metric, keyed by its name.
    """
    resolved = [_resolve(m) for m in metrics]
    _check_count(n_resamples)
    if not probs_by_model:
        raise ConfigError("nothing to resample: no models given")
    sides = {name: [p] if isinstance(p, np.ndarray) else list(p) for name, p in probs_by_model.items()}
    if empty := [name for name, side in sides.items() if not side]:
        raise ConfigError(f"model {empty[0]!r} has no probabilities: give one (N, K) array per seed")
    y, first = validate_predictions(y_true, next(iter(sides.values()))[0])
    probs = [validate_predictions(y, p, n_classes=first.shape[1])[1] for side in sides.values() for p in side]
    resampled = _resample_scores(resolved, y, probs, n_resamples, seed)
    whole = _Draws(y, np.arange(y.shape[0])[None, :])
    points = np.stack([whole.scores(resolved, p)[:, 0] for p in probs], axis=1)  # (metrics, runs)
    bounds = np.cumsum([0, *map(len, sides.values())])
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    return {
        metric.name: Resampled(
            metric.name,
            tuple(sides),
            np.array([points[j, lo:hi].mean() for lo, hi in spans]),
            np.stack([resampled[j, lo:hi].mean(axis=0) for lo, hi in spans]),
        )
        for j, metric in enumerate(resolved)
    }


def bootstrap_ci(
    y_true: np.ndarray,
    probs: np.ndarray,
    metric: str | MetricFn,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile-bootstrap CI of ``metric`` over test images; resamples where it is NaN are skipped."""
    _check_confidence(confidence)
    (resampled,) = resample_models(y_true, {"model": probs}, [metric], n_resamples, seed).values()
    return resampled.ci("model", confidence)


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
    _check_confidence(confidence)
    (resampled,) = resample_models(y_true, {"a": probs_a, "b": probs_b}, [metric], n_resamples, seed).values()
    return resampled.paired("a", "b", confidence)


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
    probs_by_backbone: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    metric: str | MetricFn,
    alpha: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
) -> list[str]:
    """Backbones not significantly worse than the best one: the leader first, then by score, descending.

    A backbone is one ``(N, K)`` array or a list of them, one per training seed (scored as their mean,
    as in :func:`paired_bootstrap`). The leader has the highest ``metric`` on the full test set (the
    first listed wins an exact tie). Each other backbone is compared with it by the paired bootstrap
    (all on the same resamples) and is tied when ``p >= alpha``. The comparisons are not corrected for
    multiplicity: each is a plain test at level ``alpha``, which marks *fewer* backbones as tied than a
    corrected procedure would. Raises :class:`DataError` if the metric is undefined (NaN) for some
    backbone, since there is then no ranking to make.
    """
    _check_confidence(1 - alpha)
    (resampled,) = resample_models(y_true, probs_by_backbone, [metric], n_resamples, seed).values()
    names, points = resampled.names, resampled.points
    for name, point in zip(names, points, strict=True):
        if np.isnan(point):
            raise DataError(f"{resampled.metric} is undefined for {name!r} on this test set (a class absent?)")
    leader = names[int(np.argmax(points))]
    tied = [
        i
        for i, name in enumerate(names)
        if name != leader and resampled.paired(leader, name, 1 - alpha).p_value >= alpha
    ]
    tied.sort(key=lambda i: -points[i])
    return [leader] + [names[i] for i in tied]
