"""Is backbone A really better than backbone B on this dataset? Answered from stored records alone.

Both backbones' runs must have been tested on the same images (same data fingerprint), so each
comparison is paired: the paired bootstrap resamples test images once and rescores every run of
both sides on each resample (seed-averaged when there are several seeds), and McNemar's exact test
checks accuracy seed by seed. Nothing is retrained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.errors import ConfigError, DataError
from bench.evaluation.bootstrap import PairedComparison
from bench.evaluation.metrics import positive_index, predictions
from bench.evaluation.scores import TestScores
from bench.evaluation.significance import McNemarResult, mcnemar, paired_bootstrap
from bench.runs.experiments import group_experiments, labels
from bench.runs.record import RunRecord


@dataclass(frozen=True)
class Side:
    """The finished runs of one experiment (one backbone, protocol and everything else but the seed)."""

    backbone: str
    protocol: str  # the experiment's row label, as the leaderboard shows it
    records: tuple[RunRecord, ...]

    @property
    def seeds(self) -> list[int]:
        return [r.spec.seed for r in self.records]


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

    def frame(self) -> pd.DataFrame:
        """One row per test, for scripts (``bench compare --format csv|json``): the paired bootstrap of
        ``metric`` over all seeds, then McNemar's test on accuracy for each seed both sides ran. Every row
        names both sides, so a row read alone says what was compared; cells a test has not are empty."""
        p = self.paired
        sides = {
            "dataset": self.dataset,
            "a": self.a.backbone,
            "protocol_a": self.a.protocol,
            "seeds_a": ",".join(map(str, self.a.seeds)),
            "b": self.b.backbone,
            "protocol_b": self.b.protocol,
            "seeds_b": ",".join(map(str, self.b.seeds)),
        }
        bootstrap = {
            **sides,
            "test": "paired bootstrap",
            "metric": self.metric,
            "seed": None,
            "score_a": p.score_a,
            "score_b": p.score_b,
            "difference": p.difference,
            "ci_low": p.low,
            "ci_high": p.high,
            "confidence": p.confidence,
            "n_resamples": p.n_resamples,
            "n_skipped": p.n_skipped,
            "p_value": p.p_value,
            "significant": self.significant,
        }
        mcnemar_rows = [
            {
                **sides,
                "test": "mcnemar",
                "metric": "accuracy",
                "seed": seed,
                "only_a_right": t.only_a_correct,
                "only_b_right": t.only_b_correct,
                "p_value": t.p_value,
                "significant": bool(t.p_value < 1 - p.confidence),
            }
            for seed, t in self.mcnemar_by_seed.items()
        ]
        counts = ("seed", "n_resamples", "n_skipped", "only_a_right", "only_b_right")
        return pd.DataFrame([bootstrap, *mcnemar_rows]).astype(dict.fromkeys(counts, "Int64"))  # 0, not 0.0


def scores_of(record: RunRecord) -> TestScores:
    """The test scores saved beside a record."""
    return TestScores.load(record.probs_path())


def positive_of(record: RunRecord) -> int:
    """The positive class's index a record was scored with (records made before it was stored: classes[1])."""
    name = None if record.test is None else record.test.positive
    return 1 if name is None or record.dataset is None else positive_index(record.dataset.classes, name)


def select_side(records: list[RunRecord], dataset: str, backbone: str, protocol: str | None) -> Side:
    """The ok runs of ``backbone``'s one experiment on ``dataset``; ``protocol`` (a protocol or a row label such
    as ``scratch e2``) chooses among several."""
    experiments = [
        e for e in group_experiments(r for r in records if r.spec.dataset == dataset and r.ok) if e.backbone == backbone
    ]
    names = labels(experiments)
    chosen = [e for e in experiments if protocol is None or protocol in (e.protocol_label, names[e.id])]
    if not chosen:
        known = sorted({r.spec.backbone for r in records if r.spec.dataset == dataset})
        what = f"{backbone!r}" + (f" with protocol {protocol!r}" if protocol else "")
        raise ConfigError(
            f"no finished runs of {what} on {dataset!r} (backbones with runs: {', '.join(known) or 'none'})"
        )
    if len(chosen) > 1:
        listed = ", ".join(sorted(f"{names[e.id]} at {e.resolution} px" for e in chosen))
        example = names[chosen[0].id]
        raise ConfigError(
            f"{backbone!r} on {dataset!r} has runs under several settings ({listed}): pass one of those labels "
            f"as --protocol (or --protocol-b), e.g. --protocol '{example}'"
        )
    (experiment,) = chosen
    return Side(backbone, names[experiment.id], experiment.ok)


def compare_backbones(
    records: list[RunRecord],
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
                f"{r.path}: tested on other images than {side_a.records[0].path} "
                "(different split or data): a paired comparison needs the same test images"
            )
    y = reference.labels
    positive = positive_of(side_a.records[0])
    paired = paired_bootstrap(
        y,
        [saved[id(r)].probs for r in side_a.records],
        [saved[id(r)].probs for r in side_b.records],
        metric,
        n_resamples=n_resamples,
        seed=seed,
        positive=positive,
    )
    by_seed_b = {r.spec.seed: r for r in side_b.records}
    tests = {
        r.spec.seed: mcnemar(y, predictions(saved[id(r)].probs), predictions(saved[id(by_seed_b[s])].probs))
        for r in side_a.records
        if (s := r.spec.seed) in by_seed_b
    }
    return Comparison(dataset, metric, side_a, side_b, paired, tests)
