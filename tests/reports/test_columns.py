"""Optional leaderboard column groups: calibration and subgroups cells, seed-aggregated, n/a with the reason,
and the committed HAM10000 records against the library oracles."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from factories import add_sex_dataset, make_record, write_run
from fairlearn.metrics import MetricFrame
from scipy.special import log_softmax, softmax
from sklearn.metrics import balanced_accuracy_score

from bench.errors import ConfigError
from bench.evaluation.calibration import CROSS_FITTED, NO_VALIDATION, cross_fitted_logits, ece, fit_temperature
from bench.evaluation.scores import TestScores
from bench.reports.column_groups import COLUMN_GROUP_NAMES, parse_columns
from bench.reports.columns import column_notes, display_columns
from bench.reports.leaderboard import dataset_experiments, leaderboard
from bench.reports.render import write_leaderboard
from bench.reports.subgroup_columns import NO_METADATA, GroupTables, subgroup_cells
from bench.runs.record import load_records, probs_path

REPO = Path(__file__).resolve().parents[2]
N = 120


def _scores(seed: int, with_val: bool) -> TestScores:
    rng = np.random.default_rng(seed)
    labels = np.array([0] * 48 + [1] * 72)
    logits = (rng.normal(0, 1, size=(N, 2)) + 2.0 * np.eye(2)[labels]).astype(np.float32)
    val = None
    if with_val:
        val_labels = rng.integers(0, 2, size=40)
        val_logits = (rng.normal(0, 1, size=(40, 2)) + 3.0 * np.eye(2)[val_labels]).astype(np.float32)
        val = TestScores.from_logits([f"v{i}" for i in range(40)], val_labels, val_logits)
    return TestScores.from_logits([f"img{i}" for i in range(N)], labels, logits, val)


def _write(results: Path, backbone: str, with_val: bool, dataset: str = "d") -> list[TestScores]:
    saved = []
    for seed in (0, 1, 2):
        record = write_run(make_record(backbone, seed, dataset=dataset, class_counts=COUNTS), results)
        scores = _scores(seed + 10 * len(backbone), with_val)
        scores.save(probs_path(record.path))
        saved.append(scores)
    return saved


COUNTS = {"train": [30, 70], "val": [3, 7], "test": [48, 72]}


def test_column_groups_are_parsed_and_an_unknown_one_is_named():
    assert parse_columns(None) == parse_columns("") == ()
    assert parse_columns("subgroups, calibration,subgroups") == ("subgroups", "calibration")
    assert parse_columns(["calibration"]) == ("calibration",)
    assert COLUMN_GROUP_NAMES == ("calibration", "subgroups", "robustness", "external")
    valid = "calibration, subgroups, robustness, external"
    with pytest.raises(ConfigError, match=f"unknown column group 'fairness'; valid: {valid}"):
        parse_columns("calibration,fairness")


def test_calibration_cells_are_seed_means_of_the_saved_scores(tmp_path):
    saved = _write(tmp_path / "r", "resnet18", with_val=True)
    table = leaderboard(load_records(tmp_path / "r"), "d", columns="calibration")
    row = table[table["backbone"] == "resnet18"].iloc[0]
    per_seed = [ece(s.labels, s.probs) for s in saved]
    assert row["ece_mean"] == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert row["ece_std"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)
    temperatures = [fit_temperature(s.val.labels, s.val.logits) for s in saved]  # validation only
    assert row["temperature_mean"] == pytest.approx(np.mean(temperatures), abs=1e-12)
    scaled = [
        ece(s.labels, softmax(s.logits.astype(np.float64) / t, axis=1))
        for s, t in zip(saved, temperatures, strict=True)
    ]
    assert row["ece_scaled_mean"] == pytest.approx(np.mean(scaled), abs=1e-12)
    assert row["calibration_note"] == ""
    assert table.attrs["columns"] == ["calibration"]


def test_rows_without_validation_scores_are_cross_fitted_on_test_and_marked(tmp_path):
    saved = _write(tmp_path / "r", "resnet18", with_val=False)
    _write(tmp_path / "r", "vgg16", with_val=True)
    table = leaderboard(load_records(tmp_path / "r"), "d", columns="calibration")
    row = table[table["backbone"] == "resnet18"].iloc[0]
    crossed = []
    for s in saved:
        z = log_softmax(s.logits.astype(np.float64), axis=1)  # what calibrate scales
        crossed.append(ece(s.labels, softmax(cross_fitted_logits(s.labels, z)[0], axis=1)))
    assert row["ece_scaled_mean"] == pytest.approx(np.mean(crossed), abs=1e-12)
    shown = pd.DataFrame(display_columns(table)).assign(backbone=table["backbone"]).set_index("backbone")
    assert re.fullmatch(r"\d\.\d{3} ± \d\.\d{3} ‡", shown.loc["resnet18", "ECE after temp. scaling"])
    assert re.fullmatch(r"\d\.\d{3} ± \d\.\d{3}", shown.loc["vgg16", "ECE after temp. scaling"])  # on validation
    assert shown.loc["majority", "ECE (15 bins)"] == ""  # the baseline is a reference line, not a model
    notes = column_notes(table)
    assert f"Calibration: ‡ temperature {CROSS_FITTED}: {NO_VALIDATION} (resnet18 (scratch))." in notes


def test_a_row_without_saved_scores_is_n_a_everywhere_and_says_so(tmp_path):
    for seed in (0, 1):
        write_run(make_record("resnet18", seed), tmp_path / "r")
    table = leaderboard(load_records(tmp_path / "r"), "d", columns="calibration,subgroups")
    row = table[table["backbone"] == "resnet18"].iloc[0]
    assert np.isnan(row["ece_mean"]) and "no saved test probabilities" in row["calibration_note"]
    assert (
        np.isnan(row["worst_group_balanced_accuracy_mean"]) and "no saved test probabilities" in row["subgroups_note"]
    )


def test_a_dataset_with_metadata_gets_worst_group_and_gap(project, tmp_path):
    sex = np.array(["female" if i % 2 else "male" for i in range(N)])
    add_sex_dataset(project, list(sex))
    saved = _write(tmp_path / "r", "resnet18", with_val=False, dataset="meta")
    records = load_records(tmp_path / "r")
    table = leaderboard(records, "meta", columns=["subgroups"])
    row = table[table["backbone"] == "resnet18"].iloc[0]
    per_seed = [
        MetricFrame(
            metrics=balanced_accuracy_score, y_true=s.labels, y_pred=s.probs.argmax(1), sensitive_features=sex
        ).by_group
        for s in saved
    ]
    means = pd.concat(per_seed, axis=1).mean(axis=1)
    assert row["worst_group"] == f"sex {means.idxmin()}" and row["worst_group_n"] == N // 2
    assert row["worst_group_balanced_accuracy_mean"] == pytest.approx(means.min(), abs=1e-9)
    gaps = [s.max() - s.min() for s in per_seed]
    assert row["largest_gap_mean"] == pytest.approx(np.mean(gaps), abs=1e-9) and row["largest_gap_attribute"] == "sex"
    detail = table.attrs["subgroups"]
    assert detail["group"].tolist() == ["female", "male"] or detail["group"].tolist() == ["male", "female"]
    written = write_leaderboard(table, tmp_path / "boards", "meta")
    assert [p.name for p in written] == ["meta+subgroups.md", "meta+subgroups.csv", "meta+subgroups.tex"]


def test_a_dataset_without_metadata_says_so(tmp_path):
    _write(tmp_path / "r", "resnet18", with_val=False)
    table = leaderboard(load_records(tmp_path / "r"), "d", columns="subgroups")
    row = table[table["backbone"] == "resnet18"].iloc[0]
    assert row["subgroups_note"].startswith("no dataset entry") or row["subgroups_note"] == NO_METADATA


HAM = REPO / "results" / "mission" / "runs" / "ham10000"


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # sklearn, on the small sites
@pytest.mark.skipif(not HAM.is_dir() or not (REPO / "data" / "ham10000").is_dir(), reason="no HAM10000 records/data")
def test_committed_ham10000_worst_group_is_fairlearns(monkeypatch):
    """The done criterion's numbers: a committed HAM10000 row's worst group, from fairlearn per seed, to 1e-9."""
    monkeypatch.setenv("BENCH_HOME", str(REPO))
    records = [r for r in load_records(REPO / "results" / "mission") if r.spec.dataset == "ham10000"]
    (experiment,) = [e for e in dataset_experiments(records, "ham10000") if e.backbone == "resnet18"]
    saved = [TestScores.load(r.probs_path()) for r in experiment.ok]
    cells, detail = subgroup_cells(experiment, saved, GroupTables())
    metadata = pd.read_csv(REPO / "data" / "ham10000" / "HAM10000_metadata.csv").set_index("image_id")
    site = metadata.loc[saved[0].ids, "localization"].to_numpy()
    group = cells["worst_group"].removeprefix("site ")
    per_seed = [
        MetricFrame(
            metrics=balanced_accuracy_score, y_true=s.labels, y_pred=s.probs.argmax(1), sensitive_features=site
        ).by_group[group]
        for s in saved
    ]
    assert cells["worst_group"].startswith("site ")
    assert cells["worst_group_balanced_accuracy_mean"] == pytest.approx(np.mean(per_seed), abs=1e-9)
    assert cells["worst_group_n"] == int((site == group).sum())
    assert (detail["comparable"] | (detail["note"] != "")).all()  # every group kept, each not compared says why


@pytest.mark.parametrize(
    "columns, headline",
    [
        ("calibration", ["ECE (15 bins)", "ECE after temp. scaling"]),
        ("subgroups", ["worst-group bal. acc."]),
        ("calibration,subgroups", ["ECE (15 bins)", "ECE after temp. scaling", "worst-group bal. acc."]),
    ],
)
def test_a_narrow_terminal_keeps_the_columns_asked_for_before_the_ci_and_the_latency(tmp_path, columns, headline):
    """At 80 columns a table asked for with --columns shows what was asked (the CI and latency give way), or, where
    even that does not fit, prints one block per row, which holds every column."""
    import io

    from rich.console import Console

    from bench.cli.output import show
    from bench.reports.columns import headline_columns
    from bench.reports.render import rich_table

    _write(tmp_path / "r", "tf_efficientnet_lite0", with_val=False)
    table = leaderboard(load_records(tmp_path / "r"), "d", columns=columns)
    assert headline_columns(table) == headline
    console = Console(file=io.StringIO(), force_terminal=True, width=80, color_system=None)
    show(rich_table(table, "d"), out=console)
    text = console.file.getvalue()
    assert all(header.split(" (")[0].split(" ")[0] in text for header in headline)
    assert max(len(line) for line in text.splitlines()) <= 80
    shown = pd.DataFrame(display_columns(table)).assign(backbone=table["backbone"]).set_index("backbone")
    assert (
        shown.loc["tf_efficientnet_lite0", "ECE after temp. scaling" if "calibration" in columns else headline[0]]
        in text
    )
