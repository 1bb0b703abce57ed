"""Run records as the tables other tools read: one flat row per run, written as CSV or Parquet.

A record is nested JSON (spec, identity, metrics, latency settings, environment); pandas, a spreadsheet, DuckDB
or a notebook want one row per run with scalar columns. :func:`runs_table` flattens each record once, with
the same names everywhere: ``test_<metric>`` for every metric of the table in
:mod:`bench.evaluation.metrics` the record holds, ``val_<metric>`` for the selected epoch's validation,
``epochs_run`` (the protocol's ``epochs`` are a maximum) and the run's training health (``learned``,
``converged``, ``loss_alarm``, with their reasons: :mod:`bench.runs.health`),
``test_ece``, ``test_ece_equal_mass``, ``test_brier`` and ``test_nll`` from the saved test scores (and after
temperature scaling, where validation scores were saved: :mod:`bench.reports.calibration_columns`),
``evalset_<name>_*`` for the evaluation sets it was scored on (:mod:`bench.reports.robustness_columns`),
``latency_b1_*`` for the batch-1 figures, ``version_<package>`` for each library version. Nothing is
aggregated here (the leaderboards do that): a row is one run, failed ones included with their error, so
any grouping a user wants is theirs to make, by ``experiment`` (the identity hash) for seeds of one
experiment. Logging the same rows into MLflow is :mod:`bench.reports.mlflow_export`; ``bench export`` and
``bench.export`` are :mod:`bench.reports.export`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import ConfigError
from bench.evaluation.metrics import METRIC_NAMES
from bench.files import atomic_write_bytes
from bench.reports.calibration_columns import run_calibration
from bench.reports.robustness_columns import run_eval_set_columns
from bench.runs.record import RunRecord, device_label
from bench.train.engine import EngineConfig

FORMATS = {".csv": "CSV", ".parquet": "Parquet"}
LATENCY_FIGURES = {
    "ms_p50": "ms_per_image_p50",
    "ms_p90": "ms_per_batch_p90",
    "ms_p99": "ms_per_batch_p99",
    "throughput_img_s": "throughput_img_s",
    "cv": "cv",
}
"""The batch-1 latency figures a row carries (at batch 1 a batch's time is an image's), by column suffix."""


def run_row(record: RunRecord) -> dict[str, Any]:
    """One record as a flat row: what ran, on what data, giving what, how fast, where and with what."""
    spec, identity, protocol = record.spec, record.identity, record.protocol
    row: dict[str, Any] = {
        "key": record.key,
        "experiment": record.experiment,
        "status": record.status,
        "created": record.created,
        "dataset": spec.dataset,
        "backbone": spec.backbone,
        "arch": record.arch,
        "protocol": record.protocol_label,
        "pretrained": protocol.pretrained,
        "weights": identity.weights.source,
        "seed": spec.seed,
        "epochs": sum(p.epochs for p in protocol.phases),
        "epochs_per_phase": "/".join(str(p.epochs) for p in protocol.phases),
        "resolution": spec.resolution,
        "effective_resolution": record.effective_resolution,
        "precision": spec.precision,
        "engine_precision": _engine_precision(record.engine),
        "memory_format": None if record.engine is None else ("nhwc" if record.engine.channels_last else "nchw"),
        "data_fingerprint": identity.data.fingerprint,
        "split": (record.dataset.audit.get("split") or record.dataset.audit.get("split_policy"))
        if record.dataset
        else None,
        "data_root": spec.data_root,
        "best_epoch": record.selection.best_epoch if record.selection else None,
        "selected_on": record.selection.on if record.selection else None,
        "epochs_run": record.epochs_run if record.ok else None,
        **_health_columns(record),
        "params_m": record.backbone.params / 1e6 if record.backbone else None,
        "gmacs": record.backbone.gmacs if record.backbone else None,
    }
    for split, scores in (("test", record.test), ("val", record.val)):
        if scores is not None:
            row.update({f"{split}_{m}": scores.values[m] for m in METRIC_NAMES if m in scores.values})
    row.update(run_calibration(record))  # test_ece, test_brier, test_nll (and after temperature scaling)
    row.update(run_eval_set_columns(record))  # evalset_<name>_...: corrupted and external sets it was scored on
    row.update(_latency_columns(record))
    row.update({f"time_{stage}_s": seconds for stage, seconds in record.timings_s.items()})
    row["device"] = device_label(record.environment.device)
    row["executor"] = (record.environment.executor or {}).get("name")
    row["git_commit"] = record.environment.git_commit
    row.update({f"version_{name}": v for name, v in sorted({**record.environment.versions, **record.versions}.items())})
    row["error"] = record.error
    row["record"] = str(record.path) if record.path else None
    return row


def _health_columns(record: RunRecord) -> dict[str, Any]:
    """Did it learn, converge, keep a sane loss (:mod:`bench.runs.health`), with the sentences that say why."""
    health = record.training_health()
    if health is None:
        return {}
    return {
        "learned": health.learned,
        "learned_p": health.learned_p,
        "learned_reason": health.learned_reason,
        "converged": health.converged,
        "converged_reason": health.converged_reason,
        "loss_alarm": health.loss_alarm,
    }


def _engine_precision(engine: EngineConfig | None) -> str | None:
    """What the run trained in (the engine's autocast dtype, else fp32), whatever ``auto`` resolved to."""
    return None if engine is None else engine.amp or "fp32"


def _latency_columns(record: RunRecord) -> dict[str, Any]:
    b1 = next((lat for lat in record.latency if lat.batch_size == 1), None)
    if b1 is None:
        return {}
    figures = {f"latency_b1_{name}": getattr(b1, field) for name, field in LATENCY_FIGURES.items()}
    figure = record.latency_b1()
    return {**figures, "latency_b1_noisy": b1.noisy, "latency_device": figure.device if figure else None}


def runs_table(records: list[RunRecord]) -> pd.DataFrame:
    """One row per record (:func:`run_row`), sorted by dataset, backbone, protocol and seed; columns are the union."""
    rows = sorted((run_row(r) for r in records), key=lambda r: (r["dataset"], r["backbone"], r["protocol"], r["seed"]))
    return pd.DataFrame(rows)


def write_table(table: pd.DataFrame, out: Path) -> Path:
    """``table`` as CSV or Parquet, by ``out``'s suffix, written whole or not at all."""
    kind = FORMATS.get(out.suffix.lower())
    if kind is None:
        raise ConfigError(f"--out {out}: the table is written as {' or '.join(FORMATS)}, by the file's suffix")
    if kind == "CSV":
        data = table.to_csv(index=False).encode()
    else:
        try:
            import pyarrow  # noqa: F401  (pandas' Parquet engine; a dependency of backbone-bench)
        except ImportError:
            raise ConfigError(f"--out {out}: Parquet needs pyarrow: pip install pyarrow") from None
        data = table.to_parquet(index=False)
    atomic_write_bytes(out, data)
    return out
