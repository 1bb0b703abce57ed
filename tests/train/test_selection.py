"""select_on, epoch by epoch: the score that keeps an epoch and the one early stopping counts (lower is better)."""

from __future__ import annotations

import math

import pytest

from bench.train.selection import epoch_score, higher_is_better, selection_scores, stopping_score

VAL = {"balanced_accuracy": 0.7, "auc": None}


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
    history = [{"epoch": 1, "val_loss": 0.5, "val": {"auc": 0.8}}, {"epoch": 2, "val_loss": 0.4, "val": {}}]
    assert selection_scores(history, "loss") == [0.5, 0.4]
    assert selection_scores(history, "auc")[0] == 0.8 and math.isnan(selection_scores(history, "auc")[1])
