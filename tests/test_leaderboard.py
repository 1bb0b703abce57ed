"""Leaderboard aggregation from records: means, stds, n, failures, majority row, ordering, files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.errors import ConfigError
from bench.leaderboard import display_frame, latency_devices, leaderboard, majority_row, write_leaderboard


def record(backbone="resnet18", seed=0, acc=0.8, status="ok", protocol="scratch", device="cpu-x", dataset="d"):
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
            "latency": [{"batch_size": 1, "ms_per_image_p50": 2.0 + seed, "fingerprint": {"cpu_model": device}}],
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
    md, csv = write_leaderboard(leaderboard(RECORDS, "d"), tmp_path, "d")
    assert "| resnet18" in md.read_text() and "±" in md.read_text()
    assert set(pd.read_csv(csv)["backbone"]) == {"resnet18", "vgg16", "densenet121", "majority"}
