"""The commands that draw from stored records: plots, the HTML report, and a paper's reproduction table."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from bench.cli.output import Format, FormatOption, message, show
from bench.cli.shared import ResultsDir, stored_records
from bench.errors import ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.paths import WORKING_RESULTS

Metric = Annotated[str, typer.Option(help=f"Accuracy metric: {', '.join(HEADLINE_METRICS)}.")]
Speed = Annotated[str, typer.Option(help="Speed axis: p50 (batch-1 ms/image, lower is better) or throughput.")]


def plot(
    metric: Metric = "balanced_accuracy", latency: Speed = "p50", results_dir: ResultsDir = WORKING_RESULTS
) -> None:
    """Accuracy-vs-latency plots per dataset and figures per run, from stored records (no training).

    Example: bench plot --metric auc --latency throughput
    """
    from bench.reports.latency_pass import load_latency_passes
    from bench.reports.plots import plot_all

    started = time.perf_counter()
    passes = load_latency_passes(results_dir)
    plotted = plot_all(stored_records(results_dir), metric, latency, results_dir / "plots", passes)
    for dataset, paths in plotted.tradeoff.items():
        message(f"{dataset}: " + (", ".join(map(str, paths)) or "nothing to plot (no finished run with a latency)"))
    drawn = sum(f.drawn for f in plotted.runs.values())
    message(
        f"per-run figures under {results_dir / 'plots' / 'runs'}/: {drawn} drawn, "
        f"{len(plotted.runs) - drawn} up to date ({time.perf_counter() - started:.1f} s)"
    )


def report(
    metric: Metric = "balanced_accuracy", latency: Speed = "p50", results_dir: ResultsDir = WORKING_RESULTS
) -> None:
    """One self-contained HTML page: plots, leaderboards and provenance, from stored records (no training).

    Example: bench report --results-dir results && xdg-open results/report.html
    """
    from bench.reports.html import build_report

    started = time.perf_counter()
    built = build_report(stored_records(results_dir), results_dir, metric, latency)
    message(
        f"written: {built.html} ({built.html.stat().st_size / 1e6:.1f} MB, opens offline), "
        f"{len(built.leaderboards)} leaderboard files under {results_dir / 'leaderboards'}/, "
        f"plots under {results_dir / 'plots'}/ ({time.perf_counter() - started:.1f} s)"
    )


def reproduction(
    sweep: Annotated[str, typer.Option(help="Sweep TOML file or name whose [[published]] results to compare.")],
    results_dir: ResultsDir = WORKING_RESULTS,
    fmt: FormatOption = Format.table,
) -> None:
    """Published vs measured (seed mean ± std) for a sweep that reproduces a paper, from stored records.

    csv and json print the numeric table (the CSV written beside comparison.md) alone on stdout.

    Example: bench reproduction --sweep medmnist-v2 --format csv
    """
    from bench.reports.reproduction import COMMAND, display_frame, sweep_table, write_reproduction
    from bench.runs.sweep import load_sweep

    plan = load_sweep(sweep)
    table = sweep_table(stored_records(results_dir), plan)
    if table.empty:
        raise ConfigError(f"no finished runs of sweep {plan.name!r} under {results_dir}/runs")
    shown = display_frame(table)
    rich = Table(title=f"{plan.name}: published vs measured (test split)", header_style="bold")
    for col in shown.columns:
        rich.add_column(str(col), justify="left" if col in ("dataset", "backbone") else "right")
    for row in shown.itertuples(index=False):
        rich.add_row(*map(str, row))
    show(rich, fmt, table)
    command = COMMAND.format(sweep=sweep, results_dir=results_dir)
    message(f"written: {write_reproduction(table, results_dir / 'comparison.md', command)}", fmt)
