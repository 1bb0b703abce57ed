"""``bench export``'s table: one flat row per record, the same in CSV and Parquet as in memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from factories import make_record, metric_values, write_run

from bench.errors import ConfigError
from bench.reports.export import export
from bench.reports.runs_table import run_row, runs_table, write_table


def results(tmp_path):
    """Three runs under ``tmp_path/results``: two seeds of resnet18 (one with saved scores) and a failed vgg16."""
    folder = tmp_path / "results"
    labels = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
    write_run(make_record("resnet18", 0, 0.8, ms=3.5), folder, probs=probs, labels=labels)
    write_run(make_record("resnet18", 1, 0.9, ms=4.0), folder)
    write_run(make_record("vgg16", 0, status="failed"), folder)
    return folder


def test_a_row_is_one_run_with_its_identity_metrics_latency_and_versions():
    record = make_record("resnet18", 2, 0.8, ms=3.5, epochs=4, device="EPYC", torch_version="2.9.0")
    row = run_row(record)
    assert (row["key"], row["experiment"], row["dataset"], row["backbone"]) == (
        record.key,
        record.experiment,
        "d",
        "resnet18",
    )
    assert (row["protocol"], row["seed"], row["epochs"], row["resolution"], row["precision"]) == (
        "scratch",
        2,
        4,
        28,
        "auto",
    )
    assert row["test_accuracy"] == 0.8 and row["test_auc"] == pytest.approx(0.9)
    assert row["latency_b1_ms_p50"] == 3.5 and row["latency_device"] == "EPYC" and row["device"] == "EPYC"
    assert row["params_m"] == 11.0 and row["gmacs"] == 0.034
    assert row["version_torch"] == "2.9.0" and row["version_timm"] == "1.0.31" and row["created"] == record.created


def test_a_row_says_the_epochs_used_and_the_runs_training_health():
    record = make_record("resnet18", 0, epochs=5)
    record.history = record.history[:3]  # early stopping: 3 of the 5 epochs at most
    record.val = metric_values({"confusion_matrix": [[49, 0], [41, 0]]}, ("a", "b"))
    row = run_row(record)
    assert (row["epochs"], row["epochs_run"]) == (5, 3)
    assert row["learned"] == "did not learn" and row["learned_p"] == 1.0
    assert row["learned_reason"] == "predicts one class (a) for all 90 validation images"
    assert row["converged"] == "converged" and row["loss_alarm"] is None
    assert "learned" not in run_row(make_record("vgg16", 0, status="failed"))


def test_the_table_is_every_record_sorted_failed_ones_with_their_error(tmp_path):
    table = export(results(tmp_path)).table
    assert list(zip(table["backbone"], table["seed"], table["status"], strict=True)) == [
        ("resnet18", 0, "ok"), ("resnet18", 1, "ok"), ("vgg16", 0, "failed"),
    ]  # fmt: skip
    assert table["error"].iloc[2].startswith("DivergedError") and pd.isna(table["test_accuracy"].iloc[2])
    assert table["experiment"].iloc[0] == table["experiment"].iloc[1] != table["experiment"].iloc[2]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_read_back_as_the_table(tmp_path, suffix):
    folder = results(tmp_path)
    done = export(folder, tmp_path / f"runs{suffix}")
    read = pd.read_csv(done.out) if suffix == ".csv" else pd.read_parquet(done.out)
    assert list(read.columns) == list(done.table.columns) and len(read) == 3
    assert read["key"].tolist() == done.table["key"].tolist()
    np.testing.assert_allclose(read["test_accuracy"], done.table["test_accuracy"].astype(float))
    assert read["latency_b1_ms_p50"].iloc[0] == 3.5


def test_another_suffix_or_an_empty_folder_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"--out .*runs.xlsx: the table is written as .csv or .parquet"):
        export(results(tmp_path), tmp_path / "runs.xlsx")
    with pytest.raises(ConfigError, match="no run records under"):
        export(tmp_path / "empty")
    with pytest.raises(ConfigError, match="runs.json"):
        write_table(runs_table([make_record()]), tmp_path / "runs.json")
