"""A sweep's runs against a results folder: which are finished, and which records are the sweep's.

Planning resolves every run of a sweep to its experiment identity and run key (:mod:`bench.runs.identity`),
and so to the path its record has or will have: a finished record there is the run, done (:func:`plan_runs`).
Reading a folder back for a sweep goes the other way, by experiment and seed rather than by key, so records
made with other versions still count as the sweep's runs (:func:`sweep_records`: ``bench check``,
``bench reproduction``).

These live apart from :mod:`bench.runs.plan` (the request, the checks, the executor) because the executors and
the claims take a :class:`PlannedRun` too, and planning imports the executors.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.runs.identity import ExperimentIdentity
from bench.runs.record import STORED, RunRecord, record_path
from bench.runs.resolve import ResolvedRun
from bench.runs.spec import RunSpec


@dataclass(frozen=True)
class PlannedRun:
    """A run of a sweep, resolved (:class:`~bench.runs.resolve.ResolvedRun`), with its record path; ``status`` is
    the finished record's."""

    run: ResolvedRun
    path: Path
    status: str | None

    @property
    def spec(self) -> RunSpec:
        return self.run.spec

    @property
    def identity(self) -> ExperimentIdentity:
        return self.run.identity

    @property
    def key(self) -> str:
        return self.run.key

    @property
    def label(self) -> str:
        return self.run.label


def plan_runs(
    specs: list[RunSpec], results_dir: Path, engines: Callable[[list[RunSpec]], list[RunSpec]] | None = None
) -> list[PlannedRun]:
    """Resolve every spec up front (a typo fails before anything trains) and find what is finished.

    ``engines`` writes each run's decided engine into its spec (:func:`bench.runs.engines.resolve_engines`),
    after the names are checked and before any key is computed; without it a CPU run trains in the standing
    fp32 NCHW (``bench check`` reruns the reference so, as it was made).

    Keys include the data (:func:`bench.data.identity.data_identity`, loaded once per dataset and resolution),
    so a run whose data or dataset entry changed since its record was written is planned again. Runs whose
    weights come from another run (``run:...``) are resolved to it and planned after every run they may source
    from (:func:`bench.runs.source.resolve_sources`).
    """
    from bench.data.folder import dataset_entry
    from bench.runs.evaluate_sets import check_eval_sets
    from bench.runs.source import check_overlaps, resolve_sources

    for name, data_root in dict.fromkeys((s.dataset, s.data_root) for s in specs):
        dataset_entry(name, data_root)
    if engines is not None:
        specs = engines(specs)
    runs = resolve_sources(specs, results_dir)
    check_overlaps([r.spec for r in runs])
    check_eval_sets(runs)  # an unknown corruption, a missing library, a set not external: now
    planned = []
    for run in runs:
        path = record_path(results_dir, run.spec, run.key)
        planned.append(PlannedRun(run, path, record_status(path)))
    return planned


def record_status(record_file: Path) -> str | None:
    """``ok`` or ``failed`` for a finished run; None when its record is absent or unreadable.

    Only the status is read, not the whole record: planning and every claim (:mod:`bench.runs.claims`) ask it.
    """
    try:
        status = json.loads(record_file.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None
    return status if status in STORED else None


def sweep_runs(specs: list[RunSpec], results_dir: Path | None = None) -> set[tuple[str, int]]:
    """(experiment id, seed) of every run in ``specs`` (loading their data): what a sweep's records must match.

    ``run:`` weights sources are resolved among ``specs`` and the records of ``results_dir``.
    """
    from bench.runs.source import resolve_sources

    return {(r.identity.id, r.spec.seed) for r in resolve_sources(specs, results_dir)}


def sweep_records(records: list[RunRecord], runs: set[tuple[str, int]]) -> list[RunRecord]:
    """The records that are runs of a sweep (:func:`sweep_runs`): a results folder may hold other runs too.

    A run the sweep asks in the ``auto`` precision may have been planned, on a CPU, in a measured bf16
    (:mod:`bench.runs.engines`): its record is matched as the run it was asked as.
    """
    return [r for r in records if (asked_experiment(r), r.spec.seed) in runs]


def asked_experiment(record: RunRecord) -> str:
    """The experiment ``record`` was asked as: its own, or, where planning resolved ``auto`` to a CPU's bf16, the
    experiment of the same run left at ``auto``."""
    if record.spec.auto_precision is None:
        return record.experiment
    return dataclasses.replace(record.identity, precision=record.spec.precision).id
