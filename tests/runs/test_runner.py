"""One run end to end: the test split is looked at once, after selection, and runs are reproducible."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.runs.runner
import bench.train.engine
import bench.train.loop
from bench.data.entries import get_dataset_entry
from bench.data.identity import DataIdentity
from bench.evaluation.scores import TestScores, softmax64
from bench.evaluation.values import compute_metrics
from bench.files import write_json
from bench.runs.identity import digest, run_key
from bench.runs.record import RunRecord, read_record, record_path
from bench.runs.resolve import experiment_identity, resolve
from bench.runs.runner import run
from bench.runs.spec import RunSpec
from bench.train.history import EpochLog

REPO = Path(__file__).resolve().parents[2]
# Every committed record: CI's regression gate, `bench check` and `bench run`'s skip logic find them by key.
COMMITTED = sorted((REPO / "results").glob("**/runs/*/*/*.json"))

SPEC = RunSpec(backbone="test_resnet", dataset="tiny", protocol="scratch", seed=0, epochs=2)
CPU = torch.device("cpu")
VOLATILE = {"created", "timings_s", "latency", "environment"}  # wall-clock facts, not results


def test_test_split_is_predicted_once_after_model_selection(project, tmp_path, monkeypatch):
    calls = []
    real = bench.train.loop.predict

    def recording(model, split, *args, **kwargs):
        calls.append(split.ids[0].split("/")[0])  # npz ids are "<split>/<index>"
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(bench.train.loop, "predict", recording)
    monkeypatch.setattr(bench.runs.runner, "predict", recording)
    record = run(SPEC, tmp_path / "results", CPU)
    assert record.status == "ok"
    # one validation pass per epoch, the selected model's validation scores (saved for calibration), then test once
    assert calls == ["val", "val", "val", "test"], calls


def test_the_selected_models_validation_scores_are_saved_beside_the_test_ones(project, tmp_path):
    """Temperature scaling is fitted on them, never on test: they are the model that was tested, so they give
    the validation metrics the record selected it by."""
    record = run(SPEC, tmp_path / "results", CPU)
    saved = TestScores.load(record.probs_path())
    assert saved.val is not None and all(i.startswith("val/") for i in saved.val.ids)
    assert saved.val.logits.dtype == np.float32 and np.array_equal(saved.val.probs, softmax64(saved.val.logits))
    val = compute_metrics(saved.val.labels, saved.val.probs, record.dataset.classes)
    assert val.score("balanced_accuracy") == pytest.approx(record.val.score("balanced_accuracy"), abs=1e-12)


def _stable(record: RunRecord) -> str:
    return json.dumps({k: v for k, v in record.to_json().items() if k not in VOLATILE}, sort_keys=True)


def test_same_seed_same_record(project, tmp_path):
    """Determinism on the CPU: two runs of one config agree on every field but timings."""
    first = run(SPEC, tmp_path / "a", CPU)
    second = run(SPEC, tmp_path / "b", CPU)
    assert first.status == second.status == "ok"
    for record in (first, second):
        record.history = [dataclasses.replace(h, **dict.fromkeys(EpochLog.TIMINGS, 0.0)) for h in record.history]
    assert _stable(first) == _stable(second)  # JSON, so NaN (e.g. an undefined precision) equals NaN


def test_other_seed_other_record(project, tmp_path):
    first = run(SPEC, tmp_path / "a", CPU)
    other = run(RunSpec(**{**SPEC.to_dict(), "seed": 1}), tmp_path / "b", CPU)
    assert first.key != other.key and first.test != other.test
    assert first.experiment == other.experiment  # seeds of one experiment


def test_record_has_provenance(project, tmp_path):
    record = run(SPEC, tmp_path / "r", CPU)
    for field in ("backbone", "dataset", "test", "val", "history", "selection", "environment", "versions", "identity"):
        assert getattr(record, field), field
    stored = read_record(record.path)
    assert stored.to_json() == json.loads(record.path.read_text())  # typed and back, field for field
    assert stored.key == record.key and stored.identity == record.identity and stored.history[0].epoch == 1


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO / "results")))
def test_committed_records_keep_their_keys(path, monkeypatch):
    """A committed record's spec still resolves to its stored identity and key, and so to its own file name.

    The key hashes the torch, timm and harness versions, and records made elsewhere (a GPU's) have others:
    each is keyed with the versions it was made with. The data part is taken from the record (whether the data
    files still give it is what planning checks), so what is checked is everything else in the identity.
    """
    record = read_record(path)
    monkeypatch.setenv("BENCH_HOME", str(REPO))
    spec = record.spec
    data = record.identity.data
    stored = DataIdentity(get_dataset_entry(spec.dataset), data.fingerprint, data.pixels_sha256)
    assert experiment_identity(spec, stored) == record.identity
    assert run_key(record.identity, spec.seed, record.versions, spec.source_key) == record.key
    assert record_path(path.parents[3], spec, record.key) == path


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO / "results")))
def test_committed_records_re_serialise_byte_identical(path, tmp_path):
    """Read into typed parts and written back, every committed record is its file byte for byte: the typed record
    loses nothing, and its experiment id is still the digest of the identity the file stores."""
    stored = path.read_bytes()
    record = read_record(path)
    write_json(tmp_path / "again.json", record.to_json())
    assert (tmp_path / "again.json").read_bytes() == stored
    assert record.experiment == digest(json.loads(stored)["identity"])


@pytest.mark.parametrize("path", [p for p in COMMITTED if b'"schema": 2' in p.read_bytes()], ids=str)
def test_a_schema2_records_trained_protocol_is_what_its_identity_and_search_give(path):
    """Schema 2 stored the trained protocol twice; the one :attr:`RunRecord.protocol` derives agrees with the
    top-level copy on every field that copy has (later fields are at their defaults)."""
    record = read_record(path)
    derived, stored = json.loads(json.dumps(record.protocol.to_dict())), record.extra["protocol"]
    assert {k: derived[k] for k in stored if k not in ("phases", "augment", "search")} == {
        k: v for k, v in stored.items() if k not in ("phases", "augment", "search")
    }
    assert [{k: p[k] for k in s} for p, s in zip(derived["phases"], stored["phases"], strict=True)] == stored["phases"]


def test_committed_records_are_found():
    """The records the gates compare with are among them (an empty parameter list would pass unseen)."""
    assert {p.relative_to(REPO / "results").parts[0] for p in COMMITTED} >= {"runs", "reference"}


@pytest.mark.parametrize(
    "precision, error",
    [
        ("fp32", None),  # the CPU's own precision: it runs, under a key and file of its own
        ("bf16", "ConfigError: --precision bf16: this CPU has no native bf16"),  # e.g. a Ray worker's older CPU
        ("fp16", "ConfigError: --precision fp16 needs a CUDA device, not cpu"),
    ],
)
def test_a_requested_precision_is_recorded_or_refused(precision, error, project, tmp_path, monkeypatch):
    monkeypatch.setattr(bench.train.engine, "cpu_native_bf16", lambda: False)
    spec = RunSpec(**{**SPEC.to_dict(), "epochs": 1, "precision": precision})
    record = run(spec, tmp_path / "results", CPU)
    assert record.spec.precision == precision and record.status == ("failed" if error else "ok")
    assert record.key != resolve(dataclasses.replace(spec, precision="auto")).key
    assert record_path(tmp_path / "results", spec, record.key).name.startswith(f"scratch-r28-s0-{precision}-")
    if error:
        assert record.error.startswith(error) and "\n" not in record.error
    else:
        assert record.engine.amp is None and record.test


def test_a_fraction_run_trains_on_the_same_stratified_share_whatever_its_seed(project, tmp_path):
    """The record's train class counts are the subset's, val and test the whole split's, and every seed (and so every
    backbone: the subset uses neither) names the same images (bench.data.fractions)."""
    half = [run(dataclasses.replace(SPEC, epochs=1, seed=s, train_fraction=0.5), tmp_path, CPU) for s in (0, 1)]
    whole = run(dataclasses.replace(SPEC, epochs=1), tmp_path, CPU)
    assert all(r.ok for r in [*half, whole])
    full = whole.dataset.class_counts
    for record in half:
        counts = record.dataset.class_counts
        assert counts["train"] == [max(1, int(n * 0.5 + 0.5)) for n in full["train"]]
        assert counts["val"] == full["val"] and counts["test"] == full["test"]
        assert record.dataset.audit["train_subset"]["images"] == sum(counts["train"])
        assert record.path.name.startswith("scratch-r28-s") and "-f0.5-" in record.path.name
    assert half[0].dataset.audit["train_subset"]["ids_sha256"] == half[1].dataset.audit["train_subset"]["ids_sha256"]
    assert "train_subset" not in whole.dataset.audit and half[0].experiment == half[1].experiment != whole.experiment
