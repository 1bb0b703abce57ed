"""Run records: keys, atomic writes, round trips, and what is (not) read back as a result."""

from __future__ import annotations

import json
import math
import os

import pytest
from factories import make_record

from bench.errors import ConfigError, ResultsError
from bench.files import atomic_write_bytes, write_json
from bench.precision import PRECISIONS
from bench.runs.identity import run_key
from bench.runs.record import SCHEMA_VERSION, RunRecord, load_records, probs_path, read_record, record_path, save_record
from bench.runs.spec import RunSpec


@pytest.mark.parametrize(
    "precision, stem",
    [
        ("auto", "scratch-r28-s2-abcdef012345"),
        ("fp32", "scratch-r28-s2-fp32-abcdef012345"),
        ("bf16", "scratch-r28-s2-bf16-abcdef012345"),
    ],
)
def test_stem_is_readable_and_keyed(precision, stem):
    spec = RunSpec("resnet18", "pneumoniamnist", "scratch", seed=2, resolution=28, precision=precision)
    assert spec.stem("abcdef0123456789") == stem


def test_one_path_rule_for_a_record_and_its_probabilities(tmp_path):
    record = make_record()
    path = record_path(tmp_path, record.spec, record.key)
    assert path == tmp_path / "runs" / "d" / "resnet18" / f"scratch-r28-s0-{record.key[:12]}.json"
    assert save_record(record, tmp_path) == path == record.path
    assert probs_path(path) == record.probs_path() == path.with_suffix(".probs.npz")


@pytest.mark.parametrize(
    "spec, stored",
    [
        (RunSpec("resnet18", "d", "scratch"), {}),  # auto is not stored, as records always had it
        (RunSpec("resnet18", "d", "scratch", precision="fp32"), {"precision": "fp32"}),
        (RunSpec("resnet18", "d", "staged", epochs=(1, 2, 3), precision="fp16"), {"precision": "fp16"}),
    ],
)
def test_spec_stores_precision_only_when_asked_for(spec, stored):
    as_dict = spec.to_dict()
    assert {k: v for k, v in as_dict.items() if k == "precision"} == stored
    assert RunSpec.from_dict(json.loads(json.dumps(as_dict))) == spec  # through a record's JSON and back


def test_precision_is_part_of_the_key():
    identities = {p: make_record(precision=p).identity for p in PRECISIONS}
    keys = {run_key(identity, 0, {}) for identity in identities.values()}
    assert len(keys) == len(PRECISIONS)


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="precision 'fp8' is not one of auto, fp32, bf16, fp16"):
        RunSpec("resnet18", "d", "scratch", precision="fp8")


def test_loaded_records_say_their_precision(tmp_path):
    """Records store precision only when not auto: loading fills in auto."""
    for precision in ("auto", "fp32"):
        save_record(make_record(precision=precision), tmp_path)
    assert sorted(r.spec.precision for r in load_records(tmp_path)) == ["auto", "fp32"]


def test_record_round_trip(tmp_path):
    record = make_record(metrics={"auc": 0.9, "nan": math.nan})
    path = save_record(record, tmp_path)
    stored = json.loads(path.read_text())
    assert stored["schema"] == SCHEMA_VERSION == 3 and stored["identity"] == record.identity.to_dict()
    assert "protocol" not in stored  # schema 3 stores it once, in the identity
    assert {k: stored["test"][k] for k in ("auc", "nan")} == {"auc": 0.9, "nan": None}  # JSON has no NaN: null
    (loaded,) = load_records(tmp_path)
    assert repr(loaded.test) == repr(record.test) and math.isnan(loaded.score("nan"))  # typed and back: NaN again
    assert repr(loaded.history) == repr(record.history) and loaded.latency == record.latency
    assert loaded.path == path and loaded.spec == record.spec and loaded.experiment == record.experiment
    assert loaded.to_json() == stored


def test_unknown_fields_survive_a_rewrite(tmp_path):
    path = save_record(make_record(), tmp_path)
    path.write_text(json.dumps({**json.loads(path.read_text()), "annotation": "checked by hand"}))
    save_record(read_record(path), tmp_path)
    assert json.loads(path.read_text())["annotation"] == "checked by hand"


def test_a_schema_this_version_does_not_read_is_skipped_naming_it(tmp_path):
    """Schema 1 (before the identity was stored) is no longer read: skipped with a warning naming file and schema."""
    old = make_record().to_json() | {"schema": 1}
    write_json(tmp_path / "runs" / "d" / "resnet18" / "old.json", old)
    with pytest.warns(UserWarning, match=r"old.json: not a run record .*record schema 1, this version reads \(2, 3\)"):
        assert load_records(tmp_path) == []


def test_half_written_temp_files_are_not_records(tmp_path):
    runs = tmp_path / "runs" / "d"
    runs.mkdir(parents=True)
    (runs / ".r.json.x1y2.tmp").write_text('{"schema": 1, "stat')
    assert load_records(tmp_path) == []


@pytest.mark.parametrize(
    "content, why",
    [
        ("{not json", "not a readable run record"),
        ("[1, 2]", "not a run record \\(a JSON list\\)"),
        (json.dumps({"schema": 0}), "record schema 0"),
        (json.dumps({"schema": 2, "key": "k"}), "not a run record \\(KeyError"),
        (json.dumps({"latency": []}), "record schema None"),  # another tool's JSON
    ],
)
def test_foreign_or_damaged_json_is_skipped_and_named(tmp_path, content, why):
    save_record(make_record(), tmp_path)
    (tmp_path / "runs" / "broken.json").write_text(content)
    with pytest.warns(UserWarning, match=f"skipped: .*broken.json: .*{why}"):
        records = load_records(tmp_path)
    assert len(records) == 1 and isinstance(records[0], RunRecord)


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
