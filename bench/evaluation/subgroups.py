"""Scores by subgroup (sex, age band, anatomical site): where a backbone is worse than its headline number.

:func:`subgroup_scores` takes one row's saved test predictions (one ``(N, K)`` array per training seed, all on
the same images) and, per attribute, each image's group, and scores every group with the metric table's own
formulas (:mod:`bench.evaluation.metrics`: ``balanced_accuracy`` is the ISIC definition, the mean recall over
*all* K classes). Per group: its size, each seed's score, their mean and std, and a 95% percentile-bootstrap
CI over the group's own test images (1000 resamples of the group, each seed rescored and the seeds averaged,
as the leaderboard's CIs; :func:`bench.evaluation.bootstrap.resample_models`). fairlearn's ``MetricFrame``
(``by_group``, ``group_min()``, ``difference()``) is the tests' oracle for the per-group values.

Groups that cannot carry a comparison are kept and say why, never dropped:

* fewer than :data:`MIN_GROUP_SIZE` images: scored, but ``"n=12, too small for a CI"`` and no CI;
* a class with no image in the group: ``balanced_accuracy`` and ``auc`` are NaN there by the absent-class
  rule (never an average over the classes present), and the note names the classes;
* the group of images whose metadata is missing (:data:`UNKNOWN`): scored with a CI, but not a population.

Only the others are *comparable*: the **worst group** is the comparable group of lowest seed-mean score
(over every attribute), and an attribute's **gap** is, per seed, the best comparable group's score minus the
worst's, then mean and std over seeds; the **largest gap** is the attribute whose mean gap is largest. An
attribute with fewer than two comparable groups has no gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.errors import DataError
from bench.evaluation.bootstrap import resample_models
from bench.evaluation.metrics import Draws, get_metric, validate_predictions
from bench.evaluation.spread import mean_std

MIN_GROUP_SIZE = 30
"""Images a group needs for a CI and a place in the worst-group and gap comparisons."""
SUBGROUP_METRICS = ("balanced_accuracy", "auc")
UNKNOWN = "unknown"
RESAMPLES = 1000
SEED = 0


@dataclass(frozen=True)
class GroupScores:
    """One group's scores: per metric, one value per seed and a seed-averaged 95% CI over its images."""

    attribute: str
    group: str
    n: int
    by_seed: dict[str, tuple[float, ...]]
    ci: dict[str, tuple[float, float]]
    """(low, high), NaN where there is no CI (``note`` says why)."""
    absent: tuple[str, ...]
    """Classes with no image in the group."""
    note: str
    comparable: bool
    """Whether the group enters the worst-group and gap comparisons (module docstring)."""

    def mean(self, metric: str) -> float:
        return mean_std(self.by_seed[metric])[0]

    def std(self, metric: str) -> float:
        return mean_std(self.by_seed[metric])[1]

    @property
    def label(self) -> str:
        """``"age 75+"``: attribute and group, as tables name it."""
        return f"{self.attribute} {self.group}"


@dataclass(frozen=True)
class Gap:
    """An attribute's gap: per seed, the best comparable group's score minus the worst's."""

    attribute: str
    by_seed: tuple[float, ...]
    best: str
    worst: str
    """The groups of highest and lowest seed-mean score."""

    @property
    def mean(self) -> float:
        return mean_std(self.by_seed)[0]

    @property
    def std(self) -> float:
        return mean_std(self.by_seed)[1]


@dataclass(frozen=True)
class SubgroupReport:
    """Every group of every attribute, in table order, and what the comparisons read off them."""

    groups: tuple[GroupScores, ...]
    metrics: tuple[str, ...]
    n_seeds: int

    def worst(self, metric: str = "balanced_accuracy") -> GroupScores | None:
        """The comparable group of lowest seed-mean ``metric``; None if no group is comparable."""
        candidates = [g for g in self.groups if g.comparable and not np.isnan(g.mean(metric))]
        return min(candidates, key=lambda g: g.mean(metric), default=None)

    def gaps(self, metric: str = "balanced_accuracy") -> list[Gap]:
        """Each attribute's gap, where it has two comparable groups or more."""
        out = []
        for attribute in dict.fromkeys(g.attribute for g in self.groups):
            groups = [
                g for g in self.groups if g.attribute == attribute and g.comparable and not np.isnan(g.mean(metric))
            ]
            if len(groups) < 2:
                continue
            scores = np.array([g.by_seed[metric] for g in groups])  # (groups, seeds)
            ranked = sorted(groups, key=lambda g: g.mean(metric))
            spread = scores.max(axis=0) - scores.min(axis=0)
            out.append(Gap(attribute, tuple(map(float, spread)), ranked[-1].group, ranked[0].group))
        return out

    def largest_gap(self, metric: str = "balanced_accuracy") -> Gap | None:
        return max(self.gaps(metric), key=lambda g: g.mean, default=None)

    def to_frame(self) -> pd.DataFrame:
        """One row per group: attribute, group, n, ``<metric>_mean``/``_std``/``_ci95_low``/``_ci95_high``, note."""
        rows = []
        for g in self.groups:
            row: dict = {"attribute": g.attribute, "group": g.group, "n": g.n}
            for m in self.metrics:
                row |= {f"{m}_mean": g.mean(m), f"{m}_std": g.std(m)}
                row |= {f"{m}_ci95_low": g.ci[m][0], f"{m}_ci95_high": g.ci[m][1]}
            rows.append(row | {"comparable": g.comparable, "note": g.note})
        return pd.DataFrame(rows)


def _group_order(column: pd.Series) -> list[str]:
    """Band order for a categorical attribute; else largest group first; :data:`UNKNOWN` last either way."""
    present = set(column.astype(str))
    if isinstance(column.dtype, pd.CategoricalDtype):
        order = [str(c) for c in column.cat.categories if str(c) in present]
    else:
        sizes = column.astype(str).value_counts()
        order = sorted(sizes.index, key=lambda g: (-sizes[g], g))
    return [g for g in order if g != UNKNOWN] + ([UNKNOWN] if UNKNOWN in present else [])


def subgroup_scores(
    labels: np.ndarray,
    probs_by_seed: Sequence[np.ndarray],
    groups: pd.DataFrame,
    classes: Sequence[str],
    *,
    metrics: Sequence[str] = SUBGROUP_METRICS,
    positive: int = 1,
    min_size: int = MIN_GROUP_SIZE,
    n_resamples: int = RESAMPLES,
    seed: int = SEED,
) -> SubgroupReport:
    """Score every group of every attribute (a column of ``groups``, one row per image in ``labels``' order).

    ``probs_by_seed``: one ``(N, K)`` array per training seed, on the same images. ``positive``: a binary
    task's positive class index. Groups with at least ``min_size`` images and every class present get a CI
    from ``n_resamples`` resamples (seeded: the same draws for every row of a leaderboard).
    """
    if not probs_by_seed:
        raise DataError("no predictions to score by subgroup: give one (N, K) array per seed")
    y, _ = validate_predictions(labels, probs_by_seed[0], n_classes=len(classes))
    probs = [validate_predictions(y, p, n_classes=len(classes))[1] for p in probs_by_seed]
    if len(groups) != y.size:
        raise DataError(f"subgroup table has {len(groups)} rows for {y.size} test images")
    table = [get_metric(m) for m in metrics]
    for m in table:
        m.check_applies(len(classes))
    out = []
    for attribute in groups.columns:
        column = groups[attribute]
        for group in _group_order(column):
            members = np.flatnonzero((column.astype(str) == group).to_numpy())
            gy = y[members]
            present = np.bincount(gy, minlength=len(classes)) > 0
            absent = tuple(c for c, here in zip(classes, present, strict=True) if not here)
            whole = Draws.whole(gy)
            scores = np.array([whole.scores(table, p[members], positive)[:, 0] for p in probs])  # (seeds, metrics)
            by_seed = {m: tuple(map(float, scores[:, j])) for j, m in enumerate(metrics)}
            ci = {m: (float("nan"), float("nan")) for m in metrics}
            notes = []
            if absent:
                notes.append(f"n={members.size}, no {', '.join(absent)}: {' and '.join(metrics)} undefined")
            elif members.size < min_size:
                notes.append(f"n={members.size}, too small for a CI")
            else:
                resampled = resample_models(
                    gy, {"row": [p[members] for p in probs]}, metrics, n_resamples, seed, positive
                )
                ci = {m: tuple(resampled[m].ci("row", 0.95))[1:] for m in metrics}
            if group == UNKNOWN:
                notes.append("metadata missing: not a population, not compared")
            comparable = not notes
            out.append(
                GroupScores(str(attribute), group, int(members.size), by_seed, ci, absent, "; ".join(notes), comparable)
            )
    return SubgroupReport(tuple(out), tuple(metrics), len(probs))
