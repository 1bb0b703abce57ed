"""The ``robustness`` and ``external`` column groups and the eval-set export columns, on records with hand-set eval
sets whose figures are computed here by hand (MedMNIST-C's mean BE, relative BE and rBE)."""

from __future__ import annotations

import pytest
from factories import make_record

from bench.evaluation.eval_results import EXTERNAL_PART, EvalSetResult
from bench.reports.column_groups import parse_columns
from bench.reports.columns import column_notes, display_columns
from bench.reports.leaderboard import leaderboard
from bench.reports.robustness_columns import run_eval_set_columns
from bench.reports.runs_table import runs_table


def corrupted(noise: tuple[float, float], blur: tuple[float, float]) -> EvalSetResult:
    """A corrupted set's block: balanced accuracy of each corruption at severities 1 and 3."""
    parts = {
        "noise@1": {"balanced_accuracy": noise[0]}, "noise@3": {"balanced_accuracy": noise[1]},
        "blur@1": {"balanced_accuracy": blur[0]}, "blur@3": {"balanced_accuracy": blur[1]},
    }  # fmt: skip
    return EvalSetResult("corrupted", "corrupted", ["a", "b"], "b", 100, "x", parts, reference="resnet18")


def external(bacc: float, auc: float) -> EvalSetResult:
    parts = {EXTERNAL_PART: {"balanced_accuracy": bacc, "auc": auc}}
    removed = {"checked": 50, "removed": 5}
    return EvalSetResult("external:e", "external", ["a", "b"], "b", 45, "x", parts, dataset="e", removed=removed)


def records():
    """resnet18 (the reference): noise error 0.5, blur 0.3, clean 0.2 (test balanced accuracy 0.8), both seeds.
    b1: seed 0 noise 0.3, blur 0.2 (mean BE 0.25); seed 1 noise 0.4, blur 0.2 (0.30); clean 0.15."""
    out = []
    for seed in (0, 1):
        ref = make_record("resnet18", seed=seed, acc=0.9)
        ref.eval_sets = {"corrupted": corrupted((0.6, 0.4), (0.8, 0.6))}
        b1 = make_record("b1", seed=seed, acc=0.95)
        b1.eval_sets = {
            "corrupted": corrupted((0.8, 0.6), (0.9, 0.7)) if seed == 0 else corrupted((0.7, 0.5), (0.8, 0.8)),
            "external:e": external(0.7, 0.8) if seed == 0 else external(0.6, 0.9),
        }
        out += [ref, b1, make_record("plain", seed=seed, acc=0.7)]
    return out


def test_robustness_cells_are_medmnist_cs_figures_relative_to_the_reference_row():
    table = leaderboard(records(), "d", columns="robustness,external").set_index("backbone")
    b1 = table.loc["b1"]
    assert b1["corrupted_be_mean"] == pytest.approx(0.275) and b1["corrupted_be_std"] == pytest.approx(0.05 / 2**0.5)
    # seed-averaged errors: noise 0.35, blur 0.2 against the reference's 0.5 and 0.3
    assert b1["corrupted_rel_be"] == pytest.approx((0.35 / 0.5 + 0.2 / 0.3) / 2)
    assert b1["corrupted_rbe"] == pytest.approx(((0.35 - 0.15) / (0.5 - 0.2) + (0.2 - 0.15) / (0.3 - 0.2)) / 2)
    assert b1["corrupted_reference"] == "resnet18 (scratch)"
    assert table.loc["resnet18", "corrupted_rel_be"] == pytest.approx(1.0)
    assert table.loc["plain", "robustness_note"] == "no corrupted eval set"
    assert b1["ext_external:e_balanced_accuracy_mean"] == pytest.approx(0.65)
    assert b1["ext_external:e_auc_mean"] == pytest.approx(0.85) and b1["ext_external:e_removed"] == "5 of 50"


def test_display_cells_and_notes_say_what_they_are():
    table = leaderboard(records(), "d", columns=["robustness", "external"])
    cells = display_columns(table)
    row = list(table["backbone"]).index("b1")
    assert cells["mean BE (corruptions)"][row] == "0.275 ± 0.035" and cells["rel. BE"][row] == "0.683"
    assert cells["external:e bal. acc."][row] == "0.650 ± 0.071" and cells["external:e removed"][row] == "5 of 50"
    plain = list(table["backbone"]).index("plain")
    assert cells["external:e AUC"][plain] == "n/a" and cells["rBE"][plain] == "n/a"
    notes = " ".join(column_notes(table))
    assert "Reference: resnet18 (scratch)" in notes and "no corrupted eval set (plain (scratch))" in notes


def test_a_row_without_its_reference_is_na_with_the_reason():
    without = [r for r in records() if r.spec.backbone != "resnet18"]
    table = leaderboard(without, "d", columns="robustness").set_index("backbone")
    assert table.loc["b1", "robustness_note"] == "no resnet18 row with a corrupted eval set to be relative to"
    assert table.loc["b1", "corrupted_be_mean"] == pytest.approx(0.275)


def test_the_groups_are_declared_once():
    assert parse_columns("robustness,external") == ("robustness", "external")


def test_export_has_a_column_per_eval_set_figure():
    rows = runs_table(records()).set_index(["backbone", "seed"])
    assert rows.loc[("b1", 0), "evalset_corrupted_mean_balanced_error"] == pytest.approx(0.25)
    assert rows.loc[("b1", 1), "evalset_corrupted_be_noise"] == pytest.approx(0.4)
    assert rows.loc[("b1", 0), "evalset_external-e_auc"] == pytest.approx(0.8)
    assert run_eval_set_columns(make_record("plain")) == {}
