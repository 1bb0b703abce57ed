"""Executors run the planned runs of a sweep; records are the same whichever one runs them.

``local`` (:mod:`bench.runs.executors.local`) runs them in this process one after another on one device or,
given several devices (every visible GPU, or the CPU once per ``--workers``), in one worker process per device. ``ray``
(:mod:`bench.runs.executors.ray`, ``pip install -e ".[ray]"``) fans them out over a Ray cluster, one task per
run holding a whole GPU (or N CPUs). An executor (:class:`~bench.runs.executors.driver.Executor`) yields each
run's record as it finishes, so the caller can show progress and nothing depends on the order in which runs
complete.

A run that fails by itself (diverged loss, bad data) is a ``failed`` record written by the runner, as in any
run. A run its environment stopped (disk full, out of memory: :mod:`bench.runs.unfinished`) or whose worker
process failed it (killed, its node lost, the harness raised) is queued again up to ``retries`` times (in
worker processes) and then reported ``unfinished``, never written, so a sweep always finishes and the run
stays to do. Each run is claimed before it starts (:mod:`bench.runs.claims`): one claimed by another sweep
is reported ``skipped``.
"""

from bench.runs.executors.driver import Executor, ProgressFactory
from bench.runs.executors.local import LocalExecutor, visible_devices
from bench.runs.executors.ray import RayExecutor

__all__ = ["Executor", "LocalExecutor", "ProgressFactory", "RayExecutor", "visible_devices"]
