"""The migration: committed records' test blocks recomputed from their saved scores, tested on copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from test_recompute_records import recompute

from bench.evaluation.rescore import main, rescore, scored_records

REPO = Path(__file__).resolve().parents[2]
# Saturated float32 scores: renormalising its rows (as records made before the table did) moved AUC by 8e-3.
STALE = next((REPO / "results").glob("reproduction/runs/pneumoniamnist/resnet18_cifar_stem/medmnist-v2-r28-s2-*.json"))
STALE = str(STALE.relative_to(REPO / "results").with_suffix(""))
MULTICLASS = next((REPO / "results").glob("reproduction/runs/dermamnist/resnet18/medmnist-v2-r28-s0-*.json"))
MULTICLASS = str(MULTICLASS.relative_to(REPO / "results").with_suffix(""))


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A results folder holding one stale record, a multiclass one, and a latency file (not a run record)."""
    for stem in (STALE, MULTICLASS):
        target = tmp_path / "results" / stem
        target.parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".json", ".probs.npz"):
            shutil.copy(REPO / "results" / f"{stem}{suffix}", target.with_suffix(suffix))
    _as_made_before_the_table(tmp_path / "results" / f"{STALE}.json")
    (tmp_path / "results" / "latency").mkdir()
    (tmp_path / "results" / "latency" / "latency-1.json").write_text('{"schema": 1, "records": []}')
    return tmp_path / "results"


def _as_made_before_the_table(path: Path) -> None:
    """The record as it was first stored: AUC of renormalised rows, none of the keys the table added."""
    record = json.loads(path.read_text())
    with np.load(path.with_suffix(".probs.npz")) as saved:
        labels, probs = saved["labels"], saved["probs"]
    renormalised = probs / probs.sum(axis=1, keepdims=True)
    record["test"]["auc"] = roc_auc_score(labels, renormalised[:, 1])
    for key in ("positive", "f1", "balanced_accuracy_isic", "argmax_ties"):
        record["test"].pop(key, None)
    path.write_text(json.dumps(record, indent=1, sort_keys=True))


def test_rescore_brings_the_record_in_line_and_touches_nothing_else(copy: Path) -> None:
    path = copy / f"{STALE}.json"
    before = json.loads(path.read_text())
    assert [p.split(":")[0] for p in recompute(path)] == ["auc"]
    done = rescore(path)
    after = json.loads(path.read_text())
    assert recompute(path) == []
    assert {k: v for k, v in after.items() if k != "test"} == {k: v for k, v in before.items() if k != "test"}
    assert after["test"]["positive"] == "pneumonia" and after["test"]["auc"] < before["test"]["auc"] - 5e-3
    assert set(done.changed) == {"auc", "positive", "f1", "balanced_accuracy_isic", "argmax_ties"}
    assert rescore(path).changed == ()  # a second pass finds nothing to do, and leaves the bytes alone


def test_the_command_rescores_every_run_record_under_the_folder(copy: Path, capsys) -> None:
    assert len(scored_records(copy)) == 2  # the latency file has no scores beside it
    assert main([str(copy)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith(f"rescored 2 record(s) under {copy}: ") and out[-1][-9:] in ("1 changed", "2 changed")
    assert f"{copy / STALE}.json: argmax_ties, auc, balanced_accuracy_isic, f1, positive" in out
    assert all(recompute(p) == [] for p in scored_records(copy))
    assert main([str(copy)]) == 0 and capsys.readouterr().out.strip().endswith(": 0 changed")


def test_the_command_refuses_a_missing_folder_in_one_line(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'nope'}: no such results folder"
