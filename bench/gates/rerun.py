"""``bench check`` end to end: the reference records, a rerun of the reference sweep (or records already made),
and their comparison (:mod:`bench.gates.accuracy`).

The rerun goes the way every sweep goes: :func:`bench.runs.plan.plan_sweep` checks it whole first (the results
folder writable, every precision one the device runs), so a mistake is one line before anything trains, and
:func:`bench.runs.execute.execute` runs it. What is the gate's own is how it runs: in a fresh temporary folder,
one run after another in this process at the reference's torch thread count where this machine has it, in the
CPU's standing fp32 NCHW (:data:`bench.gates.accuracy.REFERENCE_COMMAND` made the reference so). On the
reference's platform the rerun's keys are then the reference's own, and the comparison is exact.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from bench.errors import ConfigError
from bench.gates.accuracy import (
    REFERENCE_COMMAND,
    REFERENCE_DIR,
    CheckReport,
    Tolerance,
    compare_records,
    load_tolerance,
    reference_threads,
)
from bench.runs.execute import Watcher, execute
from bench.runs.plan import ExecutorRequest, SweepPlan, SweepRequest, plan_sweep, sweep_specs
from bench.runs.planned import sweep_records, sweep_runs
from bench.runs.record import RunRecord, load_records

Watch = Callable[[SweepPlan], AbstractContextManager[Watcher]]
"""How a caller follows the rerun: given its checked plan, a context that yields the watcher (``bench check``:
a line saying what reruns where, then the bars)."""


@dataclass(frozen=True)
class CheckRequest:
    """What ``bench check`` compares: the ``reference`` records with a rerun of ``sweep`` on ``device``, or with
    the records already in ``results_dir``; ``tolerance`` (every dataset's) replaces the reference's measured
    tolerances (:func:`bench.gates.accuracy.load_tolerance`) when given."""

    reference: Path = REFERENCE_DIR
    sweep: str = "reference"
    results_dir: Path | None = None
    tolerance: float | None = None
    device: str = "cpu"


def check_accuracy(request: CheckRequest, watch: Watch) -> CheckReport:
    """Compare every test metric of every reference run with its rerun's (see :mod:`bench.gates.accuracy`).

    Only the sweep's runs are compared: a results folder may hold other runs, which are neither a regression
    nor a stale reference. A user mistake (no reference, the reference given as its own rerun, an empty folder,
    a sweep that does not plan) is a one-line :class:`~bench.errors.BenchError` before anything trains.
    """
    reference = load_records(request.reference)
    if not reference:
        create = f"create them with `{REFERENCE_COMMAND}`"
        raise ConfigError(f"no reference records under {request.reference}/runs: {create}")
    _, specs = sweep_specs(SweepRequest(sweep=request.sweep))
    if request.results_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
            current = rerun_reference(request.sweep, Path(tmp), reference, request.device, watch)
    elif request.results_dir.resolve() == request.reference.resolve():
        raise ConfigError(f"--results-dir {request.results_dir} is the reference itself: point it at a rerun")
    else:
        current = load_records(request.results_dir)
        if not current:
            raise ConfigError(f"no run records under {request.results_dir}/runs to compare with the reference")
    current = sweep_records(current, sweep_runs(specs))
    tolerance = load_tolerance(request.reference) if request.tolerance is None else Tolerance(request.tolerance)
    return compare_records(reference, current, tolerance)


def rerun_reference(
    sweep: str, results_dir: Path, reference: list[RunRecord], device: str, watch: Watch
) -> list[RunRecord]:
    """Plan ``sweep`` into ``results_dir`` and run it as the reference was made (see the module docstring).

    The thread count is set before planning: a run in this process trains with torch's threads as they are.
    """
    import torch

    from bench.environment.device import resolve_device

    threads = reference_threads(reference)
    if threads is not None:
        torch.set_num_threads(threads)
    # On the CPU one run after another in this process, at those threads; on CUDA one worker per visible GPU.
    workers = 1 if resolve_device(device).type == "cpu" else None
    executor = ExecutorRequest(device=device, workers=workers)
    plan = plan_sweep(SweepRequest(sweep=sweep, standing_engine=True), results_dir, executor)
    with watch(plan) as watcher:
        return execute(plan, watcher)
