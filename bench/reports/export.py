"""``bench export`` and ``bench.export``: the runs table of a results folder to a file, and its runs to MLflow.

The table is :mod:`bench.reports.runs_table` (one flat row per record), MLflow is
:mod:`bench.reports.mlflow_export` (imported only when asked for: it is an optional extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from bench.errors import ConfigError
from bench.paths import WORKING_RESULTS
from bench.reports.runs_table import FORMATS, runs_table, write_table
from bench.runs.record import load_records

if TYPE_CHECKING:
    from bench.reports.mlflow_export import Logged


@dataclass
class Exported:
    """What :func:`export` made: the runs table, the file it was written to, and what MLflow was given."""

    table: pd.DataFrame
    out: Path | None = None
    mlflow: Logged | None = None


def export(
    results_dir: str | Path = WORKING_RESULTS,
    out: str | Path | None = None,
    mlflow: str | None = None,
    experiment: str = "backbone-bench",
) -> Exported:
    """``bench export``: the runs table of every record under ``results_dir``, written to ``out`` (.csv or
    .parquet) when given, and logged to the MLflow tracking URI ``mlflow`` when given (experiment
    ``experiment``; idempotent: a run already there is not logged twice)."""
    if out is not None and Path(out).suffix.lower() not in FORMATS:  # before the records are read
        raise ConfigError(f"--out {out}: the table is written as {' or '.join(FORMATS)}, by the file's suffix")
    records = load_records(Path(results_dir))
    if not records:
        raise ConfigError(f"no run records under {Path(results_dir) / 'runs'}: run `bench run` first")
    done = Exported(runs_table(records))
    if out is not None:
        done.out = write_table(done.table, Path(out))
    if mlflow is not None:
        from bench.reports.mlflow_export import log_runs

        done.mlflow = log_runs(records, mlflow, experiment)
    return done
