"""One run end to end: the test split is looked at once, after selection, and runs are reproducible."""

from __future__ import annotations

import json

import torch

import bench.runner
import bench.train
from bench.results import RunSpec
from bench.runner import run
from bench.train import EpochLog

SPEC = RunSpec(backbone="test_resnet", dataset="tiny", protocol="scratch", seed=0, epochs=2)
CPU = torch.device("cpu")
VOLATILE = {"created", "timings_s", "latency", "environment", "_path"}  # wall-clock facts, not results


def test_test_split_is_predicted_once_after_model_selection(project, tmp_path, monkeypatch):
    calls = []
    real = bench.train.predict

    def recording(model, split, *args, **kwargs):
        calls.append(split.ids[0].split("/")[0])  # npz ids are "<split>/<index>"
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(bench.train, "predict", recording)
    monkeypatch.setattr(bench.runner, "predict", recording)
    record = run(SPEC, tmp_path / "results", CPU)
    assert record["status"] == "ok"
    assert calls == ["val", "val", "test"], calls  # one validation pass per epoch, then test once


def _stable(record: dict) -> str:
    return json.dumps({k: v for k, v in record.items() if k not in VOLATILE}, sort_keys=True)


def test_same_seed_same_record(project, tmp_path):
    """Determinism on the CPU: two runs of one config agree on every field but timings."""
    first = run(SPEC, tmp_path / "a", CPU)
    second = run(SPEC, tmp_path / "b", CPU)
    assert first["status"] == second["status"] == "ok"
    for record in (first, second):
        for epoch in record["history"]:
            for timing in EpochLog.TIMINGS:
                del epoch[timing]
    assert _stable(first) == _stable(second)  # JSON, so NaN (e.g. an undefined precision) equals NaN


def test_other_seed_other_record(project, tmp_path):
    first = run(SPEC, tmp_path / "a", CPU)
    other = run(RunSpec(**{**SPEC.to_dict(), "seed": 1}), tmp_path / "b", CPU)
    assert first["key"] != other["key"] and first["test"] != other["test"]


def test_record_has_provenance(project, tmp_path):
    record = run(SPEC, tmp_path / "r", CPU)
    for field in ("backbone", "dataset", "test", "val", "history", "selection", "environment", "versions"):
        assert record[field], field
