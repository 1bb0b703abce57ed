"""Executing a plan (:func:`bench.runs.execute.execute`), the one path of `bench run`, `bench.run_sweep` and
`bench check`: the sweep's saved records come back, every outcome reaches the watcher, and the standing engine
that `bench check` reruns the reference in is planned without a measurement."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

import bench.train.cpu_engine as cpu_engine
from bench.runs.claims import Claims
from bench.runs.execute import execute
from bench.runs.plan import ExecutorRequest, SweepRequest, plan_sweep, sweep_specs
from bench.runs.planned import PlannedRun, plan_runs
from bench.runs.record import RunRecord, save_record
from bench.train.cpu_engine import PIN_ENV

REQUEST = SweepRequest(backbones=("test_resnet",), datasets=("tiny",), epochs=1)
IN_PROCESS = ExecutorRequest(device="cpu", workers=1)


@dataclass
class Seen:
    """A watcher that keeps what it was told: the runs started (by key) and every outcome."""

    starts: list[str] = field(default_factory=list)
    outcomes: list[RunRecord] = field(default_factory=list)

    def started(self, item: PlannedRun) -> None:
        self.starts.append(item.key)

    def finished(self, record: RunRecord) -> None:
        self.outcomes.append(record)


def test_the_sweeps_saved_records_come_back_and_every_outcome_is_seen(project, tmp_path, make_record):
    results = tmp_path / "results"
    save_record(make_record(), results)  # another run in the folder: not the sweep's
    plan = plan_sweep(REQUEST, results, IN_PROCESS)
    (key,) = [p.key for p in plan.todo]
    seen = Seen()
    records = execute(plan, seen)
    assert [r.key for r in records] == [key] and records[0].ok and records[0].path.parent.is_relative_to(results)
    assert seen.starts == [key] and [(o.key, o.status) for o in seen.outcomes] == [(key, "ok")]

    again = plan_sweep(REQUEST, results, IN_PROCESS)
    assert not again.todo and [r.key for r in execute(again)] == [key]  # finished before: read back, nothing run


def test_an_outcome_never_written_is_seen_but_not_returned(project, tmp_path):
    """A run another process holds is ``skipped``: the watcher hears of it, the folder holds no record of it."""
    plan = plan_sweep(REQUEST, tmp_path / "results", IN_PROCESS)
    (item,) = plan.todo
    seen = Seen()
    with Claims() as elsewhere:
        assert elsewhere.take(item) is None
        assert execute(plan, seen) == []
    assert seen.starts == [item.key] and [o.status for o in seen.outcomes] == ["skipped"]
    assert "claimed by" in (seen.outcomes[0].error or "")


def _never(*args, **kwargs):
    raise AssertionError("measured a CPU engine")


def test_the_standing_engine_is_planned_without_a_measurement(project, tmp_path, monkeypatch):
    """`bench check`'s rerun: the reference's own keys, with no engine decided (and nothing measured) for them."""
    monkeypatch.delenv(PIN_ENV)
    monkeypatch.setattr(cpu_engine, "measure_settings", _never)
    results = tmp_path / "results"
    plan = plan_sweep(dataclasses.replace(REQUEST, standing_engine=True), results, IN_PROCESS)
    assert plan.engines == [] and plan.results_dir == results
    assert [p.key for p in plan.planned] == [p.key for p in plan_runs(sweep_specs(REQUEST)[1], results)]
    with pytest.raises(AssertionError, match="measured a CPU engine"):
        plan_sweep(REQUEST, results, IN_PROCESS)  # any other local CPU sweep decides its engine
