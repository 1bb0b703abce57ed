"""select_on, epoch by epoch: the score that keeps an epoch and the one early stopping counts (lower is better)."""

from __future__ import annotations

import math

import pytest
from factories import metric_values

from bench.train.history import EpochLog, selection_scores
from bench.train.selection import epoch_score, higher_is_better, stopping_score

VAL = metric_values({"balanced_accuracy": 0.7, "auc": None}, ("a", "b"))


@pytest.mark.parametrize(
    "select_on, score, stop",
    [("loss", 0.4, 0.4), ("balanced_accuracy", 0.7, -0.7), ("auc", math.nan, math.inf)],
    ids=["loss: lower is better", "a metric: higher is better, negated", "undefined: no better than any"],
)
def test_scores(select_on, score, stop):
    assert epoch_score(0.4, VAL, select_on) == pytest.approx(score, nan_ok=True)
    assert stopping_score(0.4, VAL, select_on) == stop


def test_directions_come_from_the_metric_table():
    assert not higher_is_better("loss") and higher_is_better("auc") and higher_is_better("macro_f1")


def test_a_records_history_gives_each_epochs_score():
    history = [
        EpochLog("full", 1, 1e-3, 0.6, 0.5, metric_values({"auc": 0.8}, ("a", "b")), 1.0),
        EpochLog("full", 2, 1e-3, 0.6, 0.4, metric_values({}, ("a", "b")), 1.0),
    ]
    assert selection_scores(history, "loss") == [0.5, 0.4]
    assert selection_scores(history, "auc")[0] == 0.8 and math.isnan(selection_scores(history, "auc")[1])
