"""The CI gates: ``bench check`` (accuracy against the reference records) and ``bench check-readme`` (docs)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from bench.cli.options import results_folder
from bench.cli.output import Format, FormatOption, for_people, message, show
from bench.cli.progress import sweep_bars
from bench.cli.shared import console
from bench.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from bench.runs.record import RunRecord


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
    import tempfile

    from bench.environment.device import resolve_device
    from bench.gates import accuracy as gate
    from bench.runs.record import load_records
    from bench.runs.sweep import load_sweep, sweep_records, sweep_runs

    refs = load_records(reference)
    if not refs:
        raise ConfigError(f"no reference records under {reference}/runs: create them with `{gate.REFERENCE_COMMAND}`")
    specs = load_sweep(sweep).expand()
    if results_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
            current = _rerun_reference(specs, Path(tmp), refs, resolve_device(device), fmt)
    elif results_dir.resolve() == reference.resolve():
        raise ConfigError(f"--results-dir {results_dir} is the reference itself: point it at a rerun")
    else:
        current = load_records(results_dir)
        if not current:
            raise ConfigError(f"no run records under {results_dir}/runs to compare with the reference")
    current = sweep_records(current, sweep_runs(specs))
    limits = gate.load_tolerance(reference) if tolerance is None else gate.Tolerance(tolerance)
    report = gate.compare_records(refs, current, limits)
    for pairing in report.pairings:
        message(f"{pairing.label}: {pairing.basis()}", fmt)
    show(gate.report_table(report), fmt, gate.report_frame(report))
    for problem in report.problems:
        message(f"x {problem}", fmt, style="red")
    message(report.summary(), fmt, style="green" if report.passed else "red")
    if not report.passed:
        sys.exit(1)  # not typer.Exit: main() runs click in non-standalone mode, which returns its code


def _rerun_reference(
    specs: list, results_dir: Path, reference: list[RunRecord], device: torch.device, fmt: Format
) -> list[RunRecord]:
    """Train ``specs`` into ``results_dir`` with the reference's torch thread count where this machine has it.

    In the CPU's standing fp32 NCHW, as the reference was made: ``plan_runs`` without an engine choice measures
    nothing, so the rerun's keys are the reference's own (:data:`bench.gates.accuracy.REFERENCE_COMMAND`).
    """
    import torch

    from bench.gates.accuracy import reference_threads
    from bench.runs.executors.local import LocalExecutor
    from bench.runs.record import load_records
    from bench.runs.sweep import plan_runs

    threads = reference_threads(reference)
    if threads is not None:
        torch.set_num_threads(threads)
    planned = plan_runs(specs, results_dir)
    message(f"rerunning {len(planned)} reference run(s) on {device}, {torch.get_num_threads()} torch threads", fmt)
    with sweep_bars(len(planned), out=for_people(fmt)) as bars:
        for record in LocalExecutor([device]).run(planned, results_dir, bars.started):
            bars.finished(record)
    return load_records(results_dir)


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
