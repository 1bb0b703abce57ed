"""Leaderboard aggregation from records: means, stds, n, failures, majority row, ordering, files, and the
uncertainty columns (95% test-image CIs, ties with rank 1) computed from saved probabilities."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from factories import make_record as record
from factories import write_run

from bench.errors import ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.evaluation.significance import paired_bootstrap
from bench.evaluation.values import compute_metrics
from bench.reports.leaderboard import latency_devices, leaderboard, majority_row, pareto_front
from bench.reports.render import ci_column, display_frame, seeds_column, write_leaderboard
from bench.reports.uncertainty import NO_PROBS
from bench.runs.identity import InitialWeights
from bench.runs.record import load_records

# In-memory records (no results folder) have no saved probabilities: their CIs are n/a, with a warning.
pytestmark = pytest.mark.filterwarnings("ignore:run .* not read from a results folder:UserWarning")


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


def test_a_precision_asked_for_is_its_own_row():
    """An fp32 run of a config is another experiment than its auto-precision run: never averaged in."""
    fp32 = record("resnet18", 0, 0.70, precision="fp32")
    table = leaderboard([record("resnet18", 0, 0.80), fp32], "d", "accuracy")
    rows = table[table["backbone"] == "resnet18"].set_index("protocol")
    assert rows["n"].to_dict() == {"scratch": 1, "scratch@fp32": 1}
    assert rows.loc["scratch@fp32", "accuracy_mean"] == pytest.approx(0.70)


def test_failed_runs_are_counted_not_dropped_or_zero():
    table = leaderboard(RECORDS, "d", "accuracy").set_index("backbone")
    assert (table.loc["vgg16", "n"], table.loc["vgg16", "failed"]) == (1, 1)
    dense = table.loc["densenet121"]
    assert dense["n"] == 0 and dense["failed"] == 1 and math.isnan(dense["accuracy_mean"])
    shown = display_frame(leaderboard(RECORDS, "d", "accuracy")).set_index("backbone")
    assert (
        shown.loc["densenet121", "n"] == "0 (+1 failed)" and shown.loc["densenet121", seeds_column("accuracy")] == "n/a"
    )


def test_sorted_by_metric_and_ranked():
    table = leaderboard(RECORDS, "d", "accuracy")
    assert table["backbone"].tolist() == ["vgg16", "resnet18", "majority", "densenet121"]
    assert table["rank"].tolist()[:3] == [1, 2, 3]


def test_single_seed_has_no_std():
    shown = display_frame(leaderboard(RECORDS, "d", "accuracy")).set_index("backbone")
    assert shown.loc["vgg16", seeds_column("accuracy")] == "0.900"
    assert shown.loc["resnet18", seeds_column("accuracy")] == "0.820 ± 0.020"


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


# what a script passed -> the one line it gets (was: an empty table, or AttributeError 'str' has no 'spec')
BAD_ARGUMENTS = {
    "unknown-dataset": ((RECORDS, "nope"), "no records of dataset 'nope': the records given are of 'd'$"),
    "no-records": (([], "d"), "no records of dataset 'd': no records were given"),
    "a-path": (("my-results", "d"), r"not the path 'my-results': pass bench.load_records\('my-results'\)"),
    "a-number": ((42, "d"), "records must be a list of RunRecord .*, got int$"),
    "other-items": (([RECORDS[0], "x"], "d"), "got list with an item of type str"),
}


@pytest.mark.parametrize(("args", "problem"), BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_records_that_are_not_records_or_lack_the_dataset_are_one_line_errors(args, problem):
    with pytest.raises(ConfigError, match=problem):
        leaderboard(*args)


def test_any_iterable_of_records_is_taken():
    assert leaderboard(iter(RECORDS), "d").equals(leaderboard(RECORDS, "d"))


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


# score, cost low (min over seeds), cost high (max), expected front
NOISY_PARETO_CASES = [
    # The case: 0.12 ms faster on the mean, within a 3.70-4.51 ms spread: the less accurate is dominated.
    ("a gap within the spread does not keep a point", [0.80, 0.85], [3.70, 3.82], [4.51, 4.40], [False, True]),
    ("faster beyond the spread does", [0.80, 0.85], [2.0, 3.82], [2.5, 4.40], [True, True]),
    ("intervals that only touch overlap", [0.80, 0.85], [3.0, 4.0], [4.0, 5.0], [False, True]),
    ("same score, overlapping latency: both kept", [0.8, 0.8], [1.0, 1.5], [2.0, 2.5], [True, True]),
    ("same score, slower beyond the spread loses", [0.8, 0.8], [1.0, 3.0], [2.0, 4.0], [True, False]),
    (
        "no spread (one seed): the plain rule",
        [0.6, 0.8, 0.9, 0.7],
        [1.0, 2.0, 4.0, 3.0],
        None,
        [True, True, True, False],
    ),
    ("NaN spread is never on the front", [0.9, 0.5], [1.0, 2.0], [NAN, 2.0], [False, True]),
]


@pytest.mark.parametrize(
    "score, low, high, expected", [c[1:] for c in NOISY_PARETO_CASES], ids=[c[0] for c in NOISY_PARETO_CASES]
)
def test_pareto_front_within_the_latency_spread(score, low, high, expected):
    assert pareto_front(score, low, low if high is None else high).tolist() == expected


def test_pareto_front_within_the_spread_agrees_with_the_definition_on_random_points():
    """Brute force: j dominates i iff as accurate, not slower beyond the spread, and better on one beyond it."""
    rng = np.random.default_rng(1)
    score, low = rng.integers(0, 6, 40) / 5, rng.integers(1, 6, 40).astype(float)
    high = low + rng.integers(0, 3, 40)
    front = pareto_front(score, low, high)
    for i in range(40):
        dominated = any(
            score[j] >= score[i] and low[j] <= high[i] and (score[j] > score[i] or high[j] < low[i]) for j in range(40)
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
    assert (
        r"\caption{my\_data: test split. $\star$ Pareto-optimal" in text and r"\label{tab:my_data-leaderboard}" in text
    )
    assert (
        r"95\% CI (test images)" in text and r"$\approx$ not significantly worse" in text and r"p $\geq$ 0.05" in text
    )
    assert r"\resizebox{\linewidth}{!}{\begin{tabular}" in text and r"\end{tabular}}" in text
    assert not set("±★≈≥%") & set(text.replace(r"\%", ""))  # nothing raw that pdflatex would choke on
    assert "test_resnet" not in text
    body = text.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == 5 and all(
        row.count("&") == len(display_frame(leaderboard(RECORDS, "d")).columns) - 1 for row in body
    )


def test_markdown_explains_the_marks_and_both_uncertainties(tmp_path):
    md, _, _ = write_leaderboard(leaderboard(RECORDS, "d"), tmp_path, "d")
    text = md.read_text()
    assert "| 1 ★" in text
    assert "\n\n★ Pareto-optimal: no other row is at least as accurate and at least as fast" in text
    assert (
        "\n\nMetric cells: mean ± sample std over the n seeds (training variation). 95% CI: percentile bootstrap"
        in text
    )
    assert "\n\n≈ not significantly worse than rank 1 on balanced_accuracy: paired bootstrap" in text
    columns = list(display_frame(leaderboard(RECORDS, "d")).columns)
    assert columns.index(ci_column("balanced_accuracy")) == columns.index(seeds_column("balanced_accuracy")) + 1
    assert ci_column("accuracy") not in columns  # the CI column is the sort metric's only


# --- uncertainty: 95% CIs over test images and ties with rank 1, from saved probabilities ----------------

N = 400
LABELS = np.random.default_rng(0).integers(0, 2, N)


def probs_right_on(labels: np.ndarray, right: np.ndarray, k: int = 2) -> np.ndarray:
    """Confident predictions, right exactly where ``right`` is."""
    pred = np.where(right, labels, (labels + 1) % k)
    probs = np.full((labels.size, k), 0.2 / (k - 1))
    probs[np.arange(labels.size), pred] = 0.8
    return probs


def save_run(root: Path, backbone: str, seed: int, probs: np.ndarray, labels=LABELS, ids=None, dataset="d", **kw):
    """A record as `bench run` writes it, its test metrics computed from ``probs``, saved beside it."""
    k = probs.shape[1]
    counts = {"train": [30, 70, *[5] * (k - 2)], "val": [3] * k, "test": np.bincount(labels, minlength=k).tolist()}
    classes = tuple(f"c{c}" for c in range(k))
    metrics = compute_metrics(labels, probs, classes).to_dict()
    rec = record(backbone, seed, dataset=dataset, classes=classes, class_counts=counts, metrics=metrics, **kw)
    return write_run(rec, root, probs, labels, ids)


def model(quality: float, seed: int, labels: np.ndarray = LABELS) -> np.ndarray:
    return probs_right_on(labels, np.random.default_rng(100 + seed).random(labels.size) < quality)


def near_copy(probs: np.ndarray, labels: np.ndarray = LABELS) -> np.ndarray:
    """The same predictions with 3 hits turned into misses and 1 miss into a hit: 4 discordant images."""
    right = probs.argmax(1) == labels
    hits, misses = np.flatnonzero(right), np.flatnonzero(~right)
    right[hits[:3]], right[misses[:1]] = False, True
    return probs_right_on(labels, right)


@pytest.fixture
def results(tmp_path) -> Path:
    """best (~90%), twin (best on 4 images changed: indistinguishable), poor (~70%); two seeds each."""
    for seed in (0, 1):
        best = model(0.9, seed)
        save_run(tmp_path, "best", seed, best)
        save_run(tmp_path, "twin", seed, near_copy(best))
        save_run(tmp_path, "poor", seed, model(0.7, 10 + seed))
    return tmp_path


def saved(root: Path, backbone: str, dataset: str = "d") -> list[np.ndarray]:
    """The saved probabilities of ``backbone``'s seeds, in seed order."""
    return [np.load(p)["probs"] for p in sorted((root / "runs" / dataset / backbone).glob("*.probs.npz"))]


def test_clearly_better_is_not_tied_and_indistinguishable_is(results):
    table = leaderboard(load_records(results), "d", "accuracy").set_index("backbone")
    assert table["rank"].to_dict() == {"best": 1, "twin": 2, "poor": 3, "majority": 4}
    assert table["tied"].to_dict() == {"best": False, "twin": True, "poor": False, "majority": False}
    # The decision is the documented test: seed-averaged paired bootstrap against rank 1, 1000 resamples, seed 0.
    for other in ("twin", "poor"):
        expected = paired_bootstrap(LABELS, saved(results, "best"), saved(results, other), "accuracy", 1000, seed=0)
        assert table.loc[other, "p_vs_rank1"] == expected.p_value
    assert table.loc["twin", "p_vs_rank1"] >= 0.05 > table.loc["poor", "p_vs_rank1"]
    assert math.isnan(table.loc["best", "p_vs_rank1"])
    shown = display_frame(leaderboard(load_records(results), "d", "accuracy")).set_index("backbone")
    assert shown["rank"].to_dict() == {"best": "1 ★", "twin": "2 ≈", "poor": "3", "majority": "4"}


def test_tie_and_pareto_marks_combine(results):
    weaker_seed = min(saved(results, "best"), key=lambda p: np.mean(p.argmax(1) == LABELS))
    save_run(results, "fast_twin", 0, near_copy(weaker_seed))  # 2 images below best's weaker seed, and faster
    records = load_records(results)
    for r in records:
        if r.spec.backbone == "fast_twin":
            r.latency[0].ms_per_image_p50 = 0.5
    shown = display_frame(leaderboard(records, "d", "accuracy")).set_index("backbone")
    assert shown.loc["fast_twin", "rank"].endswith("≈ ★")


def test_ci_is_the_seed_averaged_percentile_bootstrap_over_test_images(results):
    """Rebuilt by hand: draw the images 1000 times (seed 0), score each seed, average the seeds, take 2.5-97.5%."""
    table = leaderboard(load_records(results), "d", "accuracy").set_index("backbone")
    idx = np.random.default_rng(0).integers(0, N, size=(1000, N))
    for backbone in ("best", "twin", "poor"):
        per_seed = [(p.argmax(1) == LABELS)[idx].mean(axis=1) for p in saved(results, backbone)]
        low, high = np.quantile(np.mean(per_seed, axis=0), [0.025, 0.975])
        assert table.loc[backbone, ["accuracy_ci95_low", "accuracy_ci95_high"]].tolist() == pytest.approx([low, high])


def test_majority_row_is_scored_on_the_same_images(tmp_path):
    """The baseline always says class 1 (the training majority): its accuracy on resamples is their share of 1s."""
    save_run(tmp_path, "best", 0, model(0.9, 0))
    table = leaderboard(load_records(tmp_path), "d", "accuracy").set_index("backbone")
    idx = np.random.default_rng(0).integers(0, N, size=(1000, N))
    low, high = np.quantile((LABELS == 1)[idx].mean(axis=1), [0.025, 0.975])
    assert table.loc["majority", ["accuracy_ci95_low", "accuracy_ci95_high"]].tolist() == pytest.approx([low, high])
    assert table.loc["majority", "auc_ci95_low"] == table.loc["majority", "auc_ci95_high"] == 0.5


@pytest.mark.parametrize("metric", HEADLINE_METRICS)
def test_ci_contains_the_mean_and_shrinks_with_more_test_images(tmp_path, metric):
    """Same model quality on 100 and on 1600 images: the CI must hold the score and be about 4x narrower."""
    widths = {}
    for dataset, n in (("small", 100), ("large", 1600)):
        labels = np.random.default_rng(n).integers(0, 3, n)
        for seed in (0, 1):
            right = np.random.default_rng([n, seed]).random(n) < 0.8
            save_run(tmp_path, "net", seed, probs_right_on(labels, right, 3), labels, dataset=dataset)
    for dataset in ("small", "large"):
        row = leaderboard(load_records(tmp_path), dataset, metric).set_index("backbone").loc["net"]
        assert row[f"{metric}_ci95_low"] <= row[f"{metric}_mean"] <= row[f"{metric}_ci95_high"]
        widths[dataset] = row[f"{metric}_ci95_high"] - row[f"{metric}_ci95_low"]
    assert 0 < widths["large"] < widths["small"] / 2


def test_tables_are_reproducible_byte_for_byte(results, tmp_path):
    """Fixed resampling seed: rebuilding (from records read in another order) writes identical files."""
    records = load_records(results)
    first = write_leaderboard(leaderboard(records, "d"), tmp_path / "one", "d")
    second = write_leaderboard(leaderboard(records[::-1], "d"), tmp_path / "two", "d")
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert not pd.read_csv(first[1])[["balanced_accuracy_ci95_low", "auc_ci95_high"]].isna().any().any()


def _remove(backbone: str, seed: int):
    def apply(root: Path) -> Path:
        (path,) = (root / "runs" / "d" / backbone).glob(f"scratch-r28-s{seed}-*.probs.npz")
        path.unlink()
        return path

    return apply


def _corrupt(backbone: str, seed: int, damage=lambda data: b"not an npz"):
    def apply(root: Path) -> Path:
        (path,) = (root / "runs" / "d" / backbone).glob(f"scratch-r28-s{seed}-*.probs.npz")
        path.write_bytes(damage(path.read_bytes()))
        return path

    return apply


NOT_COMPARED = "not compared with rank 1: rank 1 has no saved test probabilities"
# (case, damage to the results folder -> file named by the warning, expected note per backbone)
MISSING_CASES = [
    ("a seed of a runner-up missing", _remove("twin", 1), {"twin": NO_PROBS}),
    ("a seed of a runner-up unreadable", _corrupt("poor", 0), {"poor": NO_PROBS}),
    ("a seed of a runner-up empty", _corrupt("poor", 1, lambda data: b""), {"poor": NO_PROBS}),
    ("a seed of a runner-up truncated", _corrupt("twin", 0, lambda data: data[: len(data) // 2]), {"twin": NO_PROBS}),
    (
        "rank 1 missing",
        _remove("best", 0),
        {"best": NO_PROBS, "twin": NOT_COMPARED, "poor": NOT_COMPARED, "majority": NOT_COMPARED},
    ),
]


@pytest.mark.parametrize("damage, notes", [c[1:] for c in MISSING_CASES], ids=[c[0] for c in MISSING_CASES])
def test_missing_probabilities_mean_na_and_a_warning_not_a_crash(results, tmp_path, damage, notes):
    path = damage(results)
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        table = leaderboard(load_records(results), "d", "accuracy")
    by_backbone = table.set_index("backbone")
    expected = {"best": "", "twin": "", "poor": "", "majority": ""} | notes
    assert by_backbone["note"].to_dict() == expected
    for backbone in ("best", "twin", "poor", "majority"):
        has_ci = not np.isnan(by_backbone.loc[backbone, "accuracy_ci95_low"])
        assert has_ci == (expected[backbone] != NO_PROBS), backbone
    assert not by_backbone["tied"].drop("twin").any()
    assert by_backbone.loc["twin", "tied"] == (expected["twin"] == "")
    shown = display_frame(table).set_index("backbone")
    assert {b for b, cell in shown[ci_column("accuracy")].items() if cell == "n/a"} == {
        b for b, note in expected.items() if note == NO_PROBS
    }
    md = write_leaderboard(table, tmp_path / "tables", "d")[0].read_text()
    for backbone, note in notes.items():
        protocol = "baseline" if backbone == "majority" else "scratch"
        assert f"\n\n{backbone} ({protocol}, 28 px): {note}." in md
    assert str(results) not in md  # notes never hold a path: the Markdown must not depend on the folder


def test_rows_tested_on_other_images_get_a_ci_but_no_comparison(results):
    save_run(results, "elsewhere", 0, model(0.95, 0), ids=[f"other{i}" for i in range(N)])
    table = leaderboard(load_records(results), "d", "accuracy").set_index("backbone")
    assert table.index[0] == "elsewhere"  # rank 1 here, but not on the same images as the rest
    assert table.loc["best", "note"] == table.loc["twin", "note"] == "not compared with rank 1: tested on other images"
    assert not table["tied"].any() and table["p_vs_rank1"].drop("majority").isna().all()
    assert table.loc["majority", "p_vs_rank1"] < 0.05  # the baseline is scored on rank 1's images
    assert not table[["accuracy_ci95_low", "accuracy_ci95_high"]].isna().any().any()


def test_seeds_tested_on_different_images_have_no_ci(results):
    save_run(results, "mixed", 0, model(0.8, 0))
    save_run(results, "mixed", 1, model(0.8, 1), ids=[f"other{i}" for i in range(N)])
    row = leaderboard(load_records(results), "d", "accuracy").set_index("backbone").loc["mixed"]
    assert row["note"] == "its seeds were tested on different images: 95% CI n/a"
    assert np.isnan(row["accuracy_ci95_low"]) and not row["tied"]


def test_majority_tied_with_rank_1_raises_the_alarm(tmp_path):
    """A backbone right on just 2 more images than always predicting the majority: no evidence it learned."""
    labels = np.r_[np.zeros(80, dtype=int), np.ones(120, dtype=int)]
    right = labels == 1
    right[:2] = True
    save_run(tmp_path, "weak", 0, probs_right_on(labels, right), labels)
    table = leaderboard(load_records(tmp_path), "d", "accuracy")
    assert table.set_index("backbone")["tied"].to_dict() == {"weak": False, "majority": True}
    md = write_leaderboard(table, tmp_path / "tables", "d")[0].read_text()
    assert "| 2 ≈" in md and "Alarm: the majority baseline is ≈ rank 1" in md
    save_run(tmp_path, "strong", 0, model(0.9, 0, labels), labels)
    table = leaderboard(load_records(tmp_path), "d", "accuracy").set_index("backbone")
    assert not table.loc["majority", "tied"]


# --- a row is one experiment --------------------------------------------------------------------------


def test_runs_that_differ_only_in_epochs_are_two_rows_with_their_own_seed_counts(tmp_path):
    """The 2-epoch sweep's three seeds and a 1-epoch run of seed 0: never one row of n=4 with seed 0 twice."""
    records = [record("resnet18", s, 0.8 + s / 100) for s in (0, 1, 2)] + [record("resnet18", 0, 0.6, epochs=1)]
    table = leaderboard(records, "d", "accuracy")
    rows = table[table["backbone"] == "resnet18"].set_index("protocol")
    assert rows["n"].to_dict() == {"scratch e2": 3, "scratch e1": 1}
    assert rows.loc["scratch e1", "accuracy_mean"] == pytest.approx(0.6)
    assert rows.loc["scratch e2", "accuracy_mean"] == pytest.approx(0.81)
    md, csv, tex = write_leaderboard(table, tmp_path, "d")
    assert "| scratch e1 " in md.read_text() and "| scratch e2 " in md.read_text()
    assert set(pd.read_csv(csv)["protocol"]) >= {"scratch e1", "scratch e2"} and "scratch e1" in tex.read_text()
    assert rich_rows(table) >= {"scratch e1", "scratch e2"}


def test_runs_that_differ_only_in_training_fraction_are_rows_labelled_by_it():
    """A data-efficiency sweep's fractions (bench.data.fractions) are rows of their own, named by their share."""
    records = [record("resnet18", s, 0.8, train_fraction=f) for s in (0, 1) for f in (0.1, 1.0)]
    rows = leaderboard(records, "d", "accuracy").query("backbone == 'resnet18'").set_index("protocol")
    assert rows["n"].to_dict() == {"scratch f0.1": 2, "scratch f1": 2}


def rich_rows(table: pd.DataFrame) -> set[str]:
    from bench.reports.render import rich_table

    rt = rich_table(table, "t")
    return set(next(c for c in rt.columns if c.header == "protocol")._cells)


def test_other_differences_get_a_short_hash_and_a_legend(tmp_path):
    records = [record("resnet18", 0, 0.8), record("resnet18", 0, 0.7, lr=1e-4)]
    table = leaderboard(records, "d", "accuracy")
    labels = set(table.loc[table["backbone"] == "resnet18", "protocol"])
    assert len(labels) == 2 and all(re.fullmatch(r"scratch #[0-9a-f]{6}", label) for label in labels)
    md = write_leaderboard(table, tmp_path, "d")[0].read_text()
    for label in labels:
        assert re.search(rf"Row label resnet18 {label}: protocol\.phases\.0\.lr = 0\.00(1|01)\.", md), md


def test_one_seed_recorded_twice_is_used_once_and_said_so():
    """Another torch version re-ran seed 0 (another key, same experiment): the newer record is the one used."""
    old = record("resnet18", 0, 0.70, torch_version="2.13.0", created="2026-01-01T00:00:00+00:00")
    new = record("resnet18", 0, 0.80, created="2026-02-01T00:00:00+00:00")
    table = leaderboard([old, new, record("resnet18", 1, 0.84)], "d", "accuracy").set_index("backbone")
    assert old.key != new.key and table.loc["resnet18", "n"] == 2
    assert table.loc["resnet18", "accuracy_mean"] == pytest.approx(0.82)
    assert (
        "seed 0: 2 records of this experiment (other versions or device); the newest is used"
        in table.loc["resnet18", "note"]
    )


def test_a_noisy_latency_is_not_in_the_mean_and_the_notes_say_so(tmp_path):
    records = [
        record("resnet18", 0, ms=2.0),
        record("resnet18", 1, ms=3.0),
        record("resnet18", 2, ms=140.5, noisy=True),
    ]
    table = leaderboard(records, "d", "accuracy")
    row = table.set_index("backbone").loc["resnet18"]
    assert row["latency_ms"] == pytest.approx(2.5) and row["latency_noisy"] == 1
    assert row["latency_ms_std"] == pytest.approx(np.std([2.0, 3.0], ddof=1))
    assert (row["latency_ms_min"], row["latency_ms_max"]) == (2.0, 3.0)
    md = write_leaderboard(table, tmp_path, "d")[0].read_text()
    assert display_frame(table).set_index("backbone").loc["resnet18", "latency b1 (ms/img)"] == "2.50"
    assert "resnet18 (scratch, 28 px): latency of seed 2 is noisy (cv 0.4 > 0.1): left out of the latency mean" in md
    every = leaderboard([record("vgg16", 0, ms=9.0, noisy=True)], "d").set_index("backbone").loc["vgg16"]
    assert math.isnan(every["latency_ms"]) and "latency of every seed is noisy" in every["note"]


def test_fp32_and_auto_rows_each_get_the_ci_of_their_own_probabilities(tmp_path):
    """Looked up by experiment: the fp32 row has a CI, and the auto row's does not pool the fp32 seeds."""
    for seed in (0, 1):
        save_run(tmp_path, "resnet18", seed, model(0.9, seed))
        save_run(tmp_path, "resnet18", seed, model(0.6, 20 + seed), precision="fp32")
    table = leaderboard(load_records(tmp_path), "d", "accuracy").set_index("protocol")
    idx = np.random.default_rng(0).integers(0, N, size=(1000, N))
    for protocol, quality, offset in (("scratch", 0.9, 0), ("scratch@fp32", 0.6, 20)):
        per_seed = [(model(quality, offset + s).argmax(1) == LABELS)[idx].mean(axis=1) for s in (0, 1)]
        low, high = np.quantile(np.mean(per_seed, axis=0), [0.025, 0.975])
        assert table.loc[protocol, ["accuracy_ci95_low", "accuracy_ci95_high"]].tolist() == pytest.approx([low, high])
        assert table.loc[protocol, "n"] == 2 and table.loc[protocol, "note"] == ""


def test_a_source_column_appears_where_rows_differ_in_their_initial_weights():
    scratch = [record("resnet18", seed=s, acc=0.7) for s in (0, 1)]
    transferred = [record("resnet18", seed=s, acc=0.8) for s in (0, 1)]
    for r in transferred:
        r.identity = dataclasses.replace(
            r.identity, weights=InitialWeights("run", run="ham10000/resnet18/scratch", experiment="e" * 64)
        )
    table = leaderboard(scratch + transferred, "d")
    assert list(table["source"]) == ["run:ham10000/resnet18/scratch", "none", ""]  # best first; majority: none
    assert list(display_frame(table).columns[:4]) == ["rank", "backbone", "protocol", "source"]
    assert "source" not in leaderboard(scratch, "d")  # one kind of weights: no column
    for r in transferred:  # none vs ImageNet is what the protocols already say (pretrained = false / true)
        r.identity = dataclasses.replace(r.identity, weights=InitialWeights("default-pretrained"))
    assert "source" not in leaderboard(scratch + transferred, "d")
