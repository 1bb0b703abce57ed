"""Did a change that should not move the numbers move them? The same experiments in two results folders.

A faster engine (bf16 autocast, channels-last), new library versions or another machine should leave a
comparison's answer where it was; this module checks that from stored records, nothing retrained. Rows are
matched on the experiment identity with its precision left out: bf16 autocast is a new run key by design (it
changes the numbers), yet it asks the same question as the fp32 run it replaces. Seeds are paired, so a row
compares the same seeds, data order and initial weights on both sides.

Per row: both sides' seed means, their difference, the baseline's seed spread (sample standard deviation over the
paired seeds), a paired bootstrap over the shared test images with both sides seed-averaged
(:func:`bench.evaluation.significance.paired_bootstrap`), how many seeds gave bit-identical test probabilities and
the largest change of one, and each side's training time per epoch (median over seeds). A row *agrees* when its
difference lies within the baseline's seed spread: the change moved it no more than a new seed does. A row outside
it is a finding to report, not an error: with three seeds the spread is itself uncertain, which is why the
bootstrap's interval stands beside it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from bench.errors import ConfigError, DataError
from bench.evaluation.bootstrap import PairedComparison
from bench.evaluation.significance import paired_bootstrap
from bench.reports.compare import positive_of, scores_of
from bench.runs.experiments import Experiment, group_experiments
from bench.runs.record import RunRecord

Verdict = Literal["identical", "within spread", "outside spread", "one seed"]


def engine_name(record: RunRecord) -> str:
    """What a run trained in (:attr:`bench.train.engine.EngineConfig.name`); no engine stored: fp32 channels-first,
    the only engine before it was recorded."""
    return "fp32-nchw" if record.engine is None else record.engine.name


def epoch_seconds(record: RunRecord) -> float:
    """Training seconds per epoch run (NaN where the record has no training time or no epoch)."""
    train = record.timings_s.get("train")
    return math.nan if train is None or not record.epochs_run else train / record.epochs_run


def _epoch(records: tuple[RunRecord, ...]) -> float:
    """A row's training seconds per epoch: the median over its seeds, so that one run slowed by a busy machine
    (records of shared machines hold several times the usual epoch) does not decide it."""
    return float(np.median([epoch_seconds(r) for r in records]))


@dataclass(frozen=True)
class RowAgreement:
    """One experiment in both folders: the baseline's runs and the candidate's, paired by seed."""

    dataset: str
    backbone: str
    protocol: str  # the baseline's row label
    metric: str
    baseline: tuple[RunRecord, ...]
    candidate: tuple[RunRecord, ...]
    paired: PairedComparison  # its "a" is the candidate: difference = candidate - baseline
    identical_seeds: int  # seeds whose saved test probabilities are equal bit for bit
    largest_change: float  # the largest change of one test probability, over the paired seeds

    @property
    def seeds(self) -> list[int]:
        return [r.spec.seed for r in self.baseline]

    @property
    def difference(self) -> float:
        """Candidate minus baseline, on the seed means of the stored test scores."""
        return self.paired.difference

    @property
    def spread(self) -> float:
        """The baseline's seed spread (sample standard deviation; NaN with one seed)."""
        scores = [r.score(self.metric) for r in self.baseline]
        return statistics.stdev(scores) if len(scores) > 1 else math.nan

    @property
    def verdict(self) -> Verdict:
        if self.identical_seeds == len(self.baseline):
            return "identical"
        if math.isnan(self.spread):
            return "one seed"  # no spread to judge by: the bootstrap's interval is all there is
        return "within spread" if abs(self.difference) <= self.spread else "outside spread"

    @property
    def epoch_ratio(self) -> float:
        """Candidate's training time per epoch over the baseline's (seed medians): below 1 is faster."""
        return _epoch(self.candidate) / _epoch(self.baseline)

    def to_dict(self) -> dict:
        p = self.paired
        return {
            "dataset": self.dataset,
            "backbone": self.backbone,
            "protocol": self.protocol,
            "engine_baseline": ",".join(sorted({engine_name(r) for r in self.baseline})),
            "engine_candidate": ",".join(sorted({engine_name(r) for r in self.candidate})),
            "seeds": ",".join(map(str, self.seeds)),
            "metric": self.metric,
            "score_baseline": p.score_b,
            "score_candidate": p.score_a,
            "difference": self.difference,
            "spread_baseline": self.spread,
            "ci_low": p.low,
            "ci_high": p.high,
            "p_value": p.p_value,
            "identical_seeds": self.identical_seeds,
            "largest_probability_change": self.largest_change,
            "verdict": self.verdict,
            "epoch_s_baseline": _epoch(self.baseline),
            "epoch_s_candidate": _epoch(self.candidate),
            "epoch_ratio": self.epoch_ratio,
        }


@dataclass(frozen=True)
class Agreement:
    """Every matched row, and the candidate's experiments that had no match in the baseline."""

    rows: tuple[RowAgreement, ...]
    unmatched: tuple[str, ...]  # the candidate's row labels, dataset/backbone/protocol

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.to_dict() for r in self.rows]).astype({"identical_seeds": "Int64"})

    @property
    def epoch_ratio(self) -> float:
        """Training time per epoch of every row together, candidate over baseline: each row weighs by its cost,
        as a sweep's run time does."""
        baseline = sum(_epoch(row.baseline) for row in self.rows)
        return sum(_epoch(row.candidate) for row in self.rows) / baseline

    def counts(self) -> dict[Verdict, int]:
        return {v: sum(r.verdict == v for r in self.rows) for v in get_args(Verdict)}


def _match_key(experiment: Experiment) -> str:
    """The experiment's identity with its precision left out."""
    return dataclasses.replace(experiment.identity, precision="").id


def _experiments(records: list[RunRecord], dataset: str | None) -> list[Experiment]:
    return [e for e in group_experiments(r for r in records if r.ok) if dataset is None or e.dataset == dataset]


def _row(a: Experiment, b: Experiment, metric: str, n_resamples: int) -> RowAgreement | None:
    by_seed = {r.spec.seed: r for r in b.ok}
    pairs = [(r, by_seed[r.spec.seed]) for r in a.ok if r.spec.seed in by_seed]
    if not pairs:
        return None
    saved = {id(r): scores_of(r) for pair in pairs for r in pair}
    ids = saved[id(pairs[0][0])].ids
    for r in (r for pair in pairs for r in pair):
        if not np.array_equal(saved[id(r)].ids, ids):
            raise DataError(
                f"{r.path}: tested on other images than {pairs[0][0].path}: the two folders' runs of "
                f"{a.dataset}/{a.backbone} must share their test split to be compared"
            )
    paired = paired_bootstrap(
        saved[id(pairs[0][0])].labels,
        [saved[id(rb)].probs for _, rb in pairs],
        [saved[id(ra)].probs for ra, _ in pairs],
        metric,
        n_resamples=n_resamples,
        positive=positive_of(pairs[0][0]),
    )
    identical = sum(np.array_equal(saved[id(ra)].probs, saved[id(rb)].probs) for ra, rb in pairs)
    change = max(float(np.abs(saved[id(ra)].probs - saved[id(rb)].probs).max()) for ra, rb in pairs)
    return RowAgreement(
        a.dataset,
        a.backbone,
        a.protocol_label,
        metric,
        tuple(ra for ra, _ in pairs),
        tuple(rb for _, rb in pairs),
        paired,
        int(identical),
        change,
    )


def agreement(
    baseline: list[RunRecord],
    candidate: list[RunRecord],
    metric: str = "balanced_accuracy",
    dataset: str | None = None,
    n_resamples: int = 2000,
) -> Agreement:
    """Pair every finished experiment of ``candidate`` with the one of ``baseline`` that differs at most in its
    precision, seed by seed, and score the difference (see the module docstring). ConfigError when nothing pairs."""
    by_key = {_match_key(e): e for e in _experiments(baseline, dataset)}
    rows: list[RowAgreement] = []
    unmatched: list[str] = []
    for b in _experiments(candidate, dataset):
        a = by_key.get(_match_key(b))
        row = None if a is None else _row(a, b, metric, n_resamples)
        if row is None:
            unmatched.append(f"{b.dataset}/{b.backbone}/{b.protocol_label}")
        else:
            rows.append(row)
    if not rows:
        where = f" on {dataset!r}" if dataset else ""
        raise ConfigError(
            f"no finished experiment{where} of the candidate folder matches one of the baseline's with a shared "
            "seed (same backbone, protocol, epochs, resolution, data and initial weights; only the precision may "
            "differ)"
        )
    rows.sort(key=lambda r: (r.dataset, r.backbone, r.protocol))
    return Agreement(tuple(rows), tuple(sorted(unmatched)))
