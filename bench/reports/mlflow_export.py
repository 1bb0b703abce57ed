"""Run records logged into an MLflow tracking store, one MLflow run per record, found again by its run key.

Each run carries the row :func:`bench.reports.runs_table.run_row` makes, split the way MLflow's UI and search
read it: the experiment's identity as params (:data:`PARAM_COLUMNS`), every number as a metric (test and
validation metrics, latency, size, stage times; the per-epoch losses and validation metrics as steps), the
provenance as tags (run key, experiment id, versions, device, commit), and as artifacts the record JSON, the
saved test probabilities, the confusion matrix and the ROC and precision-recall curve points (JSON, one curve
per class one-vs-rest, the positive class's for a binary task).

Exporting is idempotent: a run is looked up by its ``bench_run_key`` tag and logged only when absent; when
its record file changed since (a failed run retried under the same key), the old MLflow run is deleted and
the new one logged, so a store never holds two runs of one key. MLflow is an optional extra
(``pip install "backbone-bench[mlflow]"``); its 3.x client refuses a ``file:`` store unless
``MLFLOW_ALLOW_FILE_STORE`` is set, which this module sets for a ``file:`` URI only, as asked for.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import ConfigError, ResultsError
from bench.evaluation.metrics import positive_index
from bench.evaluation.scores import TestScores
from bench.files import file_sha256
from bench.reports.runs_table import run_row
from bench.runs.record import RunRecord, probs_path
from bench.runs.spec import digest

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

KEY_TAG = "bench_run_key"
RECORD_TAG = "bench_record_sha256"
PARAM_COLUMNS = (
    "dataset", "backbone", "arch", "protocol", "pretrained", "weights", "seed", "epochs", "epochs_per_phase",
    "resolution", "effective_resolution", "precision", "split", "data_fingerprint", "data_root", "selected_on",
)  # fmt: skip
"""The row's columns that say what ran (MLflow params); its numbers are metrics, the rest tags."""
TAG_COLUMNS = ("key", "experiment", "status", "created", "device", "executor", "git_commit", "error")
DATABASES = frozenset({"sqlite", "postgresql", "mysql", "mssql"})
BATCH = 1000  # MLflow's most metrics per log_batch call (params: 100, tags: 100)


@dataclass
class Logged:
    """What one export did: MLflow run ids of the runs logged now, replaced, and already there."""

    uri: str
    experiment_id: str
    logged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def log_runs(records: list[RunRecord], uri: str, experiment: str = "backbone-bench") -> Logged:
    """Log every record not yet in the MLflow store at ``uri`` (experiment ``experiment``, made if absent).

    A store that cannot be reached or written is one :class:`ResultsError` naming the URI; the runs logged before
    it stay logged, and the next export adds only the others.
    """
    client_class = _client_class(uri)
    from mlflow.exceptions import MlflowException

    try:
        return _log_all(client_class(tracking_uri=uri), records, uri, experiment)
    except (MlflowException, OSError) as err:
        database = uri.split(":", 1)[0] in DATABASES  # stores of the full package, not of mlflow-skinny
        hint = "; a database store needs the full MLflow package: pip install mlflow" if database else ""
        raise ResultsError(f"--mlflow {uri}: {' '.join(str(err).split())}{hint}") from None


def _log_all(client: MlflowClient, records: list[RunRecord], uri: str, experiment: str) -> Logged:
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    done = Logged(uri, experiment_id)
    for record in records:
        sha = _record_sha(record)
        existing = client.search_runs([experiment_id], filter_string=f"tags.{KEY_TAG} = '{record.key}'")
        if any(run.data.tags.get(RECORD_TAG) == sha for run in existing):
            done.unchanged.append(existing[0].info.run_id)
            continue
        for run in existing:
            client.delete_run(run.info.run_id)
        run_id = _log_run(client, experiment_id, record, sha)
        (done.replaced if existing else done.logged).append(run_id)
    return done


def _client_class(uri: str) -> type[MlflowClient]:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(f'--mlflow {uri}: MLflow is not installed: pip install "backbone-bench[mlflow]"') from None
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps file stores behind this switch
    return MlflowClient


def _record_sha(record: RunRecord) -> str:
    """The record file's sha256 (what changes when a run is redone under its key)."""
    if record.path is not None and record.path.is_file():
        return file_sha256(record.path)
    return digest(record.to_json())


def _log_run(client: MlflowClient, experiment_id: str, record: RunRecord, sha: str) -> str:
    from mlflow.entities import Metric, Param

    row = run_row(record)
    start = _ms(record.created)
    tags = {f"bench_{c}": str(row[c]) for c in TAG_COLUMNS if row.get(c) is not None}
    tags |= {c: str(v) for c, v in row.items() if c.startswith("version_") and v is not None}
    tags |= {KEY_TAG: record.key, RECORD_TAG: sha}
    run = client.create_run(experiment_id, start_time=start, tags=tags, run_name=record.label)
    run_id = run.info.run_id
    params = [Param(c, str(row[c])) for c in PARAM_COLUMNS if row.get(c) is not None]
    metrics = [Metric(name, value, start, 0) for name, value in _numbers(row).items()]
    metrics += [Metric(name, value, start, step) for name, value, step in _history(record)]
    client.log_batch(run_id, params=params)
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])
    _log_artifacts(client, run_id, record)
    elapsed_ms = int(1000 * sum(record.timings_s.values()))
    client.set_terminated(run_id, "FINISHED" if record.ok else "FAILED", end_time=start + elapsed_ms)
    return run_id


def _ms(created: str) -> int:
    return int(dt.datetime.fromisoformat(created).timestamp() * 1000)


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    """The row's finite numbers that are not params (metrics, latency, size, times): MLflow metrics."""
    skip = set(PARAM_COLUMNS)
    return {
        name: float(value)
        for name, value in row.items()
        if name not in skip and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def _history(record: RunRecord) -> list[tuple[str, float, int]]:
    """Per-epoch losses and validation scalars, as (metric, value, epoch) steps."""
    steps = []
    for entry in record.history:
        epoch = int(entry.get("epoch", 0))
        values = {k: entry.get(k) for k in ("train_loss", "val_loss", "lr")}
        values |= {f"epoch_val_{k}": v for k, v in (entry.get("val") or {}).items()}
        for name, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                steps.append((name, float(value), epoch))
    return steps


def _log_artifacts(client: MlflowClient, run_id: str, record: RunRecord) -> None:
    """The record JSON, the test probabilities, the confusion matrix and the curve points."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "record.json").write_text(json.dumps(record.to_json(), indent=2, default=str))
        files = [folder / "record.json"]
        classes = record.dataset.classes if record.dataset else []
        if "confusion_matrix" in record.test:
            matrix = {"classes": classes, "rows": "true class", "columns": "predicted class"}
            (folder / "confusion_matrix.json").write_text(
                json.dumps({**matrix, "counts": record.test["confusion_matrix"]}, indent=2)
            )
            files.append(folder / "confusion_matrix.json")
        scores = _scores(record)
        if scores is not None:
            files.append(probs_path(record.path))  # type: ignore[arg-type]
            (folder / "curves.json").write_text(json.dumps(curves(scores, classes, record.test.get("positive"))))
            files.append(folder / "curves.json")
        for file in files:
            client.log_artifact(run_id, str(file))


def _scores(record: RunRecord) -> TestScores | None:
    if record.path is None or not probs_path(record.path).is_file():
        return None
    try:
        return TestScores.load(probs_path(record.path))
    except ResultsError as err:  # names the file
        warnings.warn(f"{err}; its run is exported without it and without curves", stacklevel=2)
        return None


def curves(scores: TestScores, classes: list[str], positive: str | None) -> dict[str, Any]:
    """ROC and precision-recall points per class, one-vs-rest (a binary task: its positive class only)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    names = classes or [str(i) for i in range(scores.probs.shape[1])]
    index = [positive_index(names, positive)] if len(names) == 2 else range(len(names))
    out = {}
    for k in index:
        truth = (scores.labels == k).astype(int)
        if truth.min() == truth.max():
            continue  # a class absent from the test set (or the only one) has no curve
        fpr, tpr, _ = roc_curve(truth, scores.probs[:, k])
        precision, recall, _ = precision_recall_curve(truth, scores.probs[:, k])
        out[names[k]] = {
            "roc": {"fpr": _floats(fpr), "tpr": _floats(tpr)},
            "pr": {"precision": _floats(precision), "recall": _floats(recall)},
        }
    return out


def _floats(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]
