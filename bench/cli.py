"""The ``bench`` command.

User mistakes (a :class:`~bench.errors.BenchError`) print one red line and exit with status 2;
anything else is a harness bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.errors import BenchError, ConfigError

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
    retry_failed: Annotated[bool, typer.Option(help="Re-run runs whose record says failed.")] = False,
    metric: Annotated[str, typer.Option(help="Leaderboard sort metric.")] = "balanced_accuracy",
    results_dir: ResultsDir = Path("results"),
) -> None:
    """Train and evaluate a sweep (default: the bundled-data sweep), then print the leaderboards."""
    from bench.executors import LocalExecutor
    from bench.results import load_records
    from bench.sweep import Group, Sweep, default_sweep_path, load_sweep, plan_runs

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
    planned = plan_runs(specs, results_dir)
    todo = [p for p in planned if p.status is None or (retry_failed and p.status == "failed")]
    executor = LocalExecutor(_device(device))
    console.print(
        f"[bold]{plan.name}[/]: {len(specs)} runs ({len(todo)} to do) on {executor.device}, results in {results_dir}/"
    )
    started = time.perf_counter()
    failed = 0
    with _run_progress() as progress:
        overall = progress.add_task("sweep", total=len(specs), completed=len(planned) - len(todo), info="")
        tasks: dict[str, object] = {}

        def progress_for(item):
            tasks[item.key] = progress.add_task(item.label, total=None, info="loading data")
            return _progress_callback(progress, tasks[item.key])

        for record in executor.run(todo, results_dir, progress_for):
            task = tasks[record["key"]]
            progress.update(task, info=record["status"] + (f": {record.get('error')}" if record.get("error") else ""))
            progress.stop_task(task)
            failed += record["status"] == "failed"
            progress.advance(overall)
    elapsed = time.perf_counter() - started
    console.print(
        f"{len(todo)} run(s) done ({failed} failed), {len(planned) - len(todo)} already finished, in {elapsed:.0f} s"
    )
    keys = {p.key for p in planned}
    records = [r for r in load_records(results_dir) if r["key"] in keys]
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


def _print_timings(records: list[dict]) -> None:
    """Where the time went, per stage, over the runs of this sweep."""
    stages = ["data", "build", "train", "eval", "latency"]
    totals = {s: sum(r["timings_s"].get(s, 0.0) for r in records) for s in stages}
    whole = sum(totals.values()) or 1.0
    table = Table(title="time per stage (all runs)", header_style="bold")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    for stage in stages:
        table.add_row(stage, f"{totals[stage]:.1f}", f"{100 * totals[stage] / whole:.0f}%")
    console.print(table)


def _print_leaderboards(records: list[dict], metric: str, results_dir: Path) -> None:
    from bench.leaderboard import datasets_in, leaderboard, rich_table, write_leaderboard

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
    from bench.results import load_records

    records = load_records(results_dir)
    if not records:
        raise ConfigError(f"no run records under {results_dir}/runs: run `bench run` first")
    _print_leaderboards(records, metric, results_dir)


@list_app.command("backbones")
def list_backbones_cmd(
    resolution: Annotated[int, typer.Option(help="Count GMACs at this input side.")] = 224,
) -> None:
    """Registered backbones with parameters and GMACs at RESOLUTION (any other timm name works too)."""
    from bench.registry import create_backbone, list_backbones, min_input_size, model_stats, resolve_resolution

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
    from bench.data import describe_dataset, list_datasets

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
    from bench.latency import LatencyConfig, benchmark_backbones, latency_table, save_latency_records
    from bench.registry import get_backbone, list_backbones

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


def main() -> None:
    """Console entry point: user errors become one line and exit status 2."""
    try:
        app(standalone_mode=False)
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
