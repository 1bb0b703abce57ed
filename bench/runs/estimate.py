"""How long the runs of a plan will train, from what earlier records of the same kind took.

A sweep on these CPUs takes hours, so before starting one a user wants its cost. The estimate is measured,
never guessed: the training seconds per image-epoch of earlier finished runs of the same backbone, effective
resolution and device kind (their median, since a shared machine makes single runs slow), times the planned
run's epochs and training images (counted from the dataset's table, without decoding). With no earlier run
of the backbone at that resolution on that kind of device the estimate is unknown and says so, rather than
extrapolating across architectures or sizes.
It is an upper bound for protocols with early stopping, which may end a phase sooner.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.data.entries import with_split
from bench.data.folder import dataset_entry
from bench.data.loading import describe_dataset
from bench.runs.record import RunRecord
from bench.runs.sweep import PlannedRun


@dataclass(frozen=True)
class Estimate:
    """A planned run's expected training seconds (None: unknown) and how many earlier runs it rests on."""

    seconds: float | None
    based_on: int
    reason: str = ""  # why it is unknown


def _kind(record: RunRecord) -> tuple[str, int, str]:
    return record.spec.backbone, record.effective_resolution, str(record.environment.device.get("device_kind"))


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
    rates: dict[tuple[str, int, str], list[float]] = {}
    for record in records:
        rate = _seconds_per_image_epoch(record)
        if rate is not None:
            rates.setdefault(_kind(record), []).append(rate)
    images: dict[tuple[str, str | None], int] = {}
    estimates = {}
    for run in planned:
        effective = run.identity["resolution"]["effective"]
        found = rates.get((run.spec.backbone, effective, device_kind), [])
        if not found:
            why = f"no earlier run of {run.spec.backbone} at {effective} px on {device_kind}"
            estimates[run.key] = Estimate(None, 0, why)
            continue
        where = (run.spec.dataset, run.spec.data_root, run.identity["protocol"].get("split", "dataset"))
        if where not in images:
            images[where] = _split_train_size(*where)
        epochs = sum(phase["epochs"] for phase in run.identity["protocol"]["phases"])
        estimates[run.key] = Estimate(statistics.median(found) * epochs * images[where], len(found))
    return estimates


def _split_train_size(dataset: str, data_root: str | None, split: str) -> int:
    entry = with_split(dataset_entry(dataset, data_root), split)  # a protocol's own split has another train size
    return describe_dataset(entry, Path(data_root) if data_root else None)["split_sizes"]["train"]
