"""Run records logged into an MLflow tracking store: one MLflow run per record, found again by its run key, and per
dataset one leaderboard run holding the trade-off plot.

Each record's run carries the row :func:`bench.reports.runs_table.run_row` makes, split the way MLflow's UI and
search read it: the experiment's identity as params (:data:`PARAM_COLUMNS`); every number as a metric: test and
validation metrics, the beyond-accuracy figures the row holds (``test_ece``, ``test_ece_equal_mass``,
``test_brier``, ``test_nll``, the same after temperature scaling as ``test_<figure>_scaled`` with the
``temperature``; each evaluation set's ``evalset_<name>_mean_balanced_error`` and per-corruption errors, an
external set's ``evalset_<name>_balanced_accuracy`` and ``_auc``), latency, size, stage times, and the per-epoch
losses, learning rate and validation metrics as steps; where the dataset has subgroup metadata, the run's worst
group and largest gap (:func:`run_subgroups`: the leaderboard's ``subgroups`` cells for one seed); the provenance
as tags (run key, experiment id, versions, device, commit); and as artifacts the record JSON, the saved test
probabilities, the confusion matrix and the ROC and precision-recall curve points (JSON, one curve per class
one-vs-rest, the positive class's for a binary task), and the figures ``bench plot`` draws for the run
(``confusion_matrix.png`` and ``training_curves.png``, by :func:`bench.reports.plots.confusion_figure` and
:func:`~bench.reports.plots.curves_figure`).

Each dataset also gets a leaderboard run (tag :data:`SUMMARY_TAG`, named ``<dataset> leaderboard``): the
trade-off plot ``bench plot`` draws (``<dataset>-tradeoff.png`` and ``.svg``) and the leaderboard it is drawn
from with every optional column group (Markdown, CSV, LaTeX, as :func:`bench.reports.render.write_leaderboard`
writes them), over the dataset's records in this export.

Exporting is idempotent: a run is looked up by its ``bench_run_key`` tag (a leaderboard run by its dataset) and
logged only when absent; when its record file changed since (a failed run retried under the same key; for a
leaderboard run, any of its records, the metric, the speed axis or a ``bench latency`` pass), or it was logged by an
export that carried less (:data:`EXPORT_FORMAT`), the old MLflow run is deleted and the new one logged, so a store
never holds two runs of one key. MLflow is an optional extra
(``pip install "backbone-bench[mlflow]"``); which stores it opens, and how MLflow 3 treats a file store, is
:mod:`bench.reports.mlflow_store`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import ConfigError, ResultsError
from bench.evaluation.metrics import HEADLINE_METRICS, positive_index
from bench.evaluation.scores import TestScores
from bench.files import file_sha256
from bench.reports.column_groups import COLUMN_GROUP_NAMES
from bench.reports.latency_pass import passes_of
from bench.reports.leaderboard import datasets_in, latency_axis, leaderboard
from bench.reports.mlflow_store import artifact_location, failure, prepare
from bench.reports.plots import confusion_figure, curves_figure, plot_tradeoff, save
from bench.reports.render import write_leaderboard
from bench.reports.runs_table import run_row
from bench.reports.subgroup_columns import METRIC as SUBGROUP_METRIC
from bench.reports.subgroup_columns import GroupTables, subgroup_cells
from bench.runs.experiments import Experiment
from bench.runs.identity import digest
from bench.runs.record import RunRecord, probs_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

KEY_TAG = "bench_run_key"
RECORD_TAG = "bench_record_sha256"
SUMMARY_TAG = "bench_summary"
"""A leaderboard run's tag: the dataset whose trade-off plot and leaderboard it holds."""
FORMAT_TAG = "bench_export_format"
EXPORT_FORMAT = "2"
"""What a logged run carries, as a version (2: its figures, subgroup metrics, the leaderboard runs): a run logged
with another is outdated, and a re-export replaces it, so a store gains what a newer export adds."""
PARAM_COLUMNS = (
    "dataset", "backbone", "arch", "protocol", "pretrained", "weights", "seed", "epochs", "epochs_per_phase",
    "resolution", "effective_resolution", "precision", "split", "data_fingerprint", "data_root", "selected_on",
)  # fmt: skip
"""The row's columns that say what ran (MLflow params); its numbers are metrics, the rest tags."""
TAG_COLUMNS = ("key", "experiment", "status", "created", "device", "executor", "git_commit", "error")
FIGURES: dict[str, Callable[[RunRecord], Figure]] = {
    "confusion_matrix": confusion_figure,
    "training_curves": curves_figure,
}
"""A finished run's figures, by artifact name (``.png``): the ones ``bench plot`` draws for it."""
SUBGROUP_TAGS = {"worst_group": "bench_worst_group", "largest_gap_attribute": "bench_largest_gap_attribute"}
BATCH = 1000  # MLflow's most metrics per log_batch call (params: 100, tags: 100)


@dataclass
class Logged:
    """What one export did: MLflow run ids of the runs logged now, replaced, and already there, and of the
    datasets' leaderboard runs logged now (new or replacing an outdated one) and already there."""

    uri: str
    experiment_id: str
    logged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    summaries_unchanged: list[str] = field(default_factory=list)


def log_runs(
    records: list[RunRecord],
    uri: str,
    experiment: str = "backbone-bench",
    *,
    metric: str = "balanced_accuracy",
    latency: str = "p50",
) -> Logged:
    """Log every record not yet in the MLflow store at ``uri`` (experiment ``experiment``, made if absent), and
    each dataset's trade-off plot and leaderboard (``metric`` against ``latency``, as ``bench plot`` takes them).

    A store that cannot be reached or written is one :class:`ResultsError` naming the URI; the runs logged before
    it stay logged, and the next export adds only the others.
    """
    if metric not in HEADLINE_METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(HEADLINE_METRICS)}")
    latency_axis(latency)  # an unknown speed axis: its one-line error, before anything is logged
    client_class = _client_class(uri)
    from mlflow.exceptions import MlflowException

    try:
        client = client_class(tracking_uri=uri)
        return _log_all(client, records, uri, experiment, metric, latency)
    except (MlflowException, OSError) as err:
        raise ResultsError(failure(uri, err)) from None
    except ModuleNotFoundError as err:  # a database driver; a module of ours missing is a bug, not the store
        if (err.name or "").split(".")[0] == "bench":
            raise
        raise ResultsError(failure(uri, err)) from None


def _log_all(
    client: MlflowClient, records: list[RunRecord], uri: str, experiment: str, metric: str, latency: str
) -> Logged:
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        experiment_id = client.create_experiment(experiment, artifact_location=artifact_location(uri, experiment))
    done = Logged(uri, experiment_id)
    tables = GroupTables()  # each dataset's subgroup table, read once
    shas = {}
    for record in records:
        sha = shas[record.key] = _record_sha(record)
        existing = _runs_tagged(client, experiment_id, KEY_TAG, record.key)
        if any(_current(run, sha) for run in existing):
            done.unchanged.append(existing[0].info.run_id)
            continue
        for run in existing:
            client.delete_run(run.info.run_id)
        run_id = _log_run(client, experiment_id, record, sha, tables)
        (done.replaced if existing else done.logged).append(run_id)
    for dataset in datasets_in(records):
        of = [r for r in records if r.spec.dataset == dataset]
        _log_summary(client, experiment_id, of, dataset, [shas[r.key] for r in of], metric, latency, done)
    return done


def _current(run: Run, sha: str) -> bool:
    """Logged from this very record file (or leaderboard input), by an export of this format."""
    return run.data.tags.get(RECORD_TAG) == sha and run.data.tags.get(FORMAT_TAG) == EXPORT_FORMAT


def _runs_tagged(client: MlflowClient, experiment_id: str, tag: str, value: str) -> list[Run]:
    return client.search_runs([experiment_id], filter_string=f"tags.{tag} = '{value}'")


def _client_class(uri: str) -> type[MlflowClient]:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(f'--mlflow {uri}: MLflow is not installed: pip install "backbone-bench[mlflow]"') from None
    prepare(uri)  # a file store: MLflow 3 opens it only with MLFLOW_ALLOW_FILE_STORE
    return MlflowClient


def _record_sha(record: RunRecord) -> str:
    """The record file's sha256 (what changes when a run is redone under its key)."""
    if record.path is not None and record.path.is_file():
        return file_sha256(record.path)
    return digest(record.to_json())


def _log_run(client: MlflowClient, experiment_id: str, record: RunRecord, sha: str, tables: GroupTables) -> str:
    from mlflow.entities import Metric, Param

    row = run_row(record)
    scores = _scores(record)
    subgroups, subgroup_tags = run_subgroups(record, scores, tables)
    start = _ms(record.created)
    tags = {f"bench_{c}": str(row[c]) for c in TAG_COLUMNS if row.get(c) is not None}
    tags |= {c: str(v) for c, v in row.items() if c.startswith("version_") and v is not None}
    tags |= subgroup_tags | {KEY_TAG: record.key, RECORD_TAG: sha, FORMAT_TAG: EXPORT_FORMAT}
    run = client.create_run(experiment_id, start_time=start, tags=tags, run_name=record.label)
    run_id = run.info.run_id
    params = [Param(c, str(row[c])) for c in PARAM_COLUMNS if row.get(c) is not None]
    metrics = [Metric(name, value, start, 0) for name, value in (_numbers(row) | subgroups).items()]
    metrics += [Metric(name, value, start, step) for name, value, step in _history(record)]
    client.log_batch(run_id, params=params)
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])
    _log_artifacts(client, run_id, record, scores)
    elapsed_ms = int(1000 * sum(record.timings_s.values()))
    client.set_terminated(run_id, "FINISHED" if record.ok else "FAILED", end_time=start + elapsed_ms)
    return run_id


def _ms(created: str) -> int:
    return int(dt.datetime.fromisoformat(created).timestamp() * 1000)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    """The row's finite numbers that are not params (metrics, latency, size, times): MLflow metrics."""
    skip = set(PARAM_COLUMNS)
    return {name: float(value) for name, value in row.items() if name not in skip and _finite(value)}


def _history(record: RunRecord) -> list[tuple[str, float, int]]:
    """Per-epoch losses and validation scalars, as (metric, value, epoch) steps."""
    steps = []
    for entry in record.history:
        values = {"train_loss": entry.train_loss, "val_loss": entry.val_loss, "lr": entry.lr}
        values |= {f"epoch_val_{k}": v for k, v in entry.val.values.items()}
        if entry.val.argmax_ties is not None:
            values["epoch_val_argmax_ties"] = entry.val.argmax_ties
        epoch = entry.epoch
        steps += [(name, float(value), epoch) for name, value in values.items() if _finite(value)]
    return steps


def run_subgroups(
    record: RunRecord, scores: TestScores | None, tables: GroupTables | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """One run's worst group and largest gap, as metrics and tags: the leaderboard's ``subgroups`` cells
    (:func:`bench.reports.subgroup_columns.subgroup_cells`) for this run alone, so the same numbers as a one-seed
    row. Metrics ``test_worst_group_balanced_accuracy`` (with ``_ci95_low``, ``_ci95_high``),
    ``test_worst_group_n``, ``test_largest_gap_balanced_accuracy``; tags ``bench_worst_group`` and
    ``bench_largest_gap_attribute``. Nothing for a run without saved scores or a dataset without metadata."""
    if scores is None or not record.ok:
        return {}, {}
    cells, _ = subgroup_cells(Experiment(record.experiment, (record,)), [scores], tables or GroupTables())
    named = {
        f"test_worst_group_{SUBGROUP_METRIC}": cells[f"worst_group_{SUBGROUP_METRIC}_mean"],
        f"test_worst_group_{SUBGROUP_METRIC}_ci95_low": cells[f"worst_group_{SUBGROUP_METRIC}_ci95_low"],
        f"test_worst_group_{SUBGROUP_METRIC}_ci95_high": cells[f"worst_group_{SUBGROUP_METRIC}_ci95_high"],
        "test_worst_group_n": cells["worst_group_n"],
        f"test_largest_gap_{SUBGROUP_METRIC}": cells["largest_gap_mean"],
    }
    metrics = {name: float(value) for name, value in named.items() if _finite(value)}
    return metrics, {tag: str(cells[cell]) for cell, tag in SUBGROUP_TAGS.items() if cells[cell]}


def _log_artifacts(client: MlflowClient, run_id: str, record: RunRecord, scores: TestScores | None) -> None:
    """The record JSON, the test probabilities, the confusion matrix, the curve points and the run's figures."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "record.json").write_text(json.dumps(record.to_json(), indent=2, default=str))
        files = [folder / "record.json"]
        classes = record.dataset.classes if record.dataset else []
        if record.test is not None:
            matrix = {"classes": classes, "rows": "true class", "columns": "predicted class"}
            (folder / "confusion_matrix.json").write_text(
                json.dumps({**matrix, "counts": record.test.confusion_matrix}, indent=2)
            )
            files.append(folder / "confusion_matrix.json")
        if scores is not None:
            files.append(probs_path(record.path))  # type: ignore[arg-type]
            positive = record.test.positive if record.test else None
            (folder / "curves.json").write_text(json.dumps(curves(scores, classes, positive)))
            files.append(folder / "curves.json")
        files += _figures(record, folder)
        for file in files:
            client.log_artifact(run_id, str(file))


def _figures(record: RunRecord, folder: Path) -> list[Path]:
    """A finished run's figures, drawn by ``bench plot``'s own code into ``folder``; a figure that cannot be drawn
    from the record (one written before a field it reads) is left out with a warning naming the record."""
    if not record.ok:
        return []
    drawn = []
    for name, draw in FIGURES.items():
        try:
            drawn += save(draw(record), folder / name)
        except (KeyError, TypeError, ValueError, AssertionError) as err:
            where = record.path or f"run {record.key[:12]}"
            warnings.warn(
                f"{where}: its {name.replace('_', ' ')} figure cannot be drawn ({type(err).__name__}: {err}); "
                "its run is exported without it",
                stacklevel=2,
            )
    return drawn


def _scores(record: RunRecord) -> TestScores | None:
    if record.path is None or not probs_path(record.path).is_file():
        return None
    try:
        return TestScores.load(probs_path(record.path))
    except ResultsError as err:  # names the file
        warnings.warn(f"{err}; its run is exported without it and without curves", stacklevel=2)
        return None


def _log_summary(
    client: MlflowClient,
    experiment_id: str,
    records: list[RunRecord],
    dataset: str,
    shas: list[str],
    metric: str,
    latency: str,
    done: Logged,
) -> None:
    """The dataset's leaderboard run: its trade-off plot and leaderboard, replaced when what they are drawn from
    changed (a record, the metric, the speed axis, a ``bench latency`` pass)."""
    passes = passes_of(records)
    inputs = {
        "records": sorted(shas),
        "metric": metric,
        "latency": latency,
        "passes": sorted({file_sha256(p.path) for p in passes}),
    }
    sha = digest(inputs)
    existing = _runs_tagged(client, experiment_id, SUMMARY_TAG, dataset)
    if any(_current(run, sha) for run in existing):
        done.summaries_unchanged.append(existing[0].info.run_id)
        return
    for run in existing:
        client.delete_run(run.info.run_id)
    table = leaderboard(records, dataset, metric, latency, passes, columns=COLUMN_GROUP_NAMES)
    tags = {SUMMARY_TAG: dataset, RECORD_TAG: sha, FORMAT_TAG: EXPORT_FORMAT}
    tags["mlflow.note.content"] = _summary_note(dataset, metric, latency)  # the run page's description
    run_id = client.create_run(experiment_id, tags=tags, run_name=f"{dataset} leaderboard").info.run_id
    from mlflow.entities import Param

    params = {"dataset": dataset, "metric": metric, "latency": latency, "runs": len(records)}
    client.log_batch(run_id, params=[Param(name, str(value)) for name, value in params.items()])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = plot_tradeoff(table, dataset, metric, latency_axis(latency), folder)
        files += write_leaderboard(table, folder, dataset)
        for file in files:
            client.log_artifact(run_id, str(file))
    client.set_terminated(run_id, "FINISHED")
    done.summaries.append(run_id)


def _summary_note(dataset: str, metric: str, latency: str) -> str:
    """The leaderboard run's description, which MLflow's UI shows on the run's page."""
    return (
        f"{dataset}: test {metric} against {latency} latency over this export's {dataset} runs, as `bench plot` "
        "and `bench leaderboard --columns calibration,subgroups,robustness,external` draw and write them: "
        f"`{dataset}-tradeoff.png` (`.svg`) and the leaderboard (`.md`, `.csv`, `.tex`)."
    )


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
