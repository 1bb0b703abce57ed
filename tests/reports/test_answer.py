"""The answer a report opens with: sentences from hand-made records (per dataset) and hand-made rank tables
(across datasets), a winner named only where the tests support one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from factories import make_record
from test_row_health import COLLAPSED_VAL, LEARNED_VAL, good, near_copy, save

from bench.reports.answer import dataset_answer, ranking_answer, rankings_or_reason, row_names, winner
from bench.reports.leaderboard import LATENCY_AXES, leaderboard
from bench.reports.ranking import Ranking, Rankings, compare
from bench.runs.record import load_records

P50 = LATENCY_AXES["p50"]


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> pd.DataFrame:
    """Two seeds each: best (10 ms); twin, ≈ best but slower (12 ms); quick, worse but faster (5 ms); slow, worse and
    slower (20 ms); dud, collapsed on validation in both seeds (1 ms): not ranked, so off the front."""
    root: Path = tmp_path_factory.mktemp("answer")
    for seed in (0, 1):
        best = good(seed)
        save(root, "best", seed, best, LEARNED_VAL, ms=10)
        save(root, "twin", seed, near_copy(best), LEARNED_VAL, ms=12)
        save(root, "quick", seed, good(30 + seed, 0.7), LEARNED_VAL, ms=5)
        save(root, "slow", seed, good(10 + seed, 0.75), LEARNED_VAL, ms=20)
        save(root, "dud", seed, near_copy(best), COLLAPSED_VAL, ms=1)
    return leaderboard(load_records(root), "d")


def test_the_answer_names_the_leader_its_ties_the_front_and_the_rows_that_did_not_learn(board):
    rows = board.set_index("backbone")
    best, twin, quick = (rows.loc[b, "balanced_accuracy_mean"] for b in ("best", "twin", "quick"))
    std = rows.loc["best", "balanced_accuracy_std"]
    assert dataset_answer(board, "d", P50) == [
        f"d (5 rows × 2 seeds; scratch at 28 px unless named): best leads with balanced_accuracy {best:.3f} ± "
        f"{std:.3f} at 10 ms, and 1 row is not significantly worse (≈, paired bootstrap p ≥ 0.05): twin {twin:.3f}.",
        f"The accuracy-latency front (★), fastest first: quick: 5 ms, {quick:.3f}; best: 10 ms, {best:.3f}.",
        "1 row did not learn on validation and is not ranked (✗): dud.",
    ]


def test_with_throughput_the_front_is_listed_fastest_first_in_images_per_second(tmp_path):
    records = [
        make_record("a", acc=0.9, ms=10.0, throughput=100.0),
        make_record("b", acc=0.8, ms=5.0, throughput=200.0),
    ]
    table = leaderboard(records, "d", latency="throughput")
    front = dataset_answer(table, "d", LATENCY_AXES["throughput"])[1]
    assert front.startswith("The accuracy-latency front (★), fastest first: b: 200 images/s, ")
    assert "; a: 100 images/s, " in front


def test_a_lone_front_and_rows_without_a_latency_are_said():
    """No saved probabilities: the tie test is not run, so neither "≈" nor "significantly worse" is claimed."""
    records = [make_record("a", acc=0.9, ms=3.0), make_record("b", acc=0.8, noisy=True), make_record("c", ms=4.0)]
    table = leaderboard(records, "d")
    score = table.loc[0, "balanced_accuracy_mean"]
    head, front = dataset_answer(table, "d", P50)
    assert head.endswith(f"a leads with balanced_accuracy {score:.3f} at 3 ms.") and "worse" not in head
    assert front == (
        f"The accuracy-latency front (★) is a alone (3 ms, {score:.3f}): the most accurate and the fastest of the "
        "ranked rows with a latency. Without a latency, so not on it: b."
    )


def test_other_settings_are_named_and_the_usual_one_said_once():
    records = [
        make_record("a", acc=0.9),
        make_record("a", acc=0.8, protocol="staged"),
        make_record("b", acc=0.7, resolution=64),
        make_record("c", acc=0.6),
    ]
    table = leaderboard(records, "d")
    assert sorted(row_names(table)) == ["a", "a (staged)", "b (64 px)", "c"]
    assert dataset_answer(table, "d", P50)[0].startswith("d (4 rows × 1 seed; scratch at 28 px unless named): a leads")


def test_no_ranked_row_and_failed_rows_are_said(tmp_path):
    save(tmp_path, "dud", 0, good(0), COLLAPSED_VAL, ms=1)
    records = [*load_records(tmp_path), make_record("broken", status="failed")]
    sentences = dataset_answer(leaderboard(records, "d"), "d", P50)
    assert sentences[0].endswith("no row is ranked.")
    assert "1 row did not learn on validation and is not ranked (✗): dud." in sentences
    assert sentences[-1] == "No finished run: broken (1 failed)."


def ranks(columns: dict[str, list[float]]) -> pd.DataFrame:
    """Datasets x rows of scores, the datasets named set0, set1, ..."""
    return pd.DataFrame(columns, [f"set{i}" for i in range(len(next(iter(columns.values()))))])


@pytest.mark.parametrize(
    "values, expected, named",
    [
        # three datasets, a first on two of them (ranks 1, 1, 2): lowest mean rank, yet Friedman p = 0.26
        (
            {"a": [0.9, 0.9, 0.8], "b": [0.8, 0.7, 0.9], "c": [0.7, 0.8, 0.7]},
            "a has the lowest mean rank (1.33; then b 2.00, c 2.67), but the Friedman test does not separate the rows "
            "(p = 0.26 ≥ 0.05): no winner is claimed.",
            None,
        ),
        # ten datasets, always a > b > c: the rows differ, but Nemenyi tells a apart from c only
        ({"a": [0.9] * 10, "b": [0.8] * 10, "c": [0.7] * 10}, "does not tell a apart from b: no winner", None),
        # twenty: a is apart from both
        ({"a": [0.9] * 20, "b": [0.8] * 20, "c": [0.7] * 20}, "puts a ahead of every other row: it is the winner", "a"),
        # a and b trade places: they share the lowest mean rank
        ({"a": [0.9, 0.8] * 10, "b": [0.8, 0.9] * 10, "c": [0.7] * 20}, "does not tell a apart from b", None),
    ],
)
def test_a_winner_is_claimed_only_where_the_tests_support_one(values, expected, named):
    ranking = compare("accuracy", "mean score", ranks(values), higher_is_better=True)
    assert winner(ranking) == named
    sentence = ranking_answer_for(ranking)
    assert expected in sentence, sentence
    assert ("winner here" in sentence) == (named is not None)
    assert ("no winner is claimed" in sentence) == (named is None)


def ranking_answer_for(ranking: Ranking) -> str:
    return " ".join(ranking_answer(Rankings("score", tuple(ranking.values.index), ranking, None, "no latency")))


def test_rows_sharing_the_lowest_mean_rank_are_named_together():
    ranking = compare("accuracy", "m", ranks({"a": [0.9, 0.8, 0.7], "b": [0.8, 0.9, 0.7], "c": [0.7, 0.7, 0.9]}), True)
    assert "a and b share the lowest mean rank (1.83; then c 2.33)" in ranking_answer_for(ranking)


def test_records_that_cannot_be_ranked_give_the_reason():
    reason = rankings_or_reason([make_record("a")], "balanced_accuracy")
    assert isinstance(reason, str) and reason.startswith("ranking across datasets needs 2 datasets or more")
