"""The answer across datasets: which row is best over all of them, as mean rank with a Friedman test.

One leaderboard answers for one dataset; "which backbone is best over HAM10000, ISIC and chest X-ray together"
needs the datasets as blocks (Demšar 2006, *Statistical comparisons of classifiers over multiple data sets*): per
dataset the rows are ranked (1 = best, ties share the mean rank), the ranks averaged over datasets, and the
Friedman test asks whether the mean ranks differ more than chance would make them. Where it does, the Nemenyi
post-hoc (:func:`scikit_posthocs.posthoc_nemenyi_friedman`) tells pairs apart whose mean ranks differ by at least
the critical difference (CD), and the critical-difference diagram draws that.

A row is a leaderboard row (:func:`bench.reports.leaderboard.leaderboard`: backbone + protocol label, its cells the
mean over seeds), so the same rows, the same did-not-learn verdicts (:mod:`bench.reports.row_health`) and the same
latency figures as the per-dataset tables. The test needs every row scored on every dataset: a row missing on one,
without the metric there, or not ranked there (it did not learn) is left out and listed with the reason, never
dropped silently. The majority baseline is a reference line of each table, not a row here.

Two rankings: by the sort metric (:data:`bench.evaluation.metrics.HEADLINE_METRICS`), and on the accuracy-latency
front: per dataset, rows ranked by Pareto layer of (metric mean, higher better; batch-1 latency p50, lower better),
layer 1 the front (:func:`bench.reports.leaderboard.pareto_front`), layer 2 the front once layer 1 is removed, and
so on. That front is among the compared rows only, so it can differ from a leaderboard's ★ over all its rows.

With three datasets as blocks the test has little power: what is printed says so, reports p and whether it is
significant at :data:`ALPHA`, and never names a winner the test does not support. The files (``ranking.md`` and
the critical-difference diagrams) are :mod:`bench.reports.ranking_files`'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy.stats import friedmanchisquare, studentized_range

from bench.errors import ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.reports.latency_pass import passes_of
from bench.reports.leaderboard import (
    LATENCY_AXES,
    MAJORITY_PROTOCOL,
    datasets_in,
    latency_devices,
    leaderboard,
    pareto_front,
)
from bench.reports.row_health import NOT_RANKED
from bench.runs.record import RunRecord

ALPHA = 0.05
MIN_DATASETS = 2  # one dataset is one leaderboard
MIN_ROWS = 3  # scipy's Friedman test needs three groups (two would be a sign test)
LATENCY = LATENCY_AXES["p50"]


@dataclass(frozen=True)
class LeftOut:
    """A row kept out of a ranking, and why (one clause per dataset at fault)."""

    row: str
    reason: str


@dataclass(frozen=True)
class Ranking:
    """One Friedman/Nemenyi comparison over datasets (blocks) and rows (groups).

    ``values``: datasets x rows, what was ranked (the metric's mean, or the Pareto layer); ``ranks`` the same shape,
    1 = best, ties sharing the mean rank; ``nemenyi`` the rows' pairwise p-values; ``cd`` the Nemenyi critical
    difference at ``alpha`` in mean ranks.
    """

    name: str
    what: str
    values: pd.DataFrame
    ranks: pd.DataFrame
    statistic: float
    p_value: float
    cd: float
    nemenyi: pd.DataFrame
    left_out: tuple[LeftOut, ...]
    alpha: float = ALPHA

    @property
    def mean_ranks(self) -> pd.Series:
        return self.ranks.mean().sort_values(kind="stable")

    @property
    def positions(self) -> pd.Series:
        """1, 2, ... down the mean ranks; rows with one mean rank share the position."""
        return self.mean_ranks.rank(method="min").astype(int)

    @property
    def significant(self) -> bool:
        return bool(self.p_value < self.alpha)

    def verdict(self) -> str:
        """The test's answer in one sentence, a winner named only where the tests support one."""
        n, k = self.ranks.shape
        head = (
            f"{self.name}: Friedman chi2 = {self.statistic:.2f}, p = {self.p_value:.3g} ({n} datasets x {k} rows; "
            f"Nemenyi CD = {self.cd:.2f} mean ranks)"
        )
        best, low = self.mean_ranks.index[0], self.mean_ranks.iloc[0]
        if not self.significant:
            return (
                f"{head}: not significant at {self.alpha}, so no row is shown better than another and no winner is "
                f"claimed ({best} has the lowest mean rank, {low:.2f}, which is no evidence that it is best)"
            )
        ahead = [r for r in self.mean_ranks.index[1:] if self.nemenyi.loc[best, r] < self.alpha]
        if not ahead:
            return (
                f"{head}: significant at {self.alpha}, the rows differ, but Nemenyi (CD = {self.cd:.2f}) tells no "
                f"row apart from {best}, the lowest mean rank ({low:.2f}): no single winner"
            )
        tied = [r for r in self.mean_ranks.index[1:] if r not in ahead]
        rest = f"; it is not told apart from {', '.join(map(str, tied))}" if tied else ", so it is best here"
        return (
            f"{head}: significant at {self.alpha}; {best} has the lowest mean rank ({low:.2f}) and Nemenyi "
            f"(CD = {self.cd:.2f}) puts it ahead of {', '.join(map(str, ahead))}{rest}"
        )

    def power_note(self) -> str:
        n, k = self.ranks.shape
        return (
            f"With {n} datasets as blocks the Friedman test has little power: its p comes from a chi-square "
            f"approximation that is rough for so few blocks, and Nemenyi tells two rows apart only when their mean "
            f"ranks differ by at least CD = {self.cd:.2f} (of at most {k - 1}). Rows not told apart are not shown "
            "equal either: more datasets would be needed."
        )


@dataclass(frozen=True)
class Rankings:
    """Both answers for one metric: ``front`` is None where fewer than :data:`MIN_ROWS` rows have a latency on every
    dataset (``front_missing`` says so); ``notes``: what a reader must know about the latencies."""

    metric: str
    datasets: tuple[str, ...]
    accuracy: Ranking
    front: Ranking | None
    front_missing: str = ""
    notes: tuple[str, ...] = ()

    def frame(self) -> pd.DataFrame:
        """One row per ranking and row, left-out rows included (``left_out`` their reason): csv and json."""
        rows = []
        for r in (self.accuracy, self.front) if self.front else (self.accuracy,):
            stats = {"friedman_chi2": r.statistic, "friedman_p": r.p_value, "significant": r.significant, "cd": r.cd}
            for row, mean in r.mean_ranks.items():
                cells = {f"{d}_value": r.values.loc[d, row] for d in self.datasets}
                cells |= {f"{d}_rank": r.ranks.loc[d, row] for d in self.datasets}
                rows.append(
                    {"ranking": r.name, "row": row, "position": r.positions[row], "mean_rank": mean, **cells, **stats}
                )
            rows += [{"ranking": r.name, "row": o.row, "left_out": o.reason} | stats for o in r.left_out]
        frame = pd.DataFrame(rows)
        return frame.astype({"position": "Int64"})  # a whole number, empty for a row left out


def check_metric(metric: str) -> str:
    """``metric`` if a leaderboard can sort by it, else a one-line ConfigError naming it."""
    if metric not in HEADLINE_METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(HEADLINE_METRICS)}")
    return metric


def rank_rows(records: list[RunRecord], metric: str = "balanced_accuracy", alpha: float = ALPHA) -> Rankings:
    """The rows of ``records``' leaderboards ranked across their datasets, by ``metric`` and on the front."""
    check_metric(metric)
    datasets = tuple(datasets_in(records))
    if len(datasets) < MIN_DATASETS:
        held = f"{len(datasets)} ({', '.join(datasets) or 'none'})"
        raise ConfigError(
            f"ranking across datasets needs {MIN_DATASETS} datasets or more, the records hold {held}: "
            "see `bench leaderboard` for one"
        )
    passes = passes_of(records)
    tables = {d: leaderboard(records, d, metric, passes=passes) for d in datasets}
    cells = {d: dataset_rows(t) for d, t in tables.items()}
    labels = list(dict.fromkeys(label for c in cells.values() for label in c.index))
    reasons = {label: _missing(label, cells, metric) for label in labels}
    kept = [label for label in labels if not reasons[label]]
    left = tuple(LeftOut(label, "; ".join(why)) for label, why in reasons.items() if why)
    if len(kept) < MIN_ROWS:
        named = "; ".join(f"{o.row}: {o.reason}" for o in left)
        raise ConfigError(
            f"only {len(kept)} rows have {metric} on every dataset ({', '.join(datasets)}) and learned on each; "
            f"the Friedman test needs {MIN_ROWS} (left out: {named or 'none'})"
        )
    scores = pd.DataFrame({label: [cells[d].loc[label, "score"] for d in datasets] for label in kept}, datasets)
    accuracy = compare("accuracy", f"mean {metric} over seeds", scores, higher_is_better=True, left=left, alpha=alpha)
    latency = pd.DataFrame({label: [cells[d].loc[label, "latency"] for d in datasets] for label in kept}, datasets)
    untimed = {label: ", ".join(latency.index[latency[label].isna()]) for label in kept}
    slow = tuple(LeftOut(label, f"no batch-1 latency on {on}") for label, on in untimed.items() if on)
    timed = [label for label in kept if not untimed[label]]
    devices = sorted({d for t in tables.values() for d in latency_devices(t)})
    several = f"Latencies were timed on {len(devices)} devices ({', '.join(devices)}): not comparable."
    notes = (several,) if len(devices) > 1 else ()
    if len(timed) < MIN_ROWS:
        missing = f"only {len(timed)} rows have a batch-1 latency on every dataset; the Friedman test needs {MIN_ROWS}"
        return Rankings(metric, datasets, accuracy, None, missing, notes)
    layers = pd.DataFrame(
        {d: pareto_layers(scores.loc[d, timed], latency.loc[d, timed]) for d in datasets}, index=timed
    ).T
    what = f"Pareto layer of ({metric}, batch-1 latency p50)"
    front = compare("front", what, layers, higher_is_better=False, left=left + slow, alpha=alpha)
    return Rankings(metric, datasets, accuracy, front, notes=notes)


def dataset_rows(table: pd.DataFrame) -> pd.DataFrame:
    """A leaderboard's backbone rows by label (``backbone protocol``, plus the resolution where one label names two
    rows), with what a ranking reads: ``score`` (mean sort metric), ``latency``, ``ranked``, ``n`` and the counts."""
    rows = table[~((table["backbone"] == "majority") & (table["protocol"] == MAJORITY_PROTOCOL))]
    label = rows["backbone"] + " " + rows["protocol"]
    label = label.where(~label.duplicated(keep=False), label + " " + rows["resolution"].astype(str) + "px")
    return pd.DataFrame(
        {
            "score": rows[f"{table.attrs['metric']}_mean"].to_numpy(),
            "latency": rows[LATENCY.column].to_numpy(),
            "ranked": rows["ranked"].to_numpy(),
            "n": rows["n"].to_numpy(),
            "failed": rows["failed"].to_numpy(),
            "did_not_learn": rows["did_not_learn"].to_numpy(),
        },
        index=label.to_numpy(),
    )


def _missing(label: str, cells: dict[str, pd.DataFrame], metric: str) -> list[str]:
    """Why ``label`` cannot be ranked on every dataset: one clause per dataset at fault (none: it can)."""
    why = []
    for dataset, rows in cells.items():
        if label not in rows.index:
            why.append(f"not run on {dataset}")
            continue
        row = rows.loc[label]
        if row["n"] == 0:
            why.append(f"no finished run on {dataset} ({int(row['failed'])} failed)")
        elif not row["ranked"]:
            why.append(f"{NOT_RANKED} on {dataset} ({int(row['did_not_learn'])} of {int(row['n'])} seeds)")
        elif np.isnan(row["score"]):
            why.append(f"no {metric} on {dataset}")
    return why


def pareto_layers(score: pd.Series, cost: pd.Series) -> pd.Series:
    """Each point's Pareto layer (maximising ``score``, minimising ``cost``, both finite): 1 for the front, 2 for
    the front once layer 1 is removed, and so on (non-dominated sorting)."""
    layers = np.zeros(len(score), dtype=int)
    s, c = score.to_numpy(dtype=float), cost.to_numpy(dtype=float)
    layer = 0
    while (layers == 0).any():
        layer += 1
        left = layers == 0
        front = np.zeros(len(s), dtype=bool)
        front[left] = pareto_front(s[left], c[left])
        if not front.any():
            raise ValueError("pareto_layers takes finite scores and costs only")
        layers[front] = layer
    return pd.Series(layers, index=score.index)


def compare(
    name: str,
    what: str,
    values: pd.DataFrame,
    higher_is_better: bool,
    left: tuple[LeftOut, ...] = (),
    alpha: float = ALPHA,
) -> Ranking:
    """Rank ``values`` (datasets x rows) per dataset and test: Friedman (scipy), Nemenyi (scikit-posthocs), CD.

    Both tests read the ranks (1 = best): ranking them again changes nothing, and the direction is then settled
    once. Where every dataset ties every row there is nothing to test: chi2 = 0, p = 1 (scipy would divide by 0).
    """
    ranks = values.rank(axis=1, ascending=not higher_is_better, method="average")
    n, k = ranks.shape
    if (ranks.nunique(axis=1) == 1).all():
        statistic, p = 0.0, 1.0
    else:
        statistic, p = (float(x) for x in friedmanchisquare(*ranks.to_numpy().T))
    nemenyi = sp.posthoc_nemenyi_friedman(ranks)
    cd = float(studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2) * np.sqrt(k * (k + 1) / (6 * n)))
    return Ranking(name, what, values, ranks, statistic, p, cd, nemenyi, left, alpha)
