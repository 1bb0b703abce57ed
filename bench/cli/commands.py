"""The ``bench`` command.

User mistakes (a :class:`~bench.errors.BenchError`) print one red line and exit with status 2;
anything else is a harness bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.errors import BenchError, ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS, METRIC_NAMES

if TYPE_CHECKING:
    from bench.runs.record import RunRecord

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0] if __doc__ else None)
list_app = typer.Typer(help="List registered backbones or datasets.")
app.add_typer(list_app, name="list")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line: never wrapped

ResultsDir = Annotated[Path, typer.Option("--results-dir", help="Where run records and tables go.")]


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _ints(value: str | None, option: str) -> list[int] | None:
    try:
        return [int(v) for v in _csv(value)] if value else None
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, got {value!r}") from None


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is visible on this machine")
    return torch.device(name)


@app.command()
def run(
    sweep: Annotated[str | None, typer.Option(help="Sweep TOML file or name under sweeps/ (default: default).")] = None,
    backbones: Annotated[str | None, typer.Option(help="Comma-separated backbones (ad-hoc sweep).")] = None,
    datasets: Annotated[str | None, typer.Option(help="Comma-separated datasets (ad-hoc sweep).")] = None,
    protocol: Annotated[str, typer.Option(help="Protocol preset or TOML file (ad-hoc sweep).")] = "scratch",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (ad-hoc sweep).")] = "0",
    resolution: Annotated[int, typer.Option(help="Input side in pixels (ad-hoc sweep).")] = 28,
    epochs: Annotated[str | None, typer.Option(help="Epochs per phase: one number, or one per phase.")] = None,
    data_root: Annotated[Path | None, typer.Option(help="Read the dataset from this folder (full download).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[
        str | None,
        typer.Option(
            help="auto (CUDA: bf16 autocast, fp16 without bf16; CPU: fp32), fp32, or bf16 or fp16 (CUDA only). "
            "Overrides the sweep's (default: auto); not auto is part of the run key."
        ),
    ] = None,
    retry_failed: Annotated[bool, typer.Option(help="Re-run runs whose record says failed.")] = False,
    metric: Annotated[str, typer.Option(help="Leaderboard sort metric.")] = "balanced_accuracy",
    results_dir: ResultsDir = Path("results"),
    executor_kind: Annotated[
        str, typer.Option("--executor", help="local (this machine; one process per GPU) or ray (a Ray cluster).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="ray: join this cluster, auto or HOST:PORT (default: start a local Ray).")
    ] = None,
    cpus_per_task: Annotated[int, typer.Option(help="ray: CPUs (torch threads) each run holds.")] = 1,
    retries: Annotated[
        int, typer.Option(help="Re-queue a run whose worker failed or was lost this many times, then record it failed.")
    ] = 1,
) -> None:
    """Train and evaluate a sweep (default: the bundled-data sweep), then print the leaderboards."""
    from bench.precision import PRECISIONS
    from bench.runs.executors.driver import Executor
    from bench.runs.executors.local import LocalExecutor, visible_devices
    from bench.runs.executors.ray import RayExecutor
    from bench.runs.record import load_records
    from bench.runs.sweep import Group, Sweep, default_sweep_path, load_sweep, plan_runs
    from bench.train.engine import check_precision

    if backbones or datasets:
        if not (backbones and datasets):
            raise ConfigError("an ad-hoc sweep needs both --backbones and --datasets")
        group = Group(
            backbones=tuple(_csv(backbones)),
            datasets=tuple(_csv(datasets)),
            protocols=(protocol,),
            seeds=tuple(_ints(seeds, "--seeds")),
            resolution=resolution,
        )
        plan = Sweep(name="adhoc", group=(group,))
    else:
        plan = load_sweep(sweep or default_sweep_path())
    specs = plan.expand(str(data_root) if data_root else None)
    if epochs is not None:
        per_phase = _ints(epochs, "--epochs")
        override = per_phase[0] if len(per_phase) == 1 else tuple(per_phase)
        specs = [dataclasses.replace(s, epochs=override) for s in specs]
    if precision is not None:
        if precision not in PRECISIONS:
            raise ConfigError(f"--precision takes {', '.join(PRECISIONS)}, got {precision!r}")
        specs = [dataclasses.replace(s, precision=precision) for s in specs]
    planned = plan_runs(specs, results_dir)
    todo = [p for p in planned if p.status is None or (retry_failed and p.status == "failed")]
    if executor_kind not in ("local", "ray"):
        raise ConfigError(f"--executor takes local or ray, got {executor_kind!r}")
    if ray_address and executor_kind != "ray":
        raise ConfigError(f"--ray-address {ray_address} needs --executor ray")
    executor: Executor
    if executor_kind == "ray":
        executor = RayExecutor(ray_address, device, cpus_per_task, retries)
        here = [torch.device("cpu")] if device == "cpu" else []  # Ray's GPUs are on its nodes: each run checks its own
    else:
        here = visible_devices(_device(device))
        executor = LocalExecutor(here, retries)
    for requested in dict.fromkeys(s.precision for s in specs):
        for each in here:
            check_precision(each, requested)
    console.print(
        f"[bold]{plan.name}[/]: {len(specs)} runs ({len(todo)} to do) on {executor}, results in {results_dir}/"
    )
    started = time.perf_counter()
    done = failed = 0
    with _run_progress() as progress:
        tasks: dict[str, object] = {}

        def counts() -> str:
            return (
                f"{done} done, {len(tasks) - done - failed} running, {failed} failed, {len(todo) - len(tasks)} queued"
            )

        overall = progress.add_task("sweep", total=len(specs), completed=len(planned) - len(todo), info=counts())

        def progress_for(item):
            tasks[item.key] = progress.add_task(item.label, total=None, info="loading data")
            progress.update(overall, info=counts())
            return _progress_callback(progress, tasks[item.key])

        for record in executor.run(todo, results_dir, progress_for):
            task = tasks[record.key]
            progress.update(task, info=record.status + (f": {record.error}" if record.error else ""))
            progress.stop_task(task)
            failed += record.status == "failed"
            done += record.status != "failed"
            progress.update(overall, advance=1, info=counts())
    elapsed = time.perf_counter() - started
    console.print(
        f"{len(todo)} run(s) done ({failed} failed), {len(planned) - len(todo)} already finished, in {elapsed:.0f} s"
    )
    keys = {p.key for p in planned}
    records = [r for r in load_records(results_dir) if r.key in keys]
    _print_timings(records)
    _print_leaderboards(records, metric, results_dir)


def _run_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _progress_callback(progress: Progress, task):
    state = {"phase": "", "loss": "", "val": ""}

    def callback(event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            progress.update(task, total=event["total_steps"], info="training")
            progress.start_task(task)
        elif kind == "step":
            state["phase"] = f"{event['phase']} ep {event['epoch']}"
            progress.update(task, advance=1, info=f"{state['phase']} {state['loss']} {state['val']}")
        elif kind == "epoch":
            log = event["log"]
            state["loss"] = f"loss {log.train_loss:.3f}"
            state["val"] = f"val loss {log.val_loss:.3f} bal.acc {log.val['balanced_accuracy']:.3f}"

    return callback


def _print_timings(records: list[RunRecord]) -> None:
    """Where the time went, per stage, over the runs of this sweep.

    The per-run spread shows one-off costs: the first load of a dataset at a resolution decodes its images,
    later loads read the decode cache (data: max vs min).
    """
    import pandas as pd

    stages = ["data", "build", "train", "eval", "latency"]
    per_run = pd.DataFrame([r.timings_s for r in records], columns=stages)  # NaN: a failed run stopped earlier
    totals = per_run.sum()
    whole = totals.sum() or 1.0
    table = Table(
        title=f"time per stage ({len(records)} runs)",
        caption="train includes the per-epoch validation; eval is the one test-split pass",
        header_style="bold",
    )
    for column in ("stage", "seconds", "share", "per run: min", "median", "max"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in stages:
        runs = per_run[stage].dropna()
        spread = [f"{v:.2f}" for v in (runs.min(), runs.median(), runs.max())] if len(runs) else ["-"] * 3
        table.add_row(stage, f"{totals[stage]:.1f}", f"{100 * totals[stage] / whole:.0f}%", *spread)
    console.print(table)


def _print_leaderboards(records: list[RunRecord], metric: str, results_dir: Path) -> None:
    from bench.reports.leaderboard import datasets_in, leaderboard
    from bench.reports.render import rich_table, write_leaderboard

    for dataset in datasets_in(records):
        table = leaderboard(records, dataset, metric)
        console.print(rich_table(table, f"{dataset}: test split, sorted by {metric}"))
        paths = write_leaderboard(table, results_dir / "leaderboards", dataset)
        console.print(f"written: {', '.join(map(str, paths))}")


@app.command("leaderboard")
def leaderboard_cmd(
    metric: Annotated[str, typer.Option(help="Sort metric.")] = "balanced_accuracy",
    results_dir: ResultsDir = Path("results"),
) -> None:
    """Print and write the leaderboards from stored records (no training)."""
    _print_leaderboards(_stored_records(results_dir), metric, results_dir)


@list_app.command("backbones")
def list_backbones_cmd(
    resolution: Annotated[int, typer.Option(help="Count GMACs at this input side.")] = 224,
) -> None:
    """Registered backbones with parameters and GMACs at RESOLUTION (any other timm name works too)."""
    from bench.models.registry import create_backbone, list_backbones, min_input_size, model_stats, resolve_resolution

    table = Table(title=f"backbones (GMACs per image at {resolution} px)", header_style="bold")
    for col in ("name", "title", "params (M)", "GMACs", "min input", f"runs {resolution} px at"):
        table.add_column(col, justify="right" if col not in ("name", "title") else "left")
    for entry in list_backbones():
        effective = resolve_resolution(entry, resolution, "upsize")
        model, _ = create_backbone(entry.name, num_classes=1000)
        stats = model_stats(model, effective)
        table.add_row(
            entry.name,
            entry.title,
            f"{stats['params'] / 1e6:.2f}",
            f"{stats['gmacs']:.3f}",
            str(min_input_size(entry)),
            f"{effective}" + (" (upsized)" if effective != resolution else ""),
        )
    console.print(table)


@list_app.command("datasets")
def list_datasets_cmd() -> None:
    """Registered datasets with classes and split sizes (from metadata, without decoding images)."""
    from bench.data.entries import list_datasets
    from bench.data.loading import describe_dataset

    table = Table(title="datasets", header_style="bold")
    for col in ("name", "classes", "train", "val", "test", "groups in >1 split", "shares source with"):
        table.add_column(col, overflow="fold")
    for entry in list_datasets():
        info = describe_dataset(entry)
        sizes = info.get("split_sizes", {})
        table.add_row(
            entry.name,
            ", ".join(entry.classes),
            *(str(sizes.get(s, "?")) for s in ("train", "val", "test")),
            "" if info.get("groups_in_multiple_splits") is None else str(info["groups_in_multiple_splits"]),
            entry.shares_source_with,
        )
    console.print(table)


@app.command()
def latency(
    backbones: Annotated[str | None, typer.Option(help="Comma-separated backbones (default: all registered).")] = None,
    resolution: Annotated[int, typer.Option(help="Input side in pixels (upsized to a backbone's minimum).")] = 224,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,32",
    precisions: Annotated[str, typer.Option(help="Comma-separated: fp32, fp16, bf16 (autocast).")] = "fp32",
    channels_last: Annotated[bool, typer.Option(help="Run in channels_last memory format.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model first.")] = False,
    budget: Annotated[float, typer.Option(help="Seconds of timed passes per setting at most.")] = 10.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    results_dir: ResultsDir = Path("results"),
) -> None:
    """Inference latency per backbone: p50/p90/p99, throughput, CV and peak memory, with a device fingerprint."""
    from bench.latency.measure import benchmark_backbones
    from bench.latency.report import latency_table, save_latency_records
    from bench.latency.timing import LatencyConfig
    from bench.models.registry import get_backbone, list_backbones

    names = _csv(backbones) or [e.name for e in list_backbones()]
    for name in names:
        get_backbone(name)
    config = LatencyConfig(
        batch_sizes=tuple(_ints(batch_sizes, "--batch-sizes")),
        precisions=tuple(_csv(precisions)),
        channels_last=channels_last,
        compile=compile,
        time_budget_s=budget,
        device=str(_device(device)),
    )
    results = benchmark_backbones(names, resolution, config)
    console.print(latency_table(results))
    console.print(f"written: {save_latency_records(results, results_dir)}")


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="First backbone.")],
    b: Annotated[str, typer.Argument(help="Second backbone.")],
    dataset: Annotated[str, typer.Option(help="Dataset both were tested on.")],
    metric: Annotated[str, typer.Option(help=f"One of {', '.join(METRIC_NAMES)}.")] = "balanced_accuracy",
    protocol: Annotated[str | None, typer.Option(help="Protocol of A (and of B unless --protocol-b).")] = None,
    protocol_b: Annotated[str | None, typer.Option(help="Protocol of B, when it differs from A's.")] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
    results_dir: ResultsDir = Path("results"),
) -> None:
    """Is A better than B? Paired bootstrap over the same test images (seed-averaged) and McNemar per seed."""
    from bench.reports.compare import compare_backbones
    from bench.runs.record import load_records

    result = compare_backbones(
        load_records(results_dir), dataset, a, b, metric, protocol, protocol_b or protocol, n_resamples=resamples
    )
    p = result.paired
    table = Table(title=f"{a} vs {b} on {dataset}: {metric} (paired bootstrap, {p.n_resamples} resamples)")
    for col in ("backbone", "protocol", "seeds", metric):
        table.add_column(col)
    for side, score in ((result.a, p.score_a), (result.b, p.score_b)):
        table.add_row(side.backbone, side.protocol, ",".join(map(str, side.seeds)), f"{score:.4f}")
    console.print(table)
    if result.mcnemar_by_seed:
        mc = Table(title="McNemar's exact test on accuracy, per seed", header_style="bold")
        for col in ("seed", f"only {a} right", f"only {b} right", "p"):
            mc.add_column(col, justify="right")
        for s, t in result.mcnemar_by_seed.items():
            mc.add_row(str(s), str(t.only_a_correct), str(t.only_b_correct), f"{t.p_value:.4g}")
        console.print(mc)
    verdict = "significant" if result.significant else "not significant"
    skipped = f" ({p.n_skipped} undefined resamples skipped)" if p.n_skipped else ""
    console.print(
        f"difference {a} - {b} = {p.difference:+.4f}, {100 * p.confidence:.0f}% CI [{p.low:+.4f}, {p.high:+.4f}], "
        f"p = {p.p_value:.4g}: [bold]{verdict}[/] at {1 - p.confidence:.2f}{skipped}"
    )


@app.command("profile")
def profile_cmd(
    backbones: Annotated[str, typer.Option(help="Comma-separated backbones.")] = "resnet18,efficientnet_b0",
    resolutions: Annotated[str, typer.Option(help="Comma-separated input sides in pixels.")] = "28,64",
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 128,
    rounds: Annotated[int, typer.Option(help="Timed rounds per row (each runs both steps once).")] = 8,
    warmup: Annotated[int, typer.Option(help="Untimed rounds first.")] = 2,
    protocol: Annotated[str, typer.Option(help="Protocol whose first phase and augmentation are used.")] = "scratch",
    channels: Annotated[int, typer.Option(help="Image channels of the fake dataset: 1 (grayscale) or 3.")] = 3,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads (1: steadier on a shared machine).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
) -> None:
    """Harness training step vs the bare model step: the overhead ratio and what each harness part costs."""
    from bench.train.profile import ProfileConfig, profile, profile_table

    config = ProfileConfig(
        backbones=tuple(_csv(backbones) or ()),
        resolutions=tuple(_ints(resolutions, "--resolutions") or ()),
        batch_size=batch_size,
        rounds=rounds,
        warmup=warmup,
        protocol=protocol,
        channels=channels,
        threads=threads,
        device=str(_device(device)),
    )
    console.print(profile_table(profile(config), protocol))


Metric = Annotated[str, typer.Option(help=f"Accuracy metric: {', '.join(HEADLINE_METRICS)}.")]
Speed = Annotated[str, typer.Option(help="Speed axis: p50 (batch-1 ms/image, lower is better) or throughput.")]


def _stored_records(results_dir: Path) -> list[RunRecord]:
    from bench.runs.record import load_records

    records = load_records(results_dir)
    if not records:
        raise ConfigError(f"no run records under {results_dir}/runs: run `bench run` first")
    return records


@app.command("plot")
def plot_cmd(
    metric: Metric = "balanced_accuracy", latency: Speed = "p50", results_dir: ResultsDir = Path("results")
) -> None:
    """Accuracy-vs-latency plots per dataset and figures per run, from stored records (no training)."""
    from bench.reports.plots import plot_all

    started = time.perf_counter()
    plotted = plot_all(_stored_records(results_dir), metric, latency, results_dir / "plots")
    for dataset, paths in plotted.tradeoff.items():
        console.print(
            f"{dataset}: " + (", ".join(map(str, paths)) or "nothing to plot (no finished run with a latency)")
        )
    drawn = sum(f.drawn for f in plotted.runs.values())
    console.print(
        f"per-run figures under {results_dir / 'plots' / 'runs'}/: {drawn} drawn, "
        f"{len(plotted.runs) - drawn} up to date ({time.perf_counter() - started:.1f} s)"
    )


@app.command("report")
def report_cmd(
    metric: Metric = "balanced_accuracy", latency: Speed = "p50", results_dir: ResultsDir = Path("results")
) -> None:
    """One self-contained HTML page: plots, leaderboards and provenance, from stored records (no training)."""
    from bench.reports.html import build_report

    started = time.perf_counter()
    report = build_report(_stored_records(results_dir), results_dir, metric, latency)
    console.print(
        f"written: {report.html} ({report.html.stat().st_size / 1e6:.1f} MB, opens offline), "
        f"{len(report.leaderboards)} leaderboard files under {results_dir / 'leaderboards'}/, "
        f"plots under {results_dir / 'plots'}/ ({time.perf_counter() - started:.1f} s)"
    )


@app.command("reproduction")
def reproduction_cmd(
    sweep: Annotated[str, typer.Option(help="Sweep TOML file or name whose [[published]] results to compare.")],
    results_dir: ResultsDir = Path("results"),
) -> None:
    """Published vs measured (seed mean ± std) for a sweep that reproduces a paper, from stored records."""
    from bench.reports.reproduction import COMMAND, display_frame, sweep_table, write_reproduction
    from bench.runs.sweep import load_sweep

    plan = load_sweep(sweep)
    table = sweep_table(_stored_records(results_dir), plan)
    if table.empty:
        raise ConfigError(f"no finished runs of sweep {plan.name!r} under {results_dir}/runs")
    shown = display_frame(table)
    rich = Table(title=f"{plan.name}: published vs measured (test split)", header_style="bold")
    for col in shown.columns:
        rich.add_column(str(col), justify="left" if col in ("dataset", "backbone") else "right")
    for row in shown.itertuples(index=False):
        rich.add_row(*map(str, row))
    console.print(rich)
    command = COMMAND.format(sweep=sweep, results_dir=results_dir)
    console.print(f"written: {write_reproduction(table, results_dir / 'comparison.md', command)}")


@app.command("check")
def check_cmd(
    results_dir: Annotated[
        Path | None, typer.Option("--results-dir", help="Compare the records already here instead of rerunning.")
    ] = None,
    reference: Annotated[Path, typer.Option(help="The committed reference records.")] = Path("results/reference"),
    sweep: Annotated[str, typer.Option(help="Sweep file or name the reference was made from.")] = "reference",
    tolerance: Annotated[
        float | None,
        typer.Option(help="Largest metric drop accepted where runs cannot be compared exactly (all datasets)."),
    ] = None,
    device: Annotated[str, typer.Option(help="Device for the rerun (the reference was trained on the CPU).")] = "cpu",
) -> None:
    """Accuracy gate: rerun the reference sweep in a temp folder, compare each test metric (exit 1 on a regression)."""
    import tempfile

    from bench.gates import accuracy as gate
    from bench.runs.record import load_records
    from bench.runs.sweep import load_sweep, sweep_records, sweep_runs

    refs = load_records(reference)
    if not refs:
        raise ConfigError(f"no reference records under {reference}/runs: create them with `{gate.REFERENCE_COMMAND}`")
    specs = load_sweep(sweep).expand()
    if results_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
            current = _rerun_reference(specs, Path(tmp), refs, _device(device))
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
        console.print(f"[bold]{pairing.label}[/]: {escape(pairing.basis())}", soft_wrap=True)
    console.print(gate.report_table(report))
    for problem in report.problems:
        console.print(f"[red]x[/] {escape(problem)}", highlight=False, soft_wrap=True)
    console.print(("[green]" if report.passed else "[red]") + escape(report.summary()), highlight=False, soft_wrap=True)
    if not report.passed:
        sys.exit(1)  # not typer.Exit: main() runs click in non-standalone mode, which returns its code


def _rerun_reference(
    specs: list, results_dir: Path, reference: list[RunRecord], device: torch.device
) -> list[RunRecord]:
    """Train ``specs`` into ``results_dir`` with the reference's torch thread count where this machine has it."""
    from bench.gates.accuracy import reference_threads
    from bench.runs.executors.local import LocalExecutor
    from bench.runs.record import load_records
    from bench.runs.sweep import plan_runs

    threads = reference_threads(reference)
    if threads is not None:
        torch.set_num_threads(threads)
    planned = plan_runs(specs, results_dir)
    console.print(f"rerunning {len(planned)} reference run(s) on {device}, {torch.get_num_threads()} torch threads")
    with _run_progress() as progress:
        tasks: dict[str, object] = {}

        def progress_for(item):
            tasks[item.key] = progress.add_task(item.label, total=None, info="loading data")
            return _progress_callback(progress, tasks[item.key])

        for record in LocalExecutor([device]).run(planned, results_dir, progress_for):
            progress.update(tasks[record.key], info=record.status)
            progress.stop_task(tasks[record.key])
    return load_records(results_dir)


@app.command("check-readme")
def check_readme_cmd(
    readme: Annotated[Path, typer.Argument(help="Markdown file with generated blocks.")] = Path("README.md"),
    write: Annotated[bool, typer.Option("--write", help="First copy each block's file into the block.")] = False,
) -> None:
    """Docs gate: each `<!-- generated: PATH -->` block equals PATH, re-derived from records (exit 1 on drift)."""
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


def main() -> None:
    """Console entry point: user errors become one line and exit status 2."""
    try:
        status = app(standalone_mode=False)  # typer.Exit(n) comes back as n, not as an exception
        if isinstance(status, int) and status:
            sys.exit(status)
    except BenchError as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except Exception as err:  # click usage errors carry their own exit code
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise
