"""What a protocol's ``select_on`` means epoch by epoch: the score that keeps an epoch and stops a phase.

``select_on`` is validation ``loss`` (lower is better) or a metric of the metric table that applies to every task
(:data:`bench.evaluation.metrics.SELECTABLE_METRICS`; higher is better). The kept epoch is the best on it over the
whole run (:func:`bench.train.loop.fit`), and early stopping counts the epochs of a phase without a better one, so
both follow the task's metric once a protocol names it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from bench.evaluation.metrics import get_metric

if TYPE_CHECKING:
    from bench.evaluation.values import MetricValues


def higher_is_better(select_on: str) -> bool:
    """The direction of a selection metric: ``loss`` is lower-is-better, the metric table says for the others."""
    return select_on != "loss" and get_metric(select_on).higher_is_better


def epoch_score(val_loss: float, val: MetricValues, select_on: str) -> float:
    """One epoch's value of ``select_on`` from its validation loss and metrics (NaN where undefined or missing)."""
    return float(val_loss) if select_on == "loss" else val.score(select_on)


def stopping_score(val_loss: float, val: MetricValues, select_on: str) -> float:
    """The epoch's ``select_on`` as early stopping compares it: lower is better, and NaN no better than any."""
    score = epoch_score(val_loss, val, select_on)
    if math.isnan(score):
        return math.inf
    return -score if higher_is_better(select_on) else score
