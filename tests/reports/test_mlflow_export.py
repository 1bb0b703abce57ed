"""Records logged into a real local MLflow file store, read back through ``MlflowClient``: no mock."""

from __future__ import annotations

import json

import numpy as np
import pytest
from factories import make_record, write_run

from bench.errors import ResultsError
from bench.reports.export import export
from bench.reports.mlflow_export import KEY_TAG, curves, log_runs
from bench.runs.record import save_record

mlflow = pytest.importorskip("mlflow", reason='MLflow is an optional extra: pip install -e ".[mlflow]"')
from mlflow.tracking import MlflowClient  # noqa: E402

LABELS = np.array([0, 1, 1, 0, 1])
PROBS = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return f"file:{tmp_path / 'mlruns'}"


def runs_of(store: str) -> dict:
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("backbone-bench")
    return {run.data.tags[KEY_TAG]: run for run in client.search_runs([experiment.experiment_id])}


def test_a_runs_metrics_params_tags_and_artifacts_round_trip(tmp_path, store):
    folder = tmp_path / "results"
    record = write_run(make_record("resnet18", 1, 0.8, ms=3.5, epochs=3), folder, probs=PROBS, labels=LABELS)
    failed = write_run(make_record("vgg16", 0, status="failed"), folder)
    table = export(folder, mlflow=store).table
    runs = runs_of(store)
    assert set(runs) == {record.key, failed.key}
    run = runs[record.key]
    row = table.set_index("key").loc[record.key]
    for name in ("test_accuracy", "test_balanced_accuracy", "test_macro_f1", "test_auc", "latency_b1_ms_p50", "gmacs"):
        assert run.data.metrics[name] == pytest.approx(row[name])
    assert run.data.params["backbone"] == "resnet18" and run.data.params["seed"] == "1"
    assert run.data.params["epochs"] == "3" and run.data.params["dataset"] == "d"
    assert run.data.tags["bench_experiment"] == record.experiment and run.data.tags["version_torch"] == "2.14.1"
    assert run.info.status == "FINISHED" and runs[failed.key].info.status == "FAILED"
    client = MlflowClient(tracking_uri=store)
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [(m.step, round(m.value, 6)) for m in history] == [(1, 0.6), (2, 0.5), (3, 0.4)]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names == {"record.json", "confusion_matrix.json", "curves.json", record.path.with_suffix(".probs.npz").name}
    local = client.download_artifacts(run.info.run_id, "confusion_matrix.json", str(tmp_path))
    assert json.loads(open(local).read())["counts"] == record.test["confusion_matrix"]


def test_a_re_export_adds_nothing_and_a_changed_record_replaces_its_run(tmp_path, store):
    folder = tmp_path / "results"
    record = write_run(make_record("resnet18", 0, 0.8), folder)
    write_run(make_record("resnet18", 1, 0.7), folder)
    first = export(folder, mlflow=store).mlflow
    again = export(folder, mlflow=store).mlflow
    assert (len(first.logged), len(again.logged), len(again.unchanged)) == (2, 0, 2)
    assert len(runs_of(store)) == 2
    record.test["accuracy"] = 0.95  # the run redone under its key: the record file changes
    save_record(record, folder)
    third = export(folder, mlflow=store).mlflow
    assert (len(third.logged), len(third.replaced), len(third.unchanged)) == (0, 1, 1)
    runs = runs_of(store)
    assert len(runs) == 2 and runs[record.key].data.metrics["test_accuracy"] == 0.95


def test_a_damaged_probs_file_is_left_out_with_a_warning_naming_it(tmp_path, store):
    """Was: left out without a word. The run is still logged, with its record and confusion matrix."""
    record = write_run(make_record("resnet18", 1, 0.8), tmp_path / "results", probs=PROBS, labels=LABELS)
    damaged = record.path.with_suffix(".probs.npz")
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.warns(UserWarning, match=f"{damaged}: unreadable test scores file, damaged .*without it"):
        export(tmp_path / "results", mlflow=store)
    run = runs_of(store)[record.key]
    names = {a.path for a in MlflowClient(tracking_uri=store).list_artifacts(run.info.run_id)}
    assert names == {"record.json", "confusion_matrix.json"}


def test_curves_are_the_positive_class_for_binary_and_one_vs_rest_otherwise():
    from bench.evaluation.scores import TestScores

    binary = curves(TestScores(np.arange(5).astype(str), LABELS, PROBS), ["a", "b"], "b")
    assert list(binary) == ["b"]
    assert binary["b"]["roc"]["fpr"][0] == 0.0 and binary["b"]["roc"]["tpr"][-1] == 1.0
    labels = np.array([0, 1, 2, 2])
    probs = np.full((4, 3), 1 / 3)
    assert list(curves(TestScores(np.arange(4).astype(str), labels, probs), ["x", "y", "z"], None)) == ["x", "y", "z"]


def test_a_store_that_cannot_be_written_is_one_error_naming_it(tmp_path, store):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ResultsError, match=f"--mlflow file:{blocker}/mlruns: "):
        log_runs([make_record()], f"file:{blocker}/mlruns")
