"""``bench leaderboard --columns``: the optional column groups on the command line, and a wrong group's one line."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from console import run_bench
from factories import make_record, write_run
from scipy.special import softmax


@pytest.fixture
def results(tmp_path):
    """Two backbones, two seeds each, on dataset ``d``, with saved test probabilities (no validation ones)."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * 40 + [1] * 60)
    for i, name in enumerate(("resnet18", "vgg16")):
        for seed in (0, 1):
            probs = softmax(rng.normal(0, 1, size=(100, 2)) + (1 + i) * np.eye(2)[labels], axis=1)
            write_run(make_record(name, seed, acc=0.7 + 0.1 * i), tmp_path / "results", probs, labels)
    return tmp_path / "results"


def test_columns_add_calibration_and_subgroups_beside_the_default_table(monkeypatch, capsys, results):
    out = run_bench(
        monkeypatch, capsys, "leaderboard", "--results-dir", str(results), "--columns", "calibration,subgroups"
    )
    assert out.status == 0, out.stderr
    for header in ("ECE (15 bins)", "ECE after temp. scaling", "worst-group bal. acc.", "Brier", "NLL"):
        assert header in out.stdout
    assert " ‡ " in out.stdout and "cross-fitted on test halves: no saved validation probabilities" in out.stdout
    boards = results / "leaderboards"
    assert (boards / "d+calibration+subgroups.md").is_file() and not (boards / "d.md").exists()
    assert (results / "plots" / "d-reliability.png").is_file()
    md = (boards / "d+calibration+subgroups.md").read_text()
    assert "ECE (15 bins)" in md and "Calibration (seeds: mean ± std" in md


def test_columns_reach_the_csv_for_scripts(monkeypatch, capsys, results):
    out = run_bench(
        monkeypatch, capsys, "leaderboard", "--results-dir", str(results), "--columns", "calibration", "--format", "csv"
    )
    assert out.status == 0, out.stderr
    table = pd.read_csv(io.StringIO(out.stdout))
    assert {"ece_mean", "ece_std", "brier_mean", "nll_mean", "ece_scaled_mean", "calibration_note"} <= set(
        table.columns
    )
    assert table.loc[table["backbone"] != "majority", "ece_mean"].notna().all()


def test_default_columns_are_unchanged(monkeypatch, capsys, results):
    out = run_bench(monkeypatch, capsys, "leaderboard", "--results-dir", str(results))
    assert out.status == 0 and "ECE" not in out.stdout and (results / "leaderboards" / "d.md").is_file()


def test_an_unknown_column_group_is_one_line_naming_it_and_the_valid_ones(monkeypatch, capsys, results):
    out = run_bench(
        monkeypatch, capsys, "leaderboard", "--results-dir", str(results), "--columns", "calibration,fairness"
    )
    assert out.status == 2
    valid = "calibration, subgroups, robustness, external"
    assert out.stderr.strip() == f"error: unknown column group 'fairness'; valid: {valid}"
    assert out.stdout == "" and not (results / "leaderboards").exists()
