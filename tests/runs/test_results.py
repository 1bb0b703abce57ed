"""Run records: keys, atomic writes, round trips, and what is (not) read back as a result."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from bench.errors import ConfigError, ResultsError
from bench.runs.record import (
    PRECISIONS,
    SCHEMA_VERSION,
    RunSpec,
    atomic_write_bytes,
    config_key,
    load_records,
    read_probs,
    write_json,
    write_probs,
)


def test_config_key_is_order_independent_and_sensitive():
    a = {"spec": {"seed": 0, "backbone": "resnet18"}, "x": [1, 2]}
    b = {"x": [1, 2], "spec": {"backbone": "resnet18", "seed": 0}}
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key({**a, "x": [2, 1]})


@pytest.mark.parametrize(
    "precision, stem",
    [
        ("auto", "scratch-r28-s2-abcdef012345"),  # as before precision existed: old record files keep their names
        ("fp32", "scratch-r28-s2-fp32-abcdef012345"),
        ("bf16", "scratch-r28-s2-bf16-abcdef012345"),
    ],
)
def test_stem_is_readable_and_keyed(precision, stem):
    spec = RunSpec("resnet18", "pneumoniamnist", "scratch", seed=2, resolution=28, precision=precision)
    assert spec.stem("abcdef0123456789") == stem


@pytest.mark.parametrize(
    "spec, stored",
    [
        (RunSpec("resnet18", "d", "scratch"), {}),  # auto is not stored: the dict (and key) of older records
        (RunSpec("resnet18", "d", "scratch", precision="fp32"), {"precision": "fp32"}),
        (RunSpec("resnet18", "d", "staged", epochs=(1, 2, 3), precision="fp16"), {"precision": "fp16"}),
    ],
)
def test_spec_stores_precision_only_when_asked_for(spec, stored):
    as_dict = spec.to_dict()
    assert {k: v for k, v in as_dict.items() if k == "precision"} == stored
    assert RunSpec.from_dict(json.loads(json.dumps(as_dict))) == spec  # through a record's JSON and back


def test_precision_is_part_of_the_key_unless_auto():
    keys = {p: config_key({"spec": RunSpec("resnet18", "d", "scratch", precision=p).to_dict()}) for p in PRECISIONS}
    assert len(set(keys.values())) == len(PRECISIONS)
    legacy = {k: v for k, v in RunSpec("resnet18", "d", "scratch").to_dict().items() if k != "precision"}
    assert keys["auto"] == config_key({"spec": legacy})


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="precision 'fp8' is not one of auto, fp32, bf16, fp16"):
        RunSpec("resnet18", "d", "scratch", precision="fp8")


def test_loaded_records_say_their_precision(tmp_path):
    """Records store precision only when not auto (older ones never): loading fills in auto."""
    for name, precision in (("old", "auto"), ("new", "fp32")):
        spec = RunSpec("resnet18", "d", "scratch", precision=precision).to_dict()
        write_json(tmp_path / "runs" / "d" / f"{name}.json", {"schema": SCHEMA_VERSION, "spec": spec})
    loaded = {Path(r["_path"]).stem: r["spec"]["precision"] for r in load_records(tmp_path)}
    assert loaded == {"old": "auto", "new": "fp32"}


def test_record_round_trip(tmp_path):
    record = {
        "schema": SCHEMA_VERSION,
        "key": "k",
        "status": "ok",
        "test": {"auc": 0.9, "nan": math.nan},
        "spec": RunSpec("resnet18", "d", "scratch").to_dict(),
    }
    write_json(tmp_path / "runs" / "d" / "r.json", record)
    (loaded,) = load_records(tmp_path)
    assert loaded["test"] == {"auc": 0.9, "nan": None}  # JSON has no NaN: null, documented
    assert loaded["spec"]["backbone"] == "resnet18" and loaded["_path"].endswith("r.json")


def test_probs_round_trip(tmp_path):
    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    write_probs(tmp_path / "p.npz", ["a", "b"], np.array([1, 0]), probs)
    back = read_probs(tmp_path / "p.npz")
    assert back["ids"].tolist() == ["a", "b"] and np.array_equal(back["probs"], probs)


def test_half_written_temp_files_are_not_records(tmp_path):
    runs = tmp_path / "runs" / "d"
    runs.mkdir(parents=True)
    (runs / ".r.json.x1y2.tmp").write_text('{"schema": 1, "stat')
    assert load_records(tmp_path) == []


def test_corrupt_record_is_named(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "broken.json").write_text("{not json")
    with pytest.raises(ResultsError, match=r"broken.json: not a readable run record"):
        load_records(tmp_path)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_text("old")

    def disk_full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(ResultsError, match=r"cannot write .*r.json: No space left on device"):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_unwritable_path_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a folder")
    with pytest.raises(ResultsError, match=r"cannot write .*file/r.json"):
        atomic_write_bytes(blocker / "r.json", b"x")


def test_wrong_schema_is_refused(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "old.json").write_text(json.dumps({"schema": 0}))
    with pytest.raises(ResultsError, match="schema 0, expected"):
        load_records(tmp_path)
