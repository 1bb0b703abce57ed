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
        typer.Option(
            help="Log each run, and each dataset's trade-off plot, into this MLflow tracking URI: "
            "sqlite:///mlruns.db (recommended), http://host:5000, file:./mlruns (a file store, which MLflow 3 opens "
            "only with MLFLOW_ALLOW_FILE_STORE=true: set for the export, needed again to view it)."
        ),
    ] = None,
    experiment: Annotated[str, typer.Option(help="--mlflow: the MLflow experiment the runs go to.")] = "backbone-bench",
) -> None:
    """One row per run (key, identity, metrics, latency, size, device, versions) as CSV or Parquet; with
    --mlflow, each run logged as an MLflow run (params, metrics, per-epoch steps, its figures and files) and each
    dataset's plot of accuracy against latency and its leaderboard as one more, once: a re-export adds nothing.

    Example: bench export --out runs.parquet --mlflow sqlite:///mlruns.db
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
        from bench.reports.mlflow_store import view_hint

        m = done.mlflow
        boards = len(m.summaries) + len(m.summaries_unchanged)
        for line in (
            f"mlflow {m.uri}, experiment '{experiment}' (id {m.experiment_id}): {len(m.logged)} runs logged, "
            f"{len(m.replaced)} replaced (their record changed), {len(m.unchanged)} already there; trade-off plot "
            f"and leaderboard of {boards} dataset{'s' * (boards != 1)}: {len(m.summaries)} logged, "
            f"{len(m.summaries_unchanged)} already there",
            view_hint(m.uri),
        ):
            console.print(line, soft_wrap=True, markup=False, highlight=False)
