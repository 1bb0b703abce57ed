"""A run's bar: what the terminal shows for each typed event (bench.cli.progress)."""

from __future__ import annotations

import io

import pytest
from factories import metric_values
from rich.console import Console
from rich.progress import Progress

from bench.cli.progress import _run_callback
from bench.train.events import EpochEnded, Stage, Started, Stepped
from bench.train.history import EpochLog

LOG = EpochLog("full", 1, 1e-3, 0.61, 0.55, metric_values({"balanced_accuracy": 0.7}, ("a", "b")), 1.0)


def _bar():
    progress = Progress(console=Console(file=io.StringIO()))
    task = progress.add_task("run", start=False, total=None, info="")
    return progress, task, _run_callback(progress, task)


CASES = [
    ([Stage("loading data")], "loading data", None),
    ([Started(10)], "training", 0),
    ([Started(10), Stepped("full", 1, 1, 0.693)], "full ep 1 loss 0.693", 1),
    ([Started(10), Stepped("full", 1, 1, 0.693), Stepped("full", 1, 2)], "full ep 1 loss 0.693", 2),
    ([Started(3), Stepped("full", 1, 3, 0.5), EpochEnded(LOG)], "full ep 1 loss 0.500 val loss 0.550 bal.acc 0.700", 1),
    ([Started(3), EpochEnded(LOG), Stage("evaluating")], "evaluating val loss 0.550 bal.acc 0.700", 0),
    ([Started(4, "search trial 1/3"), Stepped("full", 1, 1, 0.7)], "search trial 1/3 full ep 1 loss 0.700", 1),
    ([Started(4, "search trial 1/3"), Stepped("full", 1, 1), Started(9)], "training", 0),  # the bar starts again
]


@pytest.mark.parametrize(("events", "info", "completed"), CASES)
def test_each_event_updates_the_bar(events, info, completed):
    progress, task, callback = _bar()
    for event in events:
        callback(event)
    shown = progress.tasks[0]
    assert shown.fields["info"] == info
    assert shown.started  # a stage before training starts the clock too
    if completed is not None:
        assert shown.completed == completed
