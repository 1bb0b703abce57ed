"""The answer a report opens with, in sentences generated from the records: per dataset, and across datasets.

Per dataset (:func:`dataset_answer`) from its leaderboard (:func:`bench.reports.leaderboard.leaderboard`): the
leader (rank 1) with its score and latency, the rows not significantly worse than it (the table's ≈), the
accuracy-latency front (the table's ★) fastest first with each member's latency, and the rows that did not learn
(named, never ranked: :mod:`bench.reports.row_health`). Nothing is recomputed: every mark is the table's own, so
the sentence and the table cannot disagree.

Across datasets (:func:`ranking_answer`) from :func:`bench.reports.ranking.rank_rows`: the lowest mean ranks, the
Friedman p, and a winner only where the tests support one (Friedman significant *and* Nemenyi telling the best
row apart from every other); otherwise the sentence says that no winner is claimed.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.errors import ConfigError
from bench.reports.leaderboard import MAJORITY_PROTOCOL, LatencyAxis
from bench.reports.ranking import Ranking, Rankings, rank_rows
from bench.reports.render import PARETO_MARK, TIE_MARK
from bench.reports.row_health import DID_NOT_LEARN_MARK
from bench.reports.uncertainty import TIE_ALPHA
from bench.runs.record import RunRecord

TOP_RANKS = 3  # rows named with their mean rank in the across-datasets sentence


def backbone_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The table's rows that are backbones (the majority baseline is a reference line, not a choice)."""
    return table[table["protocol"] != MAJORITY_PROTOCOL]


def usual_setting(rows: pd.DataFrame) -> tuple[str, int]:
    """The protocol and resolution most rows have (ties: the first row's): the sentences name only the others."""
    return str(rows["protocol"].mode().iloc[0]), int(rows["resolution"].mode().iloc[0])


def row_names(table: pd.DataFrame) -> pd.Series:
    """Each backbone row's name: the backbone, with its protocol and input size where they differ from most rows'."""
    rows = backbone_rows(table)
    protocol, resolution = usual_setting(rows)
    names = {}
    for i, row in rows.iterrows():
        differs = ([row["protocol"]] if row["protocol"] != protocol else []) + (
            [f"{int(row['resolution'])} px"] if int(row["resolution"]) != resolution else []
        )
        names[i] = f"{row['backbone']} ({', '.join(differs)})" if differs else str(row["backbone"])
    return pd.Series(names, dtype=object)


def score_text(mean: float, std: float) -> str:
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def speed_text(value: float, axis: LatencyAxis) -> str:
    """A latency (``7.19 ms``) or a throughput (``139 images/s``), three significant figures."""
    return f"{value:.3g} ms" if axis.lower_is_better else f"{value:.3g} images/s"


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def dataset_answer(table: pd.DataFrame, dataset: str, axis: LatencyAxis) -> list[str]:
    """The top of ``dataset``'s leaderboard ``table`` in a few sentences (see the module)."""
    metric = table.attrs["metric"]
    rows = backbone_rows(table)
    if rows.empty:
        return [f"{dataset}: no backbone row."]
    names = row_names(table)
    protocol, resolution = usual_setting(rows)
    seeds = sorted({int(n) for n in rows["n"]})
    seeds_text = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    plural = "" if seeds == [1] else "s"
    head = f"{dataset} ({len(rows)} rows × {seeds_text} seed{plural}; {protocol} at {resolution} px unless named):"
    ranked = rows[rows["ranked"].astype(bool) & rows["rank"].notna()]
    sentences = []
    if ranked.empty:
        sentences.append(f"{head} no row is ranked.")
    else:
        leader = ranked.iloc[0]
        speed = leader[axis.column]
        at = "" if pd.isna(speed) else f" at {speed_text(speed, axis)}"
        score = score_text(leader[f"{metric}_mean"], leader[f"{metric}_std"])
        lead = f"{head} {names[leader.name]} leads with {metric} {score}{at}"
        tied = ranked[ranked["tied"].astype(bool)]
        if len(tied):
            listed = [f"{names[i]} {row[f'{metric}_mean']:.3f}" for i, row in tied.iterrows()]
            sentences.append(
                f"{lead}, and {len(tied)} row{'s are' if len(tied) > 1 else ' is'} not significantly worse "
                f"({TIE_MARK}, paired bootstrap p ≥ {TIE_ALPHA}): {_listed(listed)}."
            )
        elif len(ranked) > 1 and ranked["p_vs_rank1"].iloc[1:].notna().all():
            sentences.append(
                f"{lead}; every other ranked row is significantly worse (paired bootstrap p < {TIE_ALPHA})."
            )
        else:
            sentences.append(f"{lead}.")
        sentences.append(_front_sentence(ranked, names, metric, axis))
    majority = table[table["protocol"] == MAJORITY_PROTOCOL]
    if len(majority) and bool(majority["tied"].iloc[0]):
        sentences.append(
            f"Alarm: the majority baseline is {TIE_MARK} rank 1, so no row has been shown to beat always predicting "
            "the most frequent class."
        )
    unranked = rows[~rows["ranked"].astype(bool)]
    if len(unranked):
        listed = [names[i] for i in unranked.index]
        verb = "rows did" if len(listed) > 1 else "row did"
        sentences.append(
            f"{len(listed)} {verb} not learn on validation and {'are' if len(listed) > 1 else 'is'} not ranked "
            f"({DID_NOT_LEARN_MARK}): {_listed(listed)}."
        )
    empty = rows[rows["n"] == 0]
    if len(empty):
        listed = [f"{names[i]} ({int(r['failed'])} failed)" for i, r in empty.iterrows()]
        sentences.append(f"No finished run: {_listed(listed)}.")
    return sentences


def _front_sentence(ranked: pd.DataFrame, names: pd.Series, metric: str, axis: LatencyAxis) -> str:
    front = ranked[ranked["pareto"].astype(bool)]
    untimed = [names[i] for i in ranked.index[ranked[axis.column].isna()]]
    if front.empty:
        return "No ranked row has a batch-1 latency, so there is no accuracy-latency front."
    return _front_members(front, names, metric, axis) + (
        f" Without a latency, so not on it: {_listed(untimed)}." if untimed else ""
    )


def _front_members(front: pd.DataFrame, names: pd.Series, metric: str, axis: LatencyAxis) -> str:
    front = front.sort_values(axis.column, ascending=axis.lower_is_better, kind="stable")
    cells = [(names[i], f"{speed_text(r[axis.column], axis)}, {r[f'{metric}_mean']:.3f}") for i, r in front.iterrows()]
    if len(cells) == 1:
        (name, figures), faster = cells[0], "fastest" if axis.lower_is_better else "highest-throughput"
        return (
            f"The accuracy-latency front ({PARETO_MARK}) is {name} alone ({figures}): the most accurate and the "
            f"{faster} of the ranked rows with a latency."
        )
    members = [f"{name}: {figures}" for name, figures in cells]
    return f"The accuracy-latency front ({PARETO_MARK}), fastest first: {'; '.join(members)}."


def rankings_or_reason(records: list[RunRecord], metric: str) -> Rankings | str:
    """:func:`bench.reports.ranking.rank_rows`, or why the records cannot be ranked across datasets."""
    try:
        return rank_rows(records, metric)
    except ConfigError as err:
        return str(err)


def lowest(ranking: Ranking) -> list[str]:
    """The rows sharing the lowest mean rank."""
    means = ranking.mean_ranks
    return [str(r) for r in means.index[means == means.iloc[0]]]


def winner(ranking: Ranking) -> str | None:
    """The row the tests support as best: Friedman significant, one row at the lowest mean rank, and Nemenyi
    telling it apart from every other row (else None)."""
    best = lowest(ranking)
    if not ranking.significant or len(best) > 1:
        return None
    others = [r for r in ranking.mean_ranks.index if r != best[0]]
    return best[0] if all(ranking.nemenyi.loc[best[0], r] < ranking.alpha for r in others) else None


def _ranking_sentence(ranking: Ranking, what: str) -> str:
    means = ranking.mean_ranks
    best = lowest(ranking)
    share = f"{_listed(best)} share the lowest mean rank" if len(best) > 1 else f"{best[0]} has the lowest mean rank"
    rest = [f"{r} {m:.2f}" for r, m in means.iloc[len(best) : TOP_RANKS].items()]
    then = f"; then {', '.join(rest)}" if rest else ""
    opening = f"{what}, {share} ({means.iloc[0]:.2f}{then})"
    p = f"p = {ranking.p_value:.2g}"
    if not ranking.significant:
        return (
            f"{opening}, but the Friedman test does not separate the rows ({p} ≥ {ranking.alpha}): "
            "no winner is claimed."
        )
    found = winner(ranking)
    if found is not None:
        return (
            f"{opening}; the Friedman test separates the rows ({p}) and Nemenyi (CD = {ranking.cd:.2f}) puts "
            f"{found} ahead of every other row: it is the winner here."
        )
    close = [str(r) for r in means.index[1:] if ranking.nemenyi.loc[best[0], r] >= ranking.alpha]
    return (
        f"{opening}; the Friedman test says the rows differ ({p}), but Nemenyi (CD = {ranking.cd:.2f}) does not tell "
        f"{best[0]} apart from {_listed(close)}: no winner is claimed."
    )


def ranking_answer(rankings: Rankings) -> list[str]:
    """The across-datasets answer: which rows were compared, then per ranking its lowest mean ranks and verdict."""
    k = rankings.accuracy.ranks.shape[1]
    left = len(rankings.accuracy.left_out)
    datasets = _listed(list(rankings.datasets))
    left_text = f"; {left} left out, not run or not learned on one" if left else ""
    opening = f"Across {datasets} (the {k} rows that learned on each{left_text}; mean rank over datasets, 1 = best)"
    sentences = [_ranking_sentence(rankings.accuracy, f"{opening}: by {rankings.metric}")]
    if rankings.front is None:
        sentences.append(f"The accuracy-latency front is not ranked: {rankings.front_missing}.")
    else:
        sentences.append(_ranking_sentence(rankings.front, "On the accuracy-latency front (by Pareto layer)"))
    return sentences + list(rankings.notes)
