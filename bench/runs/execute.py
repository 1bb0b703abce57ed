"""Executing a checked sweep: the one way ``bench run``, :func:`bench.run_sweep` and ``bench check`` run a plan.

A plan (:func:`bench.runs.plan.plan_sweep`) has been checked whole, so executing it only hands the runs still to
do to its executor, tells whoever watches how each goes, and reads the sweep's records back. Each caller then
differs only in how it watches: ``bench run`` and ``bench check`` draw bars, a script watches nothing. Claims,
retries and the ``unfinished`` and ``skipped`` outcomes are the executors' (:mod:`bench.runs.executors.driver`),
the same for all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from bench.runs.record import load_records

if TYPE_CHECKING:
    from bench.runs.plan import SweepPlan
    from bench.runs.planned import PlannedRun
    from bench.runs.record import RunRecord
    from bench.train.events import ProgressFn


class Watcher(Protocol):
    """Who follows a sweep as it runs: ``bench run``'s and ``bench check``'s bars.

    :meth:`started` is called as a run starts and returns the callback for its training events (or None);
    :meth:`finished` gets every run's outcome as it comes, in whatever order the runs finish, the ``unfinished``
    and ``skipped`` ones that are never written included.
    """

    def started(self, item: PlannedRun) -> ProgressFn | None: ...

    def finished(self, record: RunRecord) -> None: ...


def execute(plan: SweepPlan, watcher: Watcher | None = None) -> list[RunRecord]:
    """Run ``plan``'s runs still to do on its executor; return the saved record of every run of the plan.

    The records are read back from the plan's results folder, so they are the ones finished before and the ones
    finished now alike, and only the sweep's (the folder may hold other runs). An ``unfinished`` or ``skipped``
    outcome is never written: only the ``watcher`` sees it (None: nobody watches). A Ctrl-C reaches the caller
    as ``KeyboardInterrupt``, every run finished until then saved.
    """
    started = watcher.started if watcher is not None else _unwatched
    for record in plan.executor.run(plan.todo, plan.results_dir, started):
        if watcher is not None:
            watcher.finished(record)
    keys = {p.key for p in plan.planned}
    return [r for r in load_records(plan.results_dir) if r.key in keys]


def _unwatched(item: PlannedRun) -> None:
    """No callback for a run's training events: nobody watches."""
    return None
