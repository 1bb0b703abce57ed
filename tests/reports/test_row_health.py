"""A leaderboard names a training failure instead of ranking it: a row that did not learn on validation is marked,
left off the Pareto front and out of the tie test, and counted under the table; a row that ran out of epochs while
still improving is marked and counted, and stays ranked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from factories import make_record, metric_values, write_run

from bench.evaluation.values import MetricValues, compute_metrics
from bench.reports.leaderboard import leaderboard
from bench.reports.render import display_frame, table_notes, write_leaderboard
from bench.runs.record import load_records

N = 400
LABELS = np.random.default_rng(0).integers(0, 2, N)
LEARNED_VAL = metric_values({"balanced_accuracy": 0.8, "confusion_matrix": [[40, 10], [10, 40]]}, ("a", "b"))
COLLAPSED_VAL = metric_values({"balanced_accuracy": 0.5, "confusion_matrix": [[50, 0], [50, 0]]}, ("a", "b"))


def probs_right_on(right: np.ndarray) -> np.ndarray:
    pred = np.where(right, LABELS, 1 - LABELS)
    probs = np.full((N, 2), 0.2)
    probs[np.arange(N), pred] = 0.8
    return probs


def good(seed: int, quality: float = 0.9) -> np.ndarray:
    return probs_right_on(np.random.default_rng(100 + seed).random(N) < quality)


def near_copy(probs: np.ndarray) -> np.ndarray:
    """The same predictions with 4 images changed: indistinguishable from ``probs`` by the paired test."""
    right = probs.argmax(1) == LABELS
    hits, misses = np.flatnonzero(right), np.flatnonzero(~right)
    right[hits[:3]], right[misses[:1]] = False, True
    return probs_right_on(right)


def save(root: Path, backbone: str, seed: int, probs: np.ndarray, val: MetricValues, ms: float, val_losses=None):
    counts = {"train": [30, 70], "val": [50, 50], "test": np.bincount(LABELS, minlength=2).tolist()}
    metrics = compute_metrics(LABELS, probs, ("a", "b"))
    record = make_record(backbone, seed, class_counts=counts, metrics=metrics, ms=ms, epochs=3)
    record.val = val
    if val_losses is not None:
        for epoch, loss in zip(record.history, val_losses, strict=True):
            epoch.val_loss = loss
    write_run(record, root, probs, LABELS)


@pytest.fixture
def results(tmp_path) -> Path:
    """best; twin (≈ best); slow (still improving at its last epoch); partial (one of two seeds collapsed); and
    failed: collapsed on validation in both seeds, yet fastest and ≈ best on test, so it would be ★ and ≈ if ranked."""
    for seed in (0, 1):
        best = good(seed)
        save(tmp_path, "best", seed, best, LEARNED_VAL, ms=10)
        save(tmp_path, "twin", seed, near_copy(best), LEARNED_VAL, ms=12)
        save(tmp_path, "slow", seed, good(10 + seed, 0.75), LEARNED_VAL, ms=20, val_losses=[0.9, 0.8, 0.7])
        save(tmp_path, "partial", seed, good(20 + seed, 0.7), COLLAPSED_VAL if seed else LEARNED_VAL, ms=30)
        save(tmp_path, "failed", seed, near_copy(best), COLLAPSED_VAL, ms=1)
    return tmp_path


def test_a_row_that_did_not_learn_is_marked_not_ranked(results):
    table = leaderboard(load_records(results), "d").set_index("backbone")
    assert not table.loc["failed", "ranked"] and np.isnan(table.loc["failed", "rank"])
    assert table.index[-1] == "failed"  # below every ranked row, the majority baseline included
    assert table.loc["failed", "did_not_learn"] == 2
    assert "predicts one class (a) for all 100 validation images" in table.loc["failed", "note"]
    shown = display_frame(leaderboard(load_records(results), "d")).set_index("backbone")["rank"]
    assert shown["failed"] == "✗ did not learn"


def test_it_is_off_the_pareto_front_and_out_of_the_tie_test(results):
    table = leaderboard(load_records(results), "d").set_index("backbone")
    assert not table.loc["failed", "pareto"] and not table.loc["failed", "tied"]
    assert np.isnan(table.loc["failed", "p_vs_rank1"])
    assert table.loc["best", "pareto"]  # the fastest ranked row at the top: the front starts there
    assert table.loc["twin", "tied"]  # the same test images, ranked: still tested
    assert not np.isnan(table.loc["failed", "balanced_accuracy_ci95_low"])  # its CI is still shown


def test_partial_and_not_converged_rows_stay_ranked_and_are_marked(results):
    table = leaderboard(load_records(results), "d")
    shown = display_frame(table).set_index("backbone")["rank"]
    ranked = table.set_index("backbone")
    assert ranked.loc["partial", "ranked"] and ranked.loc["partial", "did_not_learn"] == 1
    assert shown["partial"].endswith(" ✗1/2") and shown["slow"].endswith(" ↗")
    assert ranked.loc["slow", "not_converged"] == 2 and not ranked.loc["best", "not_converged"]
    assert (
        "not converged in 2 of 2 seeds (seeds 0, 1: the last epoch kept, validation loss still improving)"
        in (ranked.loc["slow", "note"])
    )


def test_the_notes_count_them(results):
    notes = table_notes(leaderboard(load_records(results), "d"))
    assert any(n.startswith("✗ did not learn: 1 of 5 rows did not learn on validation: failed.") for n in notes)
    assert any("one-sided permutation test of validation balanced accuracy against 2000 shuffles" in n for n in notes)
    assert any(n.startswith("✗k/n: k of the row's n seeds did not learn") and "partial 1/2" in n for n in notes)
    assert any(n.startswith("↗ not converged: 1 of 5 rows") for n in notes)


def test_every_row_learned_is_said_too(results):
    records = [r for r in load_records(results) if r.spec.backbone in ("best", "twin")]
    notes = table_notes(leaderboard(records, "d"))
    assert any(n.startswith("Every row learned on validation") for n in notes)


def test_rows_without_a_validation_matrix_say_nothing():
    notes = table_notes(leaderboard([make_record("resnet18", 0)], "d"))
    assert not any("learn" in n or "converged" in n for n in notes)


def test_latex_typesets_the_marks(results, tmp_path):
    (md, csv, tex) = write_leaderboard(leaderboard(load_records(results), "d"), tmp_path / "out", "d")
    assert "✗ did not learn" in md.read_text()
    assert r"$\times$ did not learn" in tex.read_text() and r"$\nearrow$" in tex.read_text()
    assert "✗" not in tex.read_text() and "↗" not in tex.read_text()
    assert "did_not_learn" in csv.read_text().splitlines()[0]
