"""A run's typed events: what a watcher sees, in order, from the first second to the record."""

from __future__ import annotations

import pickle

import torch

from bench.runs.runner import run
from bench.runs.spec import RunSpec
from bench.train.events import EpochEnded, Stage, Started, Stepped


def test_a_run_says_what_it_does_from_loading_to_latency_and_shows_a_loss_at_every_step(project, tmp_path):
    """Was: nothing for the seconds of loading and after the last epoch, and a loss only at epoch ends, so a
    1-epoch run showed none."""
    events = []
    record = run(
        RunSpec("test_resnet", "tiny", "scratch", epochs=1), tmp_path / "results", torch.device("cpu"), events.append
    )
    assert record.status == "ok"
    kinds = [type(e).__name__ if not isinstance(e, Stage) else e.name for e in events]
    first_step, last_step = kinds.index("Stepped"), len(kinds) - 1 - kinds[::-1].index("Stepped")
    assert kinds[:first_step] == ["loading data", "Started"]
    assert kinds[last_step + 1 :] == ["EpochEnded", "evaluating", "latency"]
    steps = [e for e in events if isinstance(e, Stepped)]
    assert [s.step for s in steps] == list(range(1, len(steps) + 1)) and all(s.loss is not None for s in steps)
    started = next(e for e in events if isinstance(e, Started))
    assert started.total_steps == len(steps) and started.what == "training"
    (ended,) = [e for e in events if isinstance(e, EpochEnded)]
    assert ended.log.epoch == 1 and ended.log.train_loss > 0
    assert all(repr(pickle.loads(pickle.dumps(e))) == repr(e) for e in events)  # cross a queue intact (NaN != NaN)
