"""The CI gates: ``bench check`` (accuracy against the reference records) and ``bench check-readme`` (docs)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from bench.cli.options import results_folder
from bench.cli.output import Format, FormatOption, for_people, message, show
from bench.cli.progress import SweepBars, sweep_bars
from bench.cli.shared import console

if TYPE_CHECKING:
    from bench.runs.plan import SweepPlan


def check(
    results_dir: Annotated[
        Path | None,
        typer.Option(
            "--results-dir",
            parser=results_folder,
            metavar="<path>",
            help="Compare the records already here instead of rerunning.",
        ),
    ] = None,
    reference: Annotated[Path, typer.Option(help="The committed reference records.")] = Path("results/reference"),
    sweep: Annotated[str, typer.Option(help="Sweep file or name the reference was made from.")] = "reference",
    tolerance: Annotated[
        float | None,
        typer.Option(help="Largest metric drop accepted where runs cannot be compared exactly (all datasets)."),
    ] = None,
    device: Annotated[str, typer.Option(help="Device for the rerun (the reference was trained on the CPU).")] = "cpu",
    fmt: FormatOption = Format.table,
) -> None:
    """Accuracy gate: rerun the reference sweep in a temp folder, compare each test metric (exit 1 on a regression).

    csv and json print the gate table alone on stdout (one row per run and metric); the verdict goes to stderr.

    Example: bench check --results-dir results/rerun --format csv > gate.csv
    """
    from bench.gates import accuracy as gate
    from bench.gates.rerun import CheckRequest, check_accuracy

    request = CheckRequest(reference, sweep, results_dir=results_dir, tolerance=tolerance, device=device)
    report = check_accuracy(request, lambda plan: _rerun_bars(plan, fmt))
    for pairing in report.pairings:
        message(f"{pairing.label}: {pairing.basis()}", fmt)
    show(gate.report_table(report), fmt, gate.report_frame(report))
    for problem in report.problems:
        message(f"x {problem}", fmt, style="red")
    message(report.summary(), fmt, style="green" if report.passed else "red")
    if not report.passed:
        sys.exit(1)  # not typer.Exit: main() runs click in non-standalone mode, which returns its code


@contextmanager
def _rerun_bars(plan: SweepPlan, fmt: Format) -> Iterator[SweepBars]:
    """The rerun's first line (how many runs, where, at how many torch threads), then a bar per run."""
    import torch

    threads = torch.get_num_threads()
    message(f"rerunning {len(plan.todo)} reference run(s) on {plan.executor}, {threads} torch threads", fmt)
    with sweep_bars(len(plan.todo), out=for_people(fmt)) as bars:
        yield bars


def check_readme(
    readme: Annotated[Path, typer.Argument(help="Markdown file with generated blocks.")] = Path("README.md"),
    write: Annotated[bool, typer.Option("--write", help="First copy each block's file into the block.")] = False,
) -> None:
    """Docs gate: each `<!-- generated: PATH -->` block equals PATH, re-derived from records (exit 1 on drift).

    Example: bench check-readme --write
    """
    from bench.gates.readme import check_readme, refresh_readme

    if write:
        for path in refresh_readme(readme, readme.resolve().parent):
            console.print(f"refreshed: {escape(path)}")

    report = check_readme(readme, readme.resolve().parent)
    for path in report.checked:
        console.print(f"checked: {escape(path)}")
    for problem in report.problems:
        console.print(f"[red]x[/] {escape(problem)}", highlight=False, soft_wrap=True)
    console.print(
        ("[red]" if report.problems else "[green]") + escape(report.summary()), highlight=False, soft_wrap=True
    )
    if report.problems:
        sys.exit(1)
