"""One run end to end: the test split is looked at once, after selection, and runs are reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import bench.runs.runner
import bench.train.loop
from bench.runs.record import RunSpec, config_key
from bench.runs.runner import record_path, resolve, run
from bench.train.loop import EpochLog

REPO = Path(__file__).resolve().parents[2]
# Every committed record: CI's regression gate, `bench check` and `bench run`'s skip logic find them by key.
COMMITTED = sorted((REPO / "results").glob("**/runs/*/*/*.json"))

SPEC = RunSpec(backbone="test_resnet", dataset="tiny", protocol="scratch", seed=0, epochs=2)
CPU = torch.device("cpu")
VOLATILE = {"created", "timings_s", "latency", "environment", "_path"}  # wall-clock facts, not results


def test_test_split_is_predicted_once_after_model_selection(project, tmp_path, monkeypatch):
    calls = []
    real = bench.train.loop.predict

    def recording(model, split, *args, **kwargs):
        calls.append(split.ids[0].split("/")[0])  # npz ids are "<split>/<index>"
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(bench.train.loop, "predict", recording)
    monkeypatch.setattr(bench.runs.runner, "predict", recording)
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


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO / "results")))
def test_committed_records_keep_their_keys(path, monkeypatch):
    """A committed record's spec still resolves to its stored key, and so to its own file name.

    The key hashes the torch, timm and harness versions, and records made elsewhere (a GPU's) have others:
    each is resolved with the versions it was made with, so what is checked is everything else in the key.
    """
    record = json.loads(path.read_text())
    monkeypatch.setenv("BENCH_HOME", str(REPO))
    monkeypatch.setattr(bench.runs.runner, "versions", lambda: record["environment"]["versions"])
    spec = RunSpec.from_dict(record["spec"])
    key = config_key(resolve(spec))
    assert key == record["key"]
    assert record_path(path.parents[3], spec, key) == path


def test_committed_records_are_found():
    """The records the gates compare with are among them (an empty parameter list would pass unseen)."""
    assert {p.relative_to(REPO / "results").parts[0] for p in COMMITTED} >= {"runs", "reference"}


@pytest.mark.parametrize(
    "precision, error",
    [
        ("fp32", None),  # the CPU's own precision: it runs, under a key and file of its own
        ("bf16", "ConfigError: --precision bf16 needs a CUDA device, not cpu"),  # e.g. a Ray worker without a GPU
        ("fp16", "ConfigError: --precision fp16 needs a CUDA device, not cpu"),
    ],
)
def test_a_requested_precision_is_recorded_or_refused(precision, error, project, tmp_path):
    spec = RunSpec(**{**SPEC.to_dict(), "epochs": 1, "precision": precision})
    record = run(spec, tmp_path / "results", CPU)
    assert record["spec"]["precision"] == precision and record["status"] == ("failed" if error else "ok")
    assert record["key"] != config_key(resolve(RunSpec(**{**SPEC.to_dict(), "epochs": 1})))
    assert record_path(tmp_path / "results", spec, record["key"]).name.startswith(f"scratch-r28-s0-{precision}-")
    if error:
        assert record["error"].startswith(error) and "\n" not in record["error"]
    else:
        assert record["engine"]["amp"] is None and record["test"]
