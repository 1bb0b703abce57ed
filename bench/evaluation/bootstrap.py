"""Bootstrap over test images: how far the finite test set leaves a score uncertain, from saved probabilities.

A test set is a sample of images, so a score measured on it has sampling error; this puts a number on it
without retraining anything. :func:`resample_models` is the engine: several models, each given as one or
more training seeds' probabilities, rescored on the *same* resamples (draw N images with replacement,
rescore, repeat) for several metrics at once. A leaderboard reads every row's CI and every comparison with
its leader off the :class:`Resampled` it returns, paying for the resampling once per dataset;
:func:`bootstrap_ci` is the one-model case, :mod:`bench.evaluation.significance` the paired tests.

Metrics are those of the table :data:`bench.evaluation.metrics.METRICS`, scored by the very formulas that give
the stored values (vectorised over resamples: one ``bincount`` of confusion matrices per model and block,
``auc`` as the Mann-Whitney statistic weighted by how often each image was drawn); any
``(y_true, probs) -> float`` callable works too (called once per resample). All are higher-is-better.

Undefined resamples. A resample can miss a rare class entirely; ``auc``, ``balanced_accuracy`` and
``macro_f1`` are then NaN by the absent-class rule (``sensitivity``/``specificity`` when it misses the
positives/negatives). Such resamples are *skipped*: the CI comes from the remaining ones and ``n_skipped``
says how many were dropped. If the metric is NaN on the full test set, every resample is skipped and the
CI is NaN.

Why not ``scipy.stats.bootstrap``: paired comparisons need the *same* resampled indices for every model
(scipy draws its own), undefined resamples must be skipped and counted (scipy propagates NaN into the
interval), and scipy gives no p-value. Resampling is seeded (``numpy.random.default_rng(seed)``), so equal
seeds give equal indices for equal ``N`` and ``n_resamples``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench.errors import ConfigError
from bench.evaluation.metrics import Draws, Metric, get_metric, validate_predictions

MetricFn = Callable[[np.ndarray, np.ndarray], float]
"""A score from ``(y_true int labels (N,), probs (N, K))``, higher is better."""

_CELLS_PER_CHUNK = 2_000_000
"""Resampled indices held at once (16 MB of int64): bounds memory for large test sets."""


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


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Central percentile interval of the defined values; NaN when there are none."""
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


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
        check_confidence(confidence)
        i = self._index(name)
        defined = self.scores[i][~np.isnan(self.scores[i])]
        low, high = _interval(defined, confidence)
        n = self.scores.shape[1]
        return BootstrapCI(self.metric, float(self.points[i]), low, high, confidence, n, n - defined.size)

    def paired(self, a: str, b: str, confidence: float = 0.95) -> PairedComparison:
        """CI and two-sided p-value of ``a - b`` from the two models' scores on the same resamples.

        p-value: ``min(1, 2 * min(P(d <= 0), P(d >= 0)))`` over the resampled differences d, each share
        counted as ``(count + 1) / (B + 1)`` so that finitely many resamples never report p = 0. It is the
        smallest alpha at which the percentile CI at confidence ``1 - alpha`` excludes 0, so ``p < 0.05``
        agrees with the 95% CI excluding 0 (up to that +1). Identical models give d = 0 always, p = 1.
        A leaderboard marks a row tied with its leader when this p-value is at least its alpha.
        """
        check_confidence(confidence)
        i, j = self._index(a), self._index(b)
        diffs = self.scores[i] - self.scores[j]
        defined = diffs[~np.isnan(diffs)]
        low, high = _interval(defined, confidence)
        if defined.size:
            tail = min(np.count_nonzero(defined <= 0), np.count_nonzero(defined >= 0))
            p_value = float(min(1.0, 2 * (tail + 1) / (defined.size + 1)))
        else:
            p_value = float("nan")
        score_a, score_b = float(self.points[i]), float(self.points[j])
        return PairedComparison(
            metric=self.metric,
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


@dataclass(frozen=True)
class _Scorer:
    """A table metric (scored on all resamples at once) or a custom callable (scored resample by resample)."""

    name: str
    metric: Metric | None = None
    fn: MetricFn | None = None


def _scorer(metric: str | MetricFn) -> _Scorer:
    if callable(metric):
        return _Scorer(getattr(metric, "__name__", "metric"), fn=metric)
    return _Scorer(metric, metric=get_metric(metric))


def _scores(scorers: Sequence[_Scorer], draws: Draws, probs: np.ndarray, positive: int) -> np.ndarray:
    """Scores ``(len(scorers), B)``; the table metrics share one pass (confusion matrices counted once)."""
    out = np.empty((len(scorers), draws.idx.shape[0]))
    table = [j for j, s in enumerate(scorers) if s.metric is not None]
    if table:
        out[table] = draws.scores([scorers[j].metric for j in table], probs, positive)  # type: ignore[misc]
    for j, s in enumerate(scorers):
        if s.fn is not None:
            out[j] = [s.fn(draws.y[row], probs[row]) for row in draws.idx]
    return out


def resample_models(
    y_true: np.ndarray,
    probs_by_model: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    metrics: Sequence[str | MetricFn],
    n_resamples: int = 1000,
    seed: int = 0,
    positive: int = 1,
) -> dict[str, Resampled]:
    """Every model, for every metric, rescored on the same ``n_resamples`` resamples of the test images.

    ``probs_by_model`` maps a name to one ``(N, K)`` array, or to a list of them (one per training seed),
    all predictions on the images of ``y_true`` in its order. One draw of indices serves every model and
    metric: that is what makes comparisons paired and a leaderboard's rows resampled alike. ``positive``
    is the positive class's index of a binary task. Returns one :class:`Resampled` per metric, by name.
    """
    scorers = [_scorer(m) for m in metrics]
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")
    if not probs_by_model:
        raise ConfigError("nothing to resample: no models given")
    sides = {name: [p] if isinstance(p, np.ndarray) else list(p) for name, p in probs_by_model.items()}
    if empty := [name for name, side in sides.items() if not side]:
        raise ConfigError(f"model {empty[0]!r} has no probabilities: give one (N, K) array per seed")
    y, first = validate_predictions(y_true, next(iter(sides.values()))[0])
    probs = [validate_predictions(y, p, n_classes=first.shape[1])[1] for side in sides.values() for p in side]
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // n)
    resampled = np.empty((len(scorers), len(probs), n_resamples))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        draws = Draws(y, rng.integers(0, n, size=(stop - start, n)))
        for m, p in enumerate(probs):
            resampled[:, m, start:stop] = _scores(scorers, draws, p, positive)
    whole = Draws.whole(y)
    points = np.stack([_scores(scorers, whole, p, positive)[:, 0] for p in probs], axis=1)  # (metrics, runs)
    bounds = np.cumsum([0, *map(len, sides.values())])
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    return {
        scorer.name: Resampled(
            scorer.name,
            tuple(sides),
            np.array([points[j, lo:hi].mean() for lo, hi in spans]),
            np.stack([resampled[j, lo:hi].mean(axis=0) for lo, hi in spans]),
        )
        for j, scorer in enumerate(scorers)
    }


def bootstrap_ci(
    y_true: np.ndarray,
    probs: np.ndarray,
    metric: str | MetricFn,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    positive: int = 1,
) -> BootstrapCI:
    """Percentile-bootstrap CI of ``metric`` over test images; resamples where it is NaN are skipped."""
    check_confidence(confidence)
    (resampled,) = resample_models(y_true, {"model": probs}, [metric], n_resamples, seed, positive).values()
    return resampled.ci("model", confidence)
