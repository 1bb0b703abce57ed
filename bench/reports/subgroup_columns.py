"""The ``subgroups`` column group of a leaderboard: each row's worst group and largest gap.

A row's groups come from its dataset entry's ``[subgroups]`` table (:mod:`bench.data.subgroups`), matched to
the saved test ids exactly; its scores are :func:`bench.evaluation.subgroups.subgroup_scores` of its seeds'
saved test probabilities (balanced accuracy and AUC by group, 95% CIs over each group's images). The cells:
the worst comparable group's balanced accuracy (mean ± std over seeds, its CI, which group, its size) and the
attribute with the largest gap (mean ± std over seeds, between which groups). Every group, the ones too small
or missing a class included, is in the detail table (``table.attrs["subgroups"]``, written beside the
leaderboard). A dataset without metadata has its cells n/a with the reason, never an empty cell.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from bench.data.folder import dataset_entry
from bench.data.subgroups import group_table
from bench.errors import BenchError
from bench.evaluation.metrics import positive_index
from bench.evaluation.scores import TestScores
from bench.evaluation.subgroups import MIN_GROUP_SIZE, subgroup_scores
from bench.runs.experiments import Experiment

METRIC = "balanced_accuracy"
NOTE = "subgroups_note"
NO_METADATA = "no subgroup metadata: the dataset entry has no subgroups table"
CELLS = (
    "worst_group",
    "worst_group_n",
    f"worst_group_{METRIC}_mean",
    f"worst_group_{METRIC}_std",
    f"worst_group_{METRIC}_ci95_low",
    f"worst_group_{METRIC}_ci95_high",
    "largest_gap_attribute",
    "largest_gap_groups",
    "largest_gap_mean",
    "largest_gap_std",
)


class GroupTables:
    """Each test set's group table, read once per leaderboard (rows tested on the same images share it)."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str], pd.DataFrame | str] = {}

    def of(self, experiment: Experiment, ids: np.ndarray) -> pd.DataFrame | str:
        """The group of every image of ``ids``, or why there is none (no metadata, an id without a row)."""
        run = experiment.first
        try:
            entry = dataset_entry(run.spec.dataset, run.spec.data_root)
        except BenchError as err:
            return f"no dataset entry to read subgroups from ({err})"
        if entry.subgroups is None:
            return NO_METADATA
        key = (entry.name, hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest())
        if key not in self._tables:
            try:
                self._tables[key] = group_table(entry.path, entry.subgroups, ids)
            except BenchError as err:
                self._tables[key] = f"subgroups unreadable: {err}"
        return self._tables[key]


def _empty(reason: str) -> dict:
    return dict.fromkeys(CELLS, np.nan) | {
        "worst_group": "",
        "largest_gap_attribute": "",
        "largest_gap_groups": "",
        NOTE: reason,
    }


def subgroup_cells(
    experiment: Experiment, saved: list[TestScores] | str, tables: GroupTables
) -> tuple[dict, pd.DataFrame]:
    """A row's subgroup cells and its detail table (one line per group); n/a cells, with the reason, where the
    row has no saved scores or its dataset no metadata."""
    if isinstance(saved, str):
        return _empty(saved), pd.DataFrame()
    groups = tables.of(experiment, saved[0].ids)
    if isinstance(groups, str):
        return _empty(groups), pd.DataFrame()
    run = experiment.first
    classes = run.dataset.classes if run.dataset else [str(i) for i in range(saved[0].probs.shape[1])]
    positive = positive_index(classes, run.test and run.test.positive) if len(classes) == 2 else 1
    report = subgroup_scores(saved[0].labels, [s.probs for s in saved], groups, classes, positive=positive)
    detail = report.to_frame()
    worst, gap = report.worst(METRIC), report.largest_gap(METRIC)
    cells = _empty("")
    if worst is None:
        cells[NOTE] = f"no group with {MIN_GROUP_SIZE}+ test images and every class: worst group n/a"
    else:
        low, high = worst.ci[METRIC]
        cells |= {
            "worst_group": worst.label,
            "worst_group_n": worst.n,
            f"worst_group_{METRIC}_mean": worst.mean(METRIC),
            f"worst_group_{METRIC}_std": worst.std(METRIC),
            f"worst_group_{METRIC}_ci95_low": low,
            f"worst_group_{METRIC}_ci95_high": high,
        }
    if gap is not None:
        cells |= {
            "largest_gap_attribute": gap.attribute,
            "largest_gap_groups": f"{gap.best} vs {gap.worst}",
            "largest_gap_mean": gap.mean,
            "largest_gap_std": gap.std,
        }
    return cells, detail


def detail_frame(parts: list[tuple[dict, pd.DataFrame]]) -> pd.DataFrame:
    """The detail tables of a leaderboard's rows as one, each line led by its row's labels."""
    frames = [frame.assign(**{k: v for k, v in reversed(labels.items())}) for labels, frame in parts if len(frame)]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    first = list(parts[0][0])
    return out[first + [c for c in out.columns if c not in first]]
