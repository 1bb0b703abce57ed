"""Migrating schema-1 records: rewritten under the key a fresh plan gives them, unless their data changed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from bench.files import write_json
from bench.runs.migrate import main, migrate_results
from bench.runs.record import load_records, probs_path
from bench.runs.runner import run
from bench.runs.spec import RunSpec
from bench.runs.sweep import plan_runs

SPEC = RunSpec("test_resnet", "tiny", "scratch", epochs=1)


def _as_schema1(results, record) -> tuple:
    """The record as the schema-1 runner wrote it: no identity, another key and file name."""
    old = {k: v for k, v in json.loads(record.path.read_text()).items() if k != "identity"}
    old |= {"schema": 1, "key": "1" * 64}
    old_path = record.path.with_name(SPEC.stem("1" * 64) + ".json")
    write_json(old_path, old)
    shutil.move(probs_path(record.path), probs_path(old_path))
    record.path.unlink()
    return old_path, record.path


def test_a_schema1_record_is_rewritten_under_its_planned_key(project, tmp_path):
    results = tmp_path / "copy"
    made = run(SPEC, results, torch.device("cpu"))
    old_path, new_path = _as_schema1(results, made)
    assert plan_runs([SPEC], results)[0].status is None  # not found under its old name: it would be rerun

    report = migrate_results(results)
    assert report.migrated == [(old_path, new_path)] and not report.kept
    assert not old_path.exists() and not probs_path(old_path).exists() and probs_path(new_path).exists()
    (migrated,) = load_records(results)
    assert migrated.schema == 2 and migrated.key == made.key and migrated.identity == made.identity
    assert plan_runs([SPEC], results)[0].status == "ok"  # found again: skipped, not rerun
    assert migrate_results(results).current == 1  # a second pass leaves it alone


def test_a_record_of_changed_data_is_kept_and_said_so(project, tmp_path, capsys):
    results = tmp_path / "copy"
    old_path, _ = _as_schema1(results, run(SPEC, results, torch.device("cpu")))
    arrays = dict(np.load(project / "data" / "tiny.npz"))
    arrays["test_labels"] = 1 - arrays["test_labels"]
    np.savez_compressed(project / "data" / "tiny.npz", **arrays)

    assert main([str(results)]) == 0
    out = capsys.readouterr().out
    assert f"kept: {old_path}: its data fingerprint" in out and "is not the current data's" in out
    assert "0 migrated, 1 kept" in out and old_path.exists() and probs_path(old_path).exists()
