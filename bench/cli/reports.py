"""The commands that draw from stored records: plots, the HTML report, a paper's reproduction table, the ranking."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bench.cli.output import Format, FormatOption, message, print_data, show, written
from bench.cli.shared import ResultsDir, stored_records
from bench.errors import ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.paths import WORKING_RESULTS

if TYPE_CHECKING:
    from bench.reports.ranking import Rankings

Metric = Annotated[str, typer.Option(help=f"Accuracy metric: {', '.join(HEADLINE_METRICS)}.")]
Speed = Annotated[str, typer.Option(help="Speed axis: p50 (batch-1 ms/image, lower is better) or throughput.")]


def plot(
    metric: Metric = "balanced_accuracy", latency: Speed = "p50", results_dir: ResultsDir = WORKING_RESULTS
) -> None:
    """Accuracy-vs-latency plots per dataset and figures per run, from stored records (no training).

    Where the records hold them, each dataset also gets one figure per further question: reliability diagrams
    (saved test probabilities), subgroup gaps (a dataset with metadata groups), robustness against latency
    (corrupted eval sets) and the data-efficiency curve (several training fractions, --train-fractions).

    Example: bench plot --metric auc --latency throughput
    """
    from bench.reports.beyond_accuracy import beyond_accuracy
    from bench.reports.data_efficiency import plot_data_efficiency
    from bench.reports.latency_pass import load_latency_passes
    from bench.reports.leaderboard import latency_axis
    from bench.reports.plots import plot_all

    started = time.perf_counter()
    passes = load_latency_passes(results_dir)
    records = stored_records(results_dir)
    plots_dir = results_dir / "plots"
    plotted = plot_all(records, metric, latency, plots_dir, passes)
    for dataset, paths in plotted.tradeoff.items():
        message(f"{dataset}: " + (", ".join(map(str, paths)) or "nothing to plot (no finished run with a latency)"))
    beyond = beyond_accuracy(records, plotted.tables, latency_axis(latency), plots_dir)
    for question, drawn in (
        ("reliability", beyond.reliability),
        ("subgroup gaps", beyond.subgroups),
        ("robustness", beyond.robustness),
        ("data efficiency", plot_data_efficiency(records, metric, plots_dir)),
    ):
        for dataset, paths in drawn.items():
            message(f"{dataset} {question}: " + ", ".join(map(str, paths)))
    drawn = sum(f.drawn for f in plotted.runs.values())
    message(
        f"per-run figures under {results_dir / 'plots' / 'runs'}/: {drawn} drawn, "
        f"{len(plotted.runs) - drawn} up to date ({time.perf_counter() - started:.1f} s)"
    )


def report(
    metric: Metric = "balanced_accuracy",
    latency: Speed = "p50",
    results_dir: ResultsDir = WORKING_RESULTS,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for report.html, its leaderboards and plots (default: the results folder)."),
    ] = None,
) -> None:
    """One self-contained HTML page from stored records (no training): the answer first (per dataset and across
    datasets), then each dataset's plot and leaderboard, calibration, subgroups, robustness and external sets where
    the records hold them, and provenance.

    Example: bench report --results-dir results/mission && xdg-open results/mission/report.html
    """
    from bench.reports.html import build_report

    started = time.perf_counter()
    target = results_dir if out is None else out
    built = build_report(stored_records(results_dir), results_dir, metric, latency, target)
    written(
        f"{built.html} ({built.html.stat().st_size / 1e6:.1f} MB, opens offline), "
        f"{len(built.leaderboards)} leaderboard files under {target / 'leaderboards'}/, "
        f"plots under {target / 'plots'}/ ({time.perf_counter() - started:.1f} s)"
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
    from bench.reports.reproduction import COMMAND, rich_table, sweep_table, write_reproduction
    from bench.runs.sweep import load_sweep

    plan = load_sweep(sweep)
    table = sweep_table(stored_records(results_dir), plan)
    if table.empty:
        raise ConfigError(f"no finished runs of sweep {plan.name!r} under {results_dir}/runs")
    show(rich_table(table, plan.name), fmt, table)
    command = COMMAND.format(sweep=sweep, results_dir=results_dir)
    written(str(write_reproduction(table, results_dir / "comparison.md", command)))


def rank(
    metric: Metric = "balanced_accuracy",
    results_dir: ResultsDir = WORKING_RESULTS,
    out: Annotated[
        Path | None, typer.Option(help="Folder for ranking.md and the diagrams (default: the results folder).")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Which row is best across datasets: mean rank, Friedman test and Nemenyi CD, from stored records.

    A row is a leaderboard row (backbone and protocol), ranked on each dataset by its seed mean of METRIC, and by
    Pareto layer of (METRIC, batch-1 latency p50); rows missing on a dataset or that did not learn there are left
    out and listed. Writes ranking.md and the critical-difference diagrams cd-accuracy and cd-front (SVG, PNG).
    csv and json print one row per ranking and row alone on stdout.

    Example: bench rank --results-dir results/mission --format md
    """
    from bench.reports.ranking import check_metric, rank_rows
    from bench.reports.ranking_files import COMMAND, write_ranking

    check_metric(metric)  # an unknown metric is one line naming it, before any record is read
    rankings = rank_rows(stored_records(results_dir), metric)
    if fmt in (Format.csv, Format.json):
        print_data(rankings.frame(), fmt)
    else:
        show(_rank_table(rankings), fmt)
    for ranking in (rankings.accuracy, rankings.front):
        if ranking is not None:
            message(ranking.verdict(), fmt)
    if rankings.front is None:
        message(f"front: not tested: {rankings.front_missing}", fmt)
    message(rankings.accuracy.power_note(), fmt)
    for line in rankings.notes:
        message(line, fmt, style="red")
    left = {o.row for o in rankings.accuracy.left_out}
    for o in rankings.accuracy.left_out:
        message(f"left out of both rankings: {o.row}: {o.reason}", fmt)
    for o in rankings.front.left_out if rankings.front else ():
        if o.row not in left:
            message(f"left out of the front ranking: {o.row}: {o.reason}", fmt)
    command = COMMAND.format(results_dir=results_dir, metric=metric)
    written(", ".join(map(str, write_ranking(rankings, out or results_dir, command))))


def _rank_table(rankings: Rankings) -> Table:
    """One line per compared row, by accuracy mean rank: its per-dataset ranks, its front mean rank and layers."""
    acc, front = rankings.accuracy, rankings.front
    caption = (
        f"acc: mean rank by {rankings.metric} (seed mean); ranks: per dataset, in the title's order; "
        f"front: mean rank by Pareto layer of ({rankings.metric}, batch-1 latency p50); layers: per dataset."
    )
    table = Table(
        title=f"mean rank over {', '.join(rankings.datasets)} (1 = best)", caption=caption, header_style="bold"
    )
    for col in ("#", "row", "acc", "ranks", "front", "layers"):
        table.add_column(col, justify="left" if col == "row" else "right")
    for row, mean in acc.mean_ranks.items():
        timed = front is not None and row in front.values.columns
        table.add_row(
            str(acc.positions[row]),
            row,
            f"{mean:.2f}",
            " ".join(f"{r:g}" for r in acc.ranks[row]),
            f"{front.mean_ranks[row]:.2f}" if timed else "-",
            " ".join(str(int(v)) for v in front.values[row]) if timed else "-",
        )
    return table
