"""Scoring predictions made outside the harness exactly as a run is scored: ``bench.evaluate``.

A user with their own model's test predictions wants numbers that sit in the same table as a run's: the
same metric formulas (:func:`bench.evaluation.values.compute_metrics`), the same absent-class and argmax-tie
conventions, and the same 95% percentile-bootstrap CIs over the test images (:mod:`bench.evaluation.bootstrap`,
1000 resamples, seed 0, as leaderboards use). Nothing here scores differently from a run; it only accepts the
shapes external code tends to produce (a binary task's positive-class score as one column).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.errors import DataError
from bench.evaluation.bootstrap import BootstrapCI, resample_models
from bench.evaluation.metrics import positive_index
from bench.evaluation.values import MetricValues, compute_metrics

Task = Literal["binary", "multiclass"]


@dataclass(frozen=True)
class Evaluation:
    """External predictions scored: every metric that applies to the task, and a bootstrap CI for each."""

    metrics: MetricValues
    ci: dict[str, BootstrapCI]
    n_images: int

    @property
    def values(self) -> dict[str, float]:
        """Each applicable metric's value on the whole test set, by name."""
        return self.metrics.values


def evaluate(
    y_true: Sequence[int] | np.ndarray,
    y_score: np.ndarray,
    task: Task | None = None,
    classes: Sequence[str] | None = None,
    positive: str | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Evaluation:
    """Score ``y_score`` (softmax probabilities, ``(N, K)``; for a binary task also the positive class's
    probability, ``(N,)``) against integer labels ``y_true`` as a run's test split is scored.

    ``classes`` name the columns in order (default ``"0"``, ``"1"``, ...); ``task`` is checked against their
    number when given; ``positive`` is a binary task's positive class (default ``classes[1]``).
    """
    scores = np.asarray(y_score, dtype=np.float64)
    k = 2 if scores.ndim == 1 else (scores.shape[1] if scores.ndim == 2 else 0)
    names = tuple(classes) if classes is not None else tuple(str(i) for i in range(k))
    if task is not None and task != ("binary" if len(names) == 2 else "multiclass"):
        raise DataError(f"task {task!r} does not fit {len(names)} classes {list(names)}")
    pos = positive_index(names, positive)
    if scores.ndim == 1:  # the positive class's probability, one per image
        if len(names) != 2:
            raise DataError(f"y_score has shape {scores.shape}: a {len(names)}-class task needs one column per class")
        scores = np.stack([1.0 - scores, scores] if pos == 1 else [scores, 1.0 - scores], axis=1)
    metrics = compute_metrics(np.asarray(y_true), scores, names, positive)
    resampled = resample_models(np.asarray(y_true), {"model": scores}, list(metrics.values), n_resamples, seed, pos)
    ci = {name: r.ci("model", confidence) for name, r in resampled.items()}
    return Evaluation(metrics, ci, len(scores))
