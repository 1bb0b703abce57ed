"""A leaderboard row's training health: which of its seeds did not learn, did not converge, or had a loss blow up.

Each finished run carries its verdicts (:meth:`bench.runs.record.RunRecord.training_health`, from validation and
the history only). A row gathers its seeds':

* **did not learn**: when most of its finished seeds did not learn (:data:`NOT_RANKED_SHARE`), the row's mean is
  a training failure's, not the backbone's: the row is not ranked, not on the Pareto front and not tested against
  rank 1, and its notes say why, seed by seed. Where fewer did, it stays ranked with the count marked beside its
  rank (their scores are in its mean) and the seeds named in its notes;
* **not converged**: a seed kept its last epoch while the selection metric was still improving: a budget warning,
  marked and counted; the row stays ranked;
* **loss alarm**: a seed's training loss exploded or became non-finite: named in the notes.

:func:`health_summary` is what a table says about them under it: the marks, the test and the counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from bench.evaluation.learned import ALPHA, PERMUTATIONS
from bench.runs.record import RunRecord
from bench.train.history import CONVERGENCE_TOLERANCE, EXPLOSION_FACTOR

NOT_RANKED_SHARE = 0.5  # a row is not ranked when more than this share of its finished seeds did not learn
DID_NOT_LEARN_MARK = "✗"
NOT_CONVERGED_MARK = "↗"
NOT_RANKED = f"{DID_NOT_LEARN_MARK} did not learn"


@dataclass(frozen=True)
class RowHealth:
    """The seeds of one row (finished runs) by verdict."""

    seeds: int
    did_not_learn: tuple[int, ...] = ()
    not_converged: tuple[int, ...] = ()
    loss_alarm: tuple[int, ...] = ()
    assessed: int = 0  # seeds whose learning could be judged (a validation confusion matrix with two classes)
    notes: tuple[str, ...] = ()

    @property
    def ranked(self) -> bool:
        return not (self.seeds and len(self.did_not_learn) > NOT_RANKED_SHARE * self.seeds)

    def cells(self) -> dict:
        """The table's columns: counts of seeds (``ranked``: whether the row is ranked at all)."""
        return {
            "ranked": self.ranked,
            "did_not_learn": len(self.did_not_learn),
            "not_converged": len(self.not_converged),
            "loss_alarm": len(self.loss_alarm),
            "learned_assessed": self.assessed,
        }


def row_health(runs: Sequence[RunRecord]) -> RowHealth:
    """The verdicts of a row's finished ``runs``, with the notes that name them."""
    checked = [(r.spec.seed, h) for r in runs if (h := r.training_health()) is not None]
    failed = [(s, h.learned_reason) for s, h in checked if h.did_not_learn]
    slow = [s for s, h in checked if h.not_converged]
    alarms = [(s, h.loss_alarm) for s, h in checked if h.loss_alarm]
    n = len(runs)
    notes = []
    if failed:
        named = "; ".join(f"seed {s}: {why}" for s, why in failed)
        if len(failed) > NOT_RANKED_SHARE * n:
            notes.append(f"{NOT_RANKED} on validation in {len(failed)} of {n} seeds, so not ranked ({named})")
        else:
            k = len(failed)
            notes.append(f"{DID_NOT_LEARN_MARK}{k}/{n}: {k} of {n} seeds did not learn on validation, their scores in "
                         f"the mean ({named})")  # fmt: skip
    if slow:
        on = runs[0].selection.on if runs[0].selection else "selection metric"
        seeds = f"seed{'s' if len(slow) > 1 else ''} {', '.join(map(str, slow))}"
        notes.append(f"{NOT_CONVERGED_MARK} not converged in {len(slow)} of {n} seeds ({seeds}: the last epoch kept, "
                     f"validation {on} still improving)")  # fmt: skip
    if alarms:
        named = "; ".join(f"seed {s}: {why.removeprefix('training loss exploded: ')}" for s, why in alarms)
        notes.append(f"training loss exploded in {len(alarms)} of {n} seeds ({named})")
    return RowHealth(
        n,
        tuple(s for s, _ in failed),
        tuple(slow),
        tuple(s for s, _ in alarms),
        sum(h.learned != "not assessed" for _, h in checked),
        tuple(notes),
    )


def rank_marks(table: pd.DataFrame) -> pd.Series:
    """What the rank cell adds for health: ``✗k/n`` where k of a ranked row's n seeds did not learn, ``↗``
    where a seed did not converge; an unranked row's whole cell is :data:`NOT_RANKED` instead."""
    if "ranked" not in table:
        return pd.Series("", index=table.index)
    counts = zip(table["did_not_learn"].fillna(0).astype(int), table["n"], strict=True)
    partial = [f" {DID_NOT_LEARN_MARK}{k}/{n}" if k else "" for k, n in counts]
    slow = [f" {NOT_CONVERGED_MARK}" if c else "" for c in table["not_converged"].fillna(0)]
    return pd.Series([p + s for p, s in zip(partial, slow, strict=True)], index=table.index)


def health_summary(table: pd.DataFrame) -> list[str]:
    """The lines under a table that count its rows by verdict and say the tests (none where nothing was judged)."""
    if "ranked" not in table:
        return []
    rows = table[table["learned_assessed"].fillna(0) > 0]
    if rows.empty:
        return []
    total = len(rows)
    test = f"one-sided permutation test of validation balanced accuracy against {PERMUTATIONS} shuffles of the labels"
    unranked = rows[~rows["ranked"].astype(bool)]
    lines = []
    if unranked.empty:
        lines.append(
            f"Every row learned on validation: most of each row's seeds' kept models predict more than one class "
            f"there and beat label shuffles ({test}, p < {ALPHA}; validation only, never test)."
        )
    else:
        names = ", ".join(_names(unranked, table))
        lines.append(
            f"{NOT_RANKED}: {len(unranked)} of {total} rows did not learn on validation: {names}. Most of their seeds' "
            f"kept models predict one class for every validation image or score no better than label shuffles "
            f"({test}, p ≥ {ALPHA}; validation only, never test), so their scores are a training failure's, not "
            "the backbone's: they are not ranked, not on the Pareto front and not tested against rank 1."
        )
    partial = rows[rows["ranked"].astype(bool) & (rows["did_not_learn"] > 0)]
    if not partial.empty:
        counts = [
            f"{name} {int(k)}/{n}"
            for name, k, n in zip(_names(partial, table), partial["did_not_learn"], partial["n"], strict=True)
        ]
        names = ", ".join(counts)
        lines.append(f"{DID_NOT_LEARN_MARK}k/n: k of the row's n seeds did not learn on validation (the same test); "
                     f"their scores are in its mean: {names}.")  # fmt: skip
    slow = rows[rows["not_converged"] > 0]
    if not slow.empty:
        lines.append(
            f"{NOT_CONVERGED_MARK} not converged: {len(slow)} of {total} rows have a seed that kept its last epoch "
            f"while its validation selection metric still improved (by more than {CONVERGENCE_TOLERANCE:.1%} on the "
            "best before): more epochs may change their order, so it is a budget warning; they stay ranked."
        )
    alarms = rows[rows["loss_alarm"] > 0]
    if not alarms.empty:
        lines.append(
            f"Training loss exploded (an epoch's mean above {EXPLOSION_FACTOR:g}x ln K, the loss of a uniform guess "
            f"over K classes, or after epoch 1 above {EXPLOSION_FACTOR:g}x epoch 1's) in some seed of {len(alarms)} "
            f"of {total} rows: {', '.join(_names(alarms, table))}."
        )
    return lines


def _names(rows: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """The rows' backbones, with the protocol label where the table has that backbone in another row too."""
    repeated = table["backbone"].duplicated(keep=False)
    return [
        f"{b} ({p})" if repeated[i] else b
        for i, b, p in zip(rows.index, rows["backbone"], rows["protocol"], strict=True)
    ]
