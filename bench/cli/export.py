"""``bench export``: every run as a row of a CSV or Parquet table, and an MLflow run (:mod:`bench.reports.export`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from bench.cli.output import written
from bench.cli.shared import ResultsDir, console
from bench.paths import WORKING_RESULTS


def export(
    results_dir: ResultsDir = WORKING_RESULTS,
    out: Annotated[
        Path | None, typer.Option(help="Write the table here: FILE.csv or FILE.parquet (default: CSV on stdout).")
    ] = None,
    mlflow: Annotated[
        str | None,
        typer.Option(help="Log each run into this MLflow tracking URI (file:./mlruns, http://host:5000, ...)."),
    ] = None,
    experiment: Annotated[str, typer.Option(help="--mlflow: the MLflow experiment the runs go to.")] = "backbone-bench",
) -> None:
    """One row per run (key, identity, metrics, latency, size, device, versions) as CSV or Parquet; with
    --mlflow, each run logged as an MLflow run (params, metrics, artifacts), once: a re-export adds nothing.

    Example: bench export --out runs.parquet --mlflow file:./mlruns
    """
    from bench.reports.export import export as export_runs

    done = export_runs(results_dir, out, mlflow, experiment)
    if out is None and mlflow is None:
        sys.stdout.write(done.table.to_csv(index=False))
        return
    if done.out is not None:
        shape = f"{len(done.table)} runs, {len(done.table.columns)} columns"
        written(f"{done.out} ({shape})")
    if done.mlflow is not None:
        m = done.mlflow
        console.print(
            f"mlflow {m.uri}, experiment '{experiment}' (id {m.experiment_id}): {len(m.logged)} runs logged, "
            f"{len(m.replaced)} replaced (their record changed), {len(m.unchanged)} already there",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
