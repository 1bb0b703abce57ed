"""A leaderboard's test-image uncertainty: 95% CIs per row and the tie test against rank 1.

Two uncertainties, labelled apart because they answer different questions:

* **mean ± std over seeds** (:mod:`bench.reports.leaderboard`): how much a backbone's score moves when it
  is trained again;
* **95% CI over test images** (here): how much the finite test set leaves the score uncertain. Each seed's
  saved test probabilities are rescored on 1000 bootstrap resamples of the test images and averaged
  over seeds; the CI is the percentile interval. Every row of one dataset is rescored on the *same*
  resamples (a fixed seed), so the committed tables reproduce byte for byte.

A row's probabilities are those of *its* experiment's runs (:class:`bench.runs.experiments.Experiment`), so an
fp32 row and an auto row, or a 1-epoch and a 2-epoch row, each get their own interval.

Rows **tied with the leader** are marked ≈: the paired bootstrap of their seed-averaged sort metric
against rank 1's, on the same resamples, is not significant (two-sided p >= 0.05, one test per row, no
multiplicity correction; :func:`bench.evaluation.stats.tied_with_leader` documents the test). Only rows tested
on the same images as rank 1 (same ids and labels in ``.probs.npz``) can be compared; the others stay
unmarked, with the reason in the notes. The majority baseline is scored on rank 1's test images too,
and is marked when tied: that is an alarm, not a credit -- rank 1 has then not been shown to beat
always predicting the most frequent class. Rows that did not learn (:mod:`bench.reports.row_health`) are not
ranked and not tested: rank 1 is the best row that learned.

A run whose ``.probs.npz`` is missing or unreadable does not stop the table: a warning names the file,
and its row's CI and tie mark are n/a, with the reason in the notes (never a path, so that the
Markdown does not depend on where the results folder is).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.errors import DataError, ResultsError
from bench.evaluation.bootstrap import resample_models
from bench.evaluation.metrics import HEADLINE_METRICS as HEADLINE
from bench.evaluation.metrics import validate_predictions
from bench.evaluation.scores import TestScores
from bench.runs.experiments import Experiment
from bench.runs.record import RunRecord

CI_RESAMPLES = 1000
CI_SEED = 0  # fixed: the committed tables must reproduce byte for byte
TIE_ALPHA = 0.05
NO_PROBS = "no saved test probabilities: 95% CI n/a"


@dataclass(frozen=True)
class Predictions:
    """A row's saved test predictions: one ``(N, K)`` array per seed, all on the same labelled images."""

    ids: np.ndarray
    labels: np.ndarray
    probs: tuple[np.ndarray, ...]

    def same_test(self, other: Predictions) -> bool:
        return (
            np.array_equal(self.ids, other.ids)
            and np.array_equal(self.labels, other.labels)
            and self.probs[0].shape[1] == other.probs[0].shape[1]
        )


def saved_probs(record: RunRecord) -> TestScores | None:
    """A run's saved test predictions, checked; None, with a warning naming the file, where there are none."""
    if record.path is None:
        warnings.warn(f"run {record.key}: not read from a results folder, so no saved test probabilities", stacklevel=2)
        return None
    path = record.probs_path()
    if not path.is_file():
        warnings.warn(f"{path}: missing, so its leaderboard row has no 95% CI", stacklevel=2)
        return None
    try:
        saved = TestScores.load(path)
        validate_predictions(saved.labels, saved.probs)
        return saved
    except ResultsError as err:
        problem = str(err)  # names the file
    except DataError as err:
        problem = f"{path}: {err}"
    warnings.warn(f"{problem}; its leaderboard row has no 95% CI", stacklevel=2)
    return None


def row_predictions(experiment: Experiment) -> Predictions | str | None:
    """The predictions of an experiment's finished seeds, why it has none (a note), or None (none finished)."""
    if not experiment.ok:
        return None
    saved = [saved_probs(r) for r in experiment.ok]
    if any(s is None for s in saved):
        return NO_PROBS
    seeds = [Predictions(s.ids, s.labels, (s.probs,)) for s in saved]
    if not all(seeds[0].same_test(other) for other in seeds[1:]):
        return "its seeds were tested on different images: 95% CI n/a"
    return Predictions(seeds[0].ids, seeds[0].labels, tuple(s.probs[0] for s in seeds))


def majority_predictions(source: RunRecord, on: Predictions) -> Predictions | str:
    """Always the training majority class of ``source``'s dataset summary, on the images of ``on``.

    Only where those images carry the test class counts the baseline's metrics were computed from.
    """
    assert source.dataset is not None
    counts = source.dataset.class_counts
    k = len(counts["train"])
    if np.bincount(on.labels, minlength=k).tolist() != list(counts["test"]):
        return "the compared rows' test labels do not match this baseline's test class counts: 95% CI n/a"
    probs = np.zeros((on.labels.size, k))
    probs[:, int(np.argmax(counts["train"]))] = 1.0
    return Predictions(on.ids, on.labels, (probs,))


def uncertainty(
    rows: dict[int, Experiment | None], majority: RunRecord | None, metric: str, unranked: Collection[int] = ()
) -> pd.DataFrame:
    """Per row of a sorted leaderboard: 95% CIs of the headline metrics, the tie test against rank 1, notes.

    ``rows`` maps each row index, rank 1 first, to its experiment (None: the majority baseline, defined by
    ``majority``'s class counts). Rows are grouped by test images; each group is resampled once for every
    headline metric (the same resamples whatever the group, since the seed is fixed). ``unranked`` rows (they
    did not learn: :mod:`bench.reports.row_health`) get their CIs but no tie test: a failure is not a contender.
    """
    found, notes = _predictions_by_row(rows, majority)
    index = pd.Index(list(rows))
    ci_columns = [f"{m}_ci95_{end}" for m in HEADLINE for end in ("low", "high")]
    out = pd.DataFrame(np.nan, index=index, columns=[*ci_columns, "p_vs_rank1"])
    leader = index[0]
    for group in _same_test_groups(found):
        scores = resample_models(
            found[group[0]].labels, {str(i): found[i].probs for i in group}, HEADLINE, CI_RESAMPLES, CI_SEED
        )
        for i in group:
            for m in HEADLINE:
                ci = scores[m].ci(str(i), 0.95)
                out.loc[i, [f"{m}_ci95_low", f"{m}_ci95_high"]] = ci.low, ci.high
                if m == metric and ci.n_skipped:
                    notes[i].append(
                        f"95% CI from {ci.n_resamples - ci.n_skipped} of {ci.n_resamples} resamples "
                        f"({metric} is undefined on the others: a class is missing from them)"
                    )
            if i == leader or i in unranked or leader in unranked:
                continue
            if leader in group:
                out.loc[i, "p_vs_rank1"] = scores[metric].paired(str(leader), str(i)).p_value
            else:
                why = "rank 1 has no saved test probabilities" if leader not in found else "tested on other images"
                notes[i].append(f"not compared with rank 1: {why}")
    out["tied"] = out["p_vs_rank1"] >= TIE_ALPHA
    out["note"] = ["; ".join(notes[i]) for i in index]
    return out


def _predictions_by_row(
    rows: dict[int, Experiment | None], majority: RunRecord | None
) -> tuple[dict[int, Predictions], dict[int, list[str]]]:
    """Each row's test predictions where it has them, and the notes of the rows that have none.

    The majority baseline is scored on the images of the best-ranked row with predictions (rank 1's
    whenever it has them): that is where it is compared.
    """
    found: dict[int, Predictions] = {}
    notes: dict[int, list[str]] = {i: [] for i in rows}
    for i, experiment in rows.items():
        if experiment is None:
            continue
        result = row_predictions(experiment)
        if isinstance(result, str):
            notes[i].append(result)
        elif result is not None:
            found[i] = result
    reference = next((found[i] for i in rows if i in found), None)
    for i in (i for i, e in rows.items() if e is None):
        result = majority_predictions(majority, reference) if reference and majority else NO_PROBS
        if isinstance(result, str):
            notes[i].append(result)
        else:
            found[i] = result
    return found, notes


def _same_test_groups(found: dict[int, Predictions]) -> list[list[int]]:
    """Row indices grouped by the images they were tested on."""
    groups: list[list[int]] = []
    for i, predictions in found.items():
        group = next((g for g in groups if found[g[0]].same_test(predictions)), None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    return groups
