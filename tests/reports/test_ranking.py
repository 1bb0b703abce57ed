"""The ranking across datasets: mean ranks and the Friedman test as scipy computes them, Nemenyi's critical difference
as Demšar tabulates it, Pareto layers on hand-computed fronts, rows that cannot be ranked on every dataset left out
and named with the reason, and `bench rank`'s output and its one-line refusals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from console import run_bench
from factories import make_record, metric_values, write_run
from scipy.stats import friedmanchisquare

from bench.errors import ConfigError
from bench.reports.ranking import compare, pareto_layers, rank_rows
from bench.reports.ranking_files import markdown

# Records without saved test probabilities: the leaderboards' CIs are n/a, with a warning each.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# One class for every image.
COLLAPSED_VAL = metric_values({"balanced_accuracy": 0.5, "confusion_matrix": [[50, 0], [50, 0]]}, ("a", "b"))

# (datasets x rows values, higher is better, the mean ranks by hand)
TABLES = [
    ([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7], [0.9, 0.8, 0.7]], True, [1.0, 2.0, 3.0]),
    ([[0.9, 0.8, 0.7], [0.7, 0.9, 0.8], [0.8, 0.7, 0.9]], True, [2.0, 2.0, 2.0]),
    ([[0.9, 0.9, 0.7, 0.1], [0.5, 0.6, 0.7, 0.8], [0.3, 0.2, 0.2, 0.1]], True, [13 / 6, 7 / 3, 2.5, 3.0]),  # ties
    (
        [[0.9, 0.8, 0.7, 0.6], [0.8, 0.9, 0.6, 0.7], [0.9, 0.7, 0.8, 0.6], [0.9, 0.8, 0.6, 0.7]],
        True,
        [1.25, 2, 3.25, 3.5],
    ),
    ([[1, 2, 3], [1, 1, 2], [2, 1, 3]], False, [1.5, 1.5, 3.0]),  # Pareto layers: lower is better, ties shared
]


@pytest.mark.parametrize(("values", "higher", "mean_ranks"), TABLES)
def test_mean_ranks_and_friedman_are_scipys(values, higher, mean_ranks):
    table = pd.DataFrame(values, index=[f"d{i}" for i in range(len(values))], columns=list("ABCD")[: len(values[0])])
    ranking = compare("accuracy", "test", table, higher_is_better=higher)
    assert ranking.ranks.mean().to_numpy() == pytest.approx(mean_ranks)
    expected = friedmanchisquare(*np.asarray(values, dtype=float).T)  # scipy ranks either way: chi2 is the same
    assert ranking.statistic == pytest.approx(expected.statistic)
    assert ranking.p_value == pytest.approx(expected.pvalue)
    assert list(ranking.mean_ranks) == pytest.approx(sorted(mean_ranks))


# Demšar (2006), Table 5(a): q_0.05 of the Nemenyi test for k classifiers; CD = q sqrt(k (k + 1) / (6 N)).
@pytest.mark.parametrize(("k", "q"), [(3, 2.343), (4, 2.569), (5, 2.728), (7, 2.949), (10, 3.164)])
@pytest.mark.parametrize("n", [3, 10])
def test_critical_difference_is_demsars(k, q, n):
    table = pd.DataFrame(np.random.default_rng(k * n).random((n, k)))
    assert compare("accuracy", "test", table, True).cd == pytest.approx(q * np.sqrt(k * (k + 1) / (6 * n)), abs=2e-3)


def test_rows_tied_on_every_dataset_have_nothing_to_test():
    ranking = compare("front", "test", pd.DataFrame([[1, 1, 1]] * 3), higher_is_better=False)
    assert (ranking.statistic, ranking.p_value, ranking.significant) == (0.0, 1.0, False)


@pytest.mark.parametrize(
    ("score", "cost", "layers"),
    [
        ([0.9, 0.8, 0.7, 0.6], [4, 3, 2, 1], [1, 1, 1, 1]),  # each faster and less accurate: all on the front
        ([0.9, 0.8, 0.7], [1, 2, 3], [1, 2, 3]),  # each slower and less accurate: a chain
        ([0.9, 0.9, 0.5], [1, 1, 2], [1, 1, 2]),  # exact ties share a layer
        ([0.9, 0.9, 0.5], [1, 2, 2], [1, 2, 3]),  # a tie on one axis is broken by the other
        ([0.9, 0.8, 0.85, 0.7, 0.6], [10, 5, 8, 6, 20], [1, 1, 1, 2, 3]),
    ],
)
def test_pareto_layers(score, cost, layers):
    index = [f"r{i}" for i in range(len(score))]
    got = pareto_layers(pd.Series(score, index, dtype=float), pd.Series(cost, index, dtype=float))
    assert got.tolist() == layers and list(got.index) == index


# backbone -> test balanced accuracy per dataset (make_record stores acc - 0.1) and batch-1 latency (ms)
PLAN = {"big": ((0.9, 0.8, 0.85), 20.0), "mid": ((0.8, 0.85, 0.7), 10.0), "small": ((0.7, 0.6, 0.8), 5.0)}
DATASETS = ("d1", "d2", "d3")


def records(plan=PLAN, seeds=(0, 1), collapsed=(), missing=(), untimed=()):
    """Every backbone of ``plan`` on every dataset, but: ``collapsed`` (backbone, dataset) did not learn on
    validation in every seed, ``missing`` ones never ran, ``untimed`` ones have no latency."""
    out = []
    for backbone, (accs, ms) in plan.items():
        for dataset, acc in zip(DATASETS, accs, strict=True):
            if (backbone, dataset) in missing:
                continue
            for seed in seeds:
                record = make_record(backbone, seed, acc + 0.01 * seed, dataset=dataset, ms=ms)
                if (backbone, dataset) in collapsed:
                    record.val = COLLAPSED_VAL
                if (backbone, dataset) in untimed:
                    record.latency = []
                out.append(record)
    return out


def test_the_score_table_is_the_seed_mean_and_the_majority_row_is_no_row():
    rankings = rank_rows(records())
    scores = rankings.accuracy.values
    assert list(scores.index) == list(DATASETS) and sorted(scores.columns) == [
        "big scratch",
        "mid scratch",
        "small scratch",
    ]
    assert scores.loc["d2", "mid scratch"] == pytest.approx(0.85 - 0.1 + 0.005)
    assert rankings.accuracy.mean_ranks.to_dict() == pytest.approx(
        {"big scratch": 4 / 3, "mid scratch": 2.0, "small scratch": 8 / 3}
    )
    assert rankings.accuracy.left_out == ()


def test_a_row_that_did_not_learn_on_one_dataset_is_left_out_and_named():
    plan = PLAN | {"failed": ((0.95, 0.95, 0.95), 1.0)}  # best and fastest everywhere, were it ranked
    rankings = rank_rows(records(plan, collapsed={("failed", "d2")}))
    assert "failed scratch" not in rankings.accuracy.values.columns
    assert "failed scratch" not in rankings.front.values.columns
    [left] = rankings.accuracy.left_out
    assert left.row == "failed scratch" and left.reason == "✗ did not learn on d2 (2 of 2 seeds)"
    assert left in rankings.front.left_out
    frame = rankings.frame().set_index(["ranking", "row"])
    assert frame.loc[("accuracy", "failed scratch"), "left_out"] == left.reason
    assert "- failed scratch: ✗ did not learn on d2 (2 of 2 seeds)" in markdown(rankings, "bench rank")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"missing": {("extra", "d3")}}, "not run on d3"),
        ({"missing": {("extra", "d1"), ("extra", "d3")}}, "not run on d1; not run on d3"),
    ],
)
def test_a_row_not_scored_on_every_dataset_is_left_out_with_the_reason(change, reason):
    rankings = rank_rows(records(PLAN | {"extra": ((0.9, 0.9, 0.9), 1.0)}, **change))
    assert [(o.row, o.reason) for o in rankings.accuracy.left_out] == [("extra scratch", reason)]


def test_a_row_without_latency_is_left_out_of_the_front_alone():
    plan = PLAN | {"fourth": ((0.6, 0.6, 0.6), 30.0)}
    rankings = rank_rows(records(plan, untimed={("fourth", "d1")}))
    assert "fourth scratch" in rankings.accuracy.values.columns
    assert [(o.row, o.reason) for o in rankings.front.left_out] == [("fourth scratch", "no batch-1 latency on d1")]


def test_the_front_ranking_is_by_pareto_layer():
    # d1: big (0.8, 20 ms), mid (0.7, 10), small (0.6, 5): all on the front. d2: mid is faster and more accurate
    # than big, so big is layer 2. d3: small is faster and more accurate than mid; big is the most accurate.
    front = rank_rows(records()).front
    assert front.values.to_dict("index") == {
        "d1": {"big scratch": 1, "mid scratch": 1, "small scratch": 1},
        "d2": {"big scratch": 2, "mid scratch": 1, "small scratch": 1},
        "d3": {"big scratch": 1, "mid scratch": 2, "small scratch": 1},
    }
    assert front.ranks.loc["d1"].tolist() == [2.0, 2.0, 2.0]  # one layer: the mean rank, shared


def test_with_too_few_timed_rows_the_front_is_not_tested_and_says_why():
    rankings = rank_rows(records(untimed={("big", "d2"), ("mid", "d1")}))
    assert rankings.front is None and rankings.front_missing.startswith("only 1 rows have a batch-1 latency")
    assert "## front\n\nNot tested: only 1 rows" in markdown(rankings, "bench rank")


DRAW = """
import sys
from pathlib import Path
import pandas as pd
from bench.reports.ranking import compare
from bench.reports.ranking_files import draw
values = pd.DataFrame([[0.9, 0.8, 0.7, 0.6], [0.8, 0.9, 0.6, 0.7], [0.9, 0.7, 0.8, 0.6]], columns=list("abcd"))
draw(compare("accuracy", "test", values, True), Path(sys.argv[1]))
"""


def test_the_diagram_is_the_same_file_whatever_the_hash_seed(tmp_path):
    """scikit-posthocs gathers rows in sets: with string labels their order, and the SVG, followed the hash seed."""
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", DRAW, str(tmp_path / seed)], check=True, env=env, timeout=120)
    assert (tmp_path / "1.svg").read_bytes() == (tmp_path / "2.svg").read_bytes()
    assert b">a (1.33)<" in (tmp_path / "1.svg").read_bytes()  # the rows named after drawing, with their mean rank


@pytest.mark.parametrize(
    ("values", "says", "never"),
    [
        ([[3, 2, 1], [3, 2, 1], [2, 3, 1]], "not significant at 0.05, so no row is shown better", "best here"),
        ([[3, 2, 1]] * 12, "significant at 0.05; 0 has the lowest mean rank (1.00) and Nemenyi", "no winner"),
    ],
)
def test_a_winner_is_named_only_where_the_test_is_significant(values, says, never):
    verdict = compare("accuracy", "test", pd.DataFrame(values), True).verdict()
    assert says in verdict and never not in verdict


@pytest.mark.parametrize(
    ("kept", "problem"),
    [
        (lambda r: [x for x in r if x.spec.dataset == "d1"], "needs 2 datasets or more, the records hold 1 (d1)"),
        (lambda r: [x for x in r if x.spec.backbone != "small"], "only 2 rows have balanced_accuracy on every dataset"),
    ],
)
def test_too_little_to_rank_is_one_line_naming_it(kept, problem):
    with pytest.raises(ConfigError, match=re.escape(problem)):
        rank_rows(kept(records()))


@pytest.fixture
def results(tmp_path) -> Path:
    plan = PLAN | {"tf_efficientnet_lite0": ((0.75, 0.75, 0.75), 7.0), "failed": ((0.95, 0.95, 0.95), 1.0)}
    for record in records(plan, collapsed={("failed", "d3")}):
        write_run(record, tmp_path)
    return tmp_path


def test_bench_rank_prints_one_line_per_row_and_writes_its_files(results, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "out"
    out = run_bench(monkeypatch, capsys, "rank", "--results-dir", str(results), "--out", str(out_dir))
    assert out.status == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(map(len, lines[:10])) <= 80
    # accuracy ranks 3 on each dataset (mean ranks 4/3, 7/3, 3, 10/3); on the front layers 1, 1, 2: ranks 2.5, 2, 3
    [row] = [line for line in lines if "tf_efficientnet_lite0 scratch" in line]
    cells = [cell.strip() for cell in row.split("│")[1:7]]
    assert cells == ["3", "tf_efficientnet_lite0 scratch", "3.00", "3 3 3", "2.50", "1 1 2"]
    assert any(line.startswith("accuracy: Friedman chi2 = ") and "p = " in line for line in lines)
    assert "left out of both rankings: failed scratch: ✗ did not learn on d3 (2 of 2 seeds)" in lines
    assert out.stderr.splitlines()[-1].startswith("written: ")  # stdout holds the data alone
    written = {p.name for p in out_dir.iterdir()}
    assert {"ranking.md", "cd-accuracy.svg", "cd-accuracy.png", "cd-front.svg", "cd-front.png"} <= written


def test_bench_rank_json_is_data_alone(results, monkeypatch, capsys):
    out = run_bench(monkeypatch, capsys, "rank", "--results-dir", str(results), "--format", "json")
    assert out.status == 0, out.stderr
    rows = json.loads(out.stdout)
    left = [r for r in rows if r["left_out"]]
    assert {(r["ranking"], r["row"]) for r in left} == {("accuracy", "failed scratch"), ("front", "failed scratch")}
    assert all(isinstance(r["position"], int) and r["friedman_p"] > 0 for r in rows if not r["left_out"])


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--metric", "sensitivity"), "unknown metric 'sensitivity'"),
        (("--metric", "nope"), "unknown metric 'nope'"),
    ],
)
def test_bench_rank_bad_input_is_exit_2_and_one_line(args, problem, results, monkeypatch, capsys):
    out = run_bench(monkeypatch, capsys, "rank", "--results-dir", str(results), *args)
    assert out.status == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and problem in out.stderr, out.stderr


def test_bench_rank_on_an_empty_folder_is_exit_2(tmp_path, monkeypatch, capsys):
    out = run_bench(monkeypatch, capsys, "rank", "--results-dir", str(tmp_path))
    assert out.status == 2 and out.stderr.count("\n") == 1 and "no run records under" in out.stderr
