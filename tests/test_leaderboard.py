"""Leaderboard aggregation from records: means, stds, n, failures, majority row, ordering, files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.errors import ConfigError
from bench.leaderboard import (
    display_frame,
    latency_devices,
    leaderboard,
    majority_row,
    pareto_front,
    write_leaderboard,
)


def record(
    backbone="resnet18",
    seed=0,
    acc=0.8,
    status="ok",
    protocol="scratch",
    device="cpu-x",
    dataset="d",
    ms=None,
    throughput=None,
):
    rec = {
        "key": f"{backbone}-{protocol}-{seed}",
        "status": status,
        "effective_resolution": 28,
        "spec": {"dataset": dataset, "backbone": backbone, "protocol": protocol, "seed": seed},
        "dataset": {
            "classes": ["a", "b"],
            "resolution": 28,
            "class_counts": {"train": [30, 70], "val": [3, 7], "test": [40, 60]},
        },
        "environment": {"device": {"cpu_model": device}},
        "timings_s": {"train": 10.0},
    }
    if status == "ok":
        rec |= {
            "test": {"accuracy": acc, "balanced_accuracy": acc - 0.1, "macro_f1": acc - 0.2, "auc": acc + 0.1},
            "backbone": {"params": 11_000_000, "gmacs": 0.034},
            "latency": [
                {
                    "batch_size": 1,
                    "ms_per_image_p50": 2.0 + seed if ms is None else ms,
                    "throughput_img_s": throughput,
                    "fingerprint": {"cpu_model": device},
                }
            ],
        }
    else:
        rec["error"] = "DivergedError: loss became nan"
    return rec


RECORDS = [
    record("resnet18", 0, 0.80),
    record("resnet18", 1, 0.84),
    record("resnet18", 2, 0.82),
    record("vgg16", 0, 0.90),
    record("vgg16", 1, status="failed"),
    record("densenet121", 0, status="failed"),
]


def test_mean_std_n_over_seeds():
    table = leaderboard(RECORDS, "d", "accuracy").set_index("backbone")
    r = table.loc["resnet18"]
    assert (r["n"], r["failed"]) == (3, 0)
    assert r["accuracy_mean"] == pytest.approx(0.82)
    assert r["accuracy_std"] == pytest.approx(np.std([0.80, 0.84, 0.82], ddof=1))
    assert r["latency_ms"] == pytest.approx(3.0)


def test_failed_runs_are_counted_not_dropped_or_zero():
    table = leaderboard(RECORDS, "d", "accuracy").set_index("backbone")
    assert (table.loc["vgg16", "n"], table.loc["vgg16", "failed"]) == (1, 1)
    dense = table.loc["densenet121"]
    assert dense["n"] == 0 and dense["failed"] == 1 and math.isnan(dense["accuracy_mean"])
    shown = display_frame(leaderboard(RECORDS, "d", "accuracy")).set_index("backbone")
    assert shown.loc["densenet121", "n"] == "0 (+1 failed)" and shown.loc["densenet121", "accuracy"] == "n/a"


def test_sorted_by_metric_and_ranked():
    table = leaderboard(RECORDS, "d", "accuracy")
    assert table["backbone"].tolist() == ["vgg16", "resnet18", "majority", "densenet121"]
    assert table["rank"].tolist()[:3] == [1, 2, 3]


def test_single_seed_has_no_std():
    shown = display_frame(leaderboard(RECORDS, "d", "accuracy")).set_index("backbone")
    assert shown.loc["vgg16", "accuracy"] == "0.900"
    assert shown.loc["resnet18", "accuracy"] == "0.820 ± 0.020"


def test_majority_row_uses_the_training_majority_on_test():
    row = majority_row(RECORDS, "d")
    assert row["accuracy_mean"] == pytest.approx(0.6)  # class b: 70% of train, 60% of test
    assert row["balanced_accuracy_mean"] == pytest.approx(0.5) and row["auc_mean"] == pytest.approx(0.5)


def test_other_datasets_are_not_mixed_in():
    table = leaderboard([*RECORDS, record("resnet50", dataset="other")], "d")
    assert "resnet50" not in set(table["backbone"])


def test_unknown_metric():
    with pytest.raises(ConfigError, match="unknown metric 'acc'"):
        leaderboard(RECORDS, "d", "acc")


def test_latency_devices_are_listed():
    table = leaderboard([*RECORDS, record("resnet50", device="other-cpu")], "d")
    assert latency_devices(table) == ["cpu-x", "other-cpu"]


def test_written_files(tmp_path):
    md, csv, tex = write_leaderboard(leaderboard(RECORDS, "d"), tmp_path, "d")
    assert "| resnet18" in md.read_text() and "±" in md.read_text()
    assert set(pd.read_csv(csv)["backbone"]) == {"resnet18", "vgg16", "densenet121", "majority"}
    assert tex.name == "d.tex" and r"\toprule" in tex.read_text()


NAN = math.nan
# score (maximised), cost (minimised), expected front
PARETO_CASES = [
    ("single point", [0.7], [5.0], [True]),
    ("empty", [], [], []),
    ("one dominates all", [0.9, 0.8, 0.7], [1.0, 2.0, 3.0], [True, False, False]),
    ("staircase plus a dominated point", [0.6, 0.8, 0.9, 0.7], [1.0, 2.0, 4.0, 3.0], [True, True, True, False]),
    ("exact tie: both kept", [0.8, 0.8], [2.0, 2.0], [True, True]),
    ("exact tie, both dominated", [0.8, 0.8, 0.9], [2.0, 2.0, 1.0], [False, False, True]),
    ("same score, slower loses", [0.8, 0.8], [1.0, 2.0], [True, False]),
    ("same cost, less accurate loses", [0.8, 0.9], [2.0, 2.0], [False, True]),
    ("NaN is never on the front and dominates nothing", [NAN, 0.5, 0.9], [1.0, 2.0, NAN], [False, True, False]),
    ("all NaN", [NAN, NAN], [1.0, 2.0], [False, False]),
]


@pytest.mark.parametrize("score, cost, expected", [c[1:] for c in PARETO_CASES], ids=[c[0] for c in PARETO_CASES])
def test_pareto_front(score, cost, expected):
    assert pareto_front(score, cost).tolist() == expected


def test_pareto_front_agrees_with_the_definition_on_random_points():
    """Brute force on the definition: a point is on the front iff no other point dominates it."""
    rng = np.random.default_rng(0)
    score, cost = rng.integers(0, 6, 40) / 5, rng.integers(1, 6, 40).astype(float)  # small grids force ties
    front = pareto_front(score, cost)
    for i in range(40):
        dominated = any(
            score[j] >= score[i] and cost[j] <= cost[i] and (score[j] > score[i] or cost[j] < cost[i])
            for j in range(40)
        )
        assert front[i] == (not dominated)


def test_pareto_front_needs_matching_1d_inputs():
    with pytest.raises(ValueError, match="one length"):
        pareto_front([0.1, 0.2], [1.0])


def test_pareto_column_over_backbone_rows():
    """vgg16 (0.90 at 2 ms) beats resnet18 (0.82 at 3 ms) on both; failed and baseline rows never count."""
    table = leaderboard(RECORDS, "d", "accuracy").set_index("backbone")
    assert table["pareto"].to_dict() == {"vgg16": True, "resnet18": False, "majority": False, "densenet121": False}


def test_the_majority_baseline_is_never_pareto_even_when_it_wins():
    records = [record("a", acc=0.5, ms=1.0), record("b", acc=0.55, ms=4.0)]  # majority accuracy is 0.6
    table = leaderboard(records, "d", "accuracy").set_index("backbone")
    assert table.loc["majority", "rank"] == 1
    assert table["pareto"].to_dict() == {"majority": False, "b": True, "a": True}


@pytest.mark.parametrize(
    "latency, expected",
    [
        ("p50", {"fast_p50": True, "fast_throughput": False}),  # fast_p50 is more accurate and lower p50
        ("throughput", {"fast_p50": True, "fast_throughput": True}),  # but fast_throughput has more img/s
    ],
)
def test_pareto_follows_the_chosen_speed_measure(latency, expected):
    records = [
        record("fast_p50", acc=0.9, ms=2.0, throughput=300.0),
        record("fast_throughput", acc=0.8, ms=3.0, throughput=600.0),
    ]
    table = leaderboard(records, "d", "accuracy", latency).set_index("backbone")
    assert table["pareto"].drop("majority").to_dict() == expected


def test_unknown_latency_measure():
    with pytest.raises(ConfigError, match="unknown latency measure 'p90'"):
        leaderboard(RECORDS, "d", latency="p90")


def test_pareto_rows_are_starred_next_to_the_rank():
    shown = display_frame(leaderboard(RECORDS, "d", "accuracy")).set_index("backbone")
    assert shown["rank"].to_dict() == {"vgg16": "1 ★", "resnet18": "2", "majority": "3", "densenet121": ""}


def test_latex_is_booktabs_and_pdflatex_safe(tmp_path):
    _, _, tex = write_leaderboard(leaderboard([*RECORDS, record("test_resnet", acc=0.7)], "d"), tmp_path, "my_data")
    text = tex.read_text()
    assert [line for line in text.splitlines() if line.endswith("rule")] == [r"\toprule", r"\midrule", r"\bottomrule"]
    assert r"test\_resnet" in text and r"0.720 $\pm$ 0.020" in text and r"1 $\star$" in text
    assert r"\caption{my\_data:" in text and r"\label{tab:my_data-leaderboard}" in text
    assert r"\resizebox{\linewidth}{!}{\begin{tabular}" in text and r"\end{tabular}}" in text
    assert not {"±", "★", "test_resnet"} & set(text.split())  # nothing raw that pdflatex would choke on
    body = text.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == 5 and all(
        row.count("&") == len(display_frame(leaderboard(RECORDS, "d")).columns) - 1 for row in body
    )


def test_markdown_explains_the_star(tmp_path):
    md, _, _ = write_leaderboard(leaderboard(RECORDS, "d"), tmp_path, "d")
    assert md.read_text().rstrip().endswith("strictly better on one of the two.")
    assert "| 1 ★" in md.read_text()
