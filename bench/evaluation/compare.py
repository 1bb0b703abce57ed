"""Is backbone A really better than backbone B on this dataset? Answered from stored records alone.

Both backbones' runs must have been tested on the same images (same data fingerprint), so each
comparison is paired: the paired bootstrap resamples test images once and rescores every run of
both sides on each resample (seed-averaged when there are several seeds), and McNemar's exact test
checks accuracy seed by seed. Nothing is retrained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import ConfigError, DataError
from bench.evaluation.bootstrap import PairedComparison
from bench.evaluation.metrics import positive_index, predictions
from bench.evaluation.scores import TestScores
from bench.evaluation.significance import McNemarResult, mcnemar, paired_bootstrap
from bench.runs.record import protocol_label


@dataclass(frozen=True)
class Side:
    """The finished runs of one backbone under one protocol on one dataset."""

    backbone: str
    protocol: str
    records: tuple[dict, ...]

    @property
    def seeds(self) -> list[int]:
        return [r["spec"]["seed"] for r in self.records]


@dataclass(frozen=True)
class Comparison:
    dataset: str
    metric: str
    a: Side
    b: Side
    paired: PairedComparison
    mcnemar_by_seed: dict[int, McNemarResult]  # seeds both sides ran

    @property
    def significant(self) -> bool:
        return bool(self.paired.p_value < 1 - self.paired.confidence)


def scores_of(record: dict) -> TestScores:
    """The test scores saved beside a record."""
    return TestScores.load(Path(record["_path"]).with_suffix(".probs.npz"))


def _positive(record: dict) -> int:
    """The positive class's index a record was scored with (records made before it was stored: classes[1])."""
    name = record.get("test", {}).get("positive")
    return 1 if name is None else positive_index(record["dataset"]["classes"], name)


def select_side(records: list[dict], dataset: str, backbone: str, protocol: str | None) -> Side:
    """The ok runs of ``backbone`` on ``dataset``; several protocols/resolutions need ``protocol`` to choose."""
    runs = [
        r for r in records
        if r["status"] == "ok" and r["spec"]["dataset"] == dataset and r["spec"]["backbone"] == backbone
        and (protocol is None or protocol_label(r["spec"]) == protocol)
    ]  # fmt: skip
    if not runs:
        known = sorted({r["spec"]["backbone"] for r in records if r["spec"]["dataset"] == dataset})
        what = f"{backbone!r}" + (f" with protocol {protocol!r}" if protocol else "")
        raise ConfigError(
            f"no finished runs of {what} on {dataset!r} (backbones with runs: {', '.join(known) or 'none'})"
        )
    settings = sorted({(protocol_label(r["spec"]), r["effective_resolution"]) for r in runs})
    if len(settings) > 1:
        listed = ", ".join(f"{p} at {res} px" for p, res in settings)
        raise ConfigError(f"{backbone!r} on {dataset!r} has runs under several settings ({listed}): pass --protocol")
    return Side(backbone, settings[0][0], tuple(sorted(runs, key=lambda r: r["spec"]["seed"])))


def compare_backbones(
    records: list[dict],
    dataset: str,
    a: str,
    b: str,
    metric: str = "balanced_accuracy",
    protocol_a: str | None = None,
    protocol_b: str | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    side_a = select_side(records, dataset, a, protocol_a)
    side_b = select_side(records, dataset, b, protocol_b)
    saved = {id(r): scores_of(r) for r in (*side_a.records, *side_b.records)}
    reference = saved[id(side_a.records[0])]
    for r in (*side_a.records, *side_b.records):
        if not np.array_equal(saved[id(r)].ids, reference.ids):
            raise DataError(
                f"{r['_path']}: tested on other images than {side_a.records[0]['_path']} "
                "(different split or data): a paired comparison needs the same test images"
            )
    y = reference.labels
    positive = _positive(side_a.records[0])
    paired = paired_bootstrap(
        y,
        [saved[id(r)].probs for r in side_a.records],
        [saved[id(r)].probs for r in side_b.records],
        metric,
        n_resamples=n_resamples,
        seed=seed,
        positive=positive,
    )
    by_seed_b = {r["spec"]["seed"]: r for r in side_b.records}
    tests = {
        r["spec"]["seed"]: mcnemar(y, predictions(saved[id(r)].probs), predictions(saved[id(by_seed_b[s])].probs))
        for r in side_a.records
        if (s := r["spec"]["seed"]) in by_seed_b
    }
    return Comparison(dataset, metric, side_a, side_b, paired, tests)
