"""How long the runs of a plan will train, from what earlier records of the same kind took.

A sweep on these CPUs takes hours, so before starting one a user wants its cost. The estimate is measured,
never guessed: the training seconds per image-epoch of earlier finished runs of the same backbone, effective
resolution and device kind (their median, since a shared machine makes single runs slow), times the planned
run's epochs and training images (counted from the dataset's table, without decoding, times the run's
``train_fraction``: :mod:`bench.data.fractions`). With no earlier run
of the backbone at that resolution on that kind of device the estimate is unknown and says so, rather than
extrapolating across architectures or sizes. Runs in the planned run's CPU engine (precision and memory format:
bf16 channels-last trains some backbones twice as fast) are preferred; where there are none, runs in another
engine stand in and the estimate says so. A protocol's search (:mod:`bench.runs.search`) is counted once per
experiment, on the run of the search's seed: every trial at its full epochs.
It is an upper bound for protocols with early stopping or pruning, which may end a phase or a trial sooner.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.data.entries import with_split
from bench.data.folder import dataset_entry
from bench.data.loading import describe_dataset
from bench.protocol.spec import Protocol
from bench.runs.planned import PlannedRun
from bench.runs.record import RunRecord
from bench.runs.spec import RunSpec, identity_precision
from bench.train.engine import EngineConfig


@dataclass(frozen=True)
class Estimate:
    """A planned run's expected training seconds (None: unknown) and how many earlier runs it rests on."""

    seconds: float | None
    based_on: int
    reason: str = ""  # why it is unknown


def _kind(record: RunRecord) -> tuple[str, int, str]:
    return record.spec.backbone, record.effective_resolution, str(record.environment.device.get("device_kind"))


def _engine(record: RunRecord) -> tuple[bool, bool, bool, bool]:
    """What a record trained in, as far as speed goes: bf16 autocast or not, channels-last or not, fused optimiser or
    not (on a CPU; every CUDA run fuses, and CUDA records are compared with CUDA records only), compiled or not."""
    engine = record.engine or EngineConfig()
    return engine.amp == "bf16", engine.channels_last, engine.fused_optimizer, engine.compile


def _planned_engine(spec: RunSpec) -> tuple[bool, bool, bool, bool]:
    return identity_precision(spec) == "bf16", spec.memory_format == "nhwc", spec.fused_optimizer, spec.compile


def _epochs(protocol: Protocol, seed: int) -> int:
    """The run's epochs at most, with its experiment's search trials on the run of the search's seed."""
    epochs = sum(phase.epochs for phase in protocol.phases)
    search = protocol.search
    if search is not None and seed == search.seed:
        if search.epochs is None:
            per_trial = epochs
        elif isinstance(search.epochs, tuple):
            per_trial = sum(search.epochs)
        else:
            per_trial = search.epochs * len(protocol.phases)  # one number for every phase
        epochs += search.trials * per_trial
    return epochs


def _train_images(record: RunRecord) -> int | None:
    return None if record.dataset is None else sum(record.dataset.class_counts.get("train", [])) or None


def _seconds_per_image_epoch(record: RunRecord) -> float | None:
    """Training seconds per image per epoch of one finished run (its timing covers the epochs since resume)."""
    epochs = len(record.history) - (record.resumed_at_epoch or 0)
    images = _train_images(record)
    seconds = record.timings_s.get("train")
    if not record.ok or not epochs or not images or not seconds:
        return None
    return seconds / (epochs * images)


def estimate_runs(planned: list[PlannedRun], records: list[RunRecord], device_kind: str) -> dict[str, Estimate]:
    """An :class:`Estimate` per planned run key, from ``records`` (any results folders' finished runs)."""
    rates: dict[tuple[str, int, str], dict[tuple[bool, bool], list[float]]] = {}
    for record in records:
        rate = _seconds_per_image_epoch(record)
        if rate is not None:
            rates.setdefault(_kind(record), {}).setdefault(_engine(record), []).append(rate)
    images: dict[tuple[str, str | None], int] = {}
    estimates = {}
    for run in planned:
        effective = run.identity.resolution.effective
        by_engine = rates.get((run.spec.backbone, effective, device_kind), {})
        found = by_engine.get(_planned_engine(run.spec), [])
        other = "" if found else " in another engine"
        found = found or [rate for rates_of in by_engine.values() for rate in rates_of]
        if not found:
            why = f"no earlier run of {run.spec.backbone} at {effective} px on {device_kind}"
            estimates[run.key] = Estimate(None, 0, why)
            continue
        where = (run.spec.dataset, run.spec.data_root, run.identity.protocol.split)
        if where not in images:
            images[where] = _split_train_size(*where)
        epochs = _epochs(run.identity.protocol, run.spec.seed)
        seconds = statistics.median(found) * epochs * images[where] * run.spec.train_fraction
        estimates[run.key] = Estimate(seconds, len(found), f"median of {len(found)} run(s){other}" if other else "")
    return estimates


def _split_train_size(dataset: str, data_root: str | None, split: str) -> int:
    entry = with_split(dataset_entry(dataset, data_root), split)  # a protocol's own split has another train size
    return describe_dataset(entry, Path(data_root) if data_root else None)["split_sizes"]["train"]
