"""The commands that print a table and train nothing: leaderboards, the registries, latency, the profile."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bench.cli import options
from bench.cli.shared import ResultsDir, console, stored_records
from bench.config import MAX_RESOLUTION, MIN_RESOLUTION

if TYPE_CHECKING:
    from bench.runs.record import RunRecord

Resolution = Annotated[
    int,
    typer.Option(
        help="Input side in pixels (upsized to a backbone's minimum).", min=MIN_RESOLUTION, max=MAX_RESOLUTION
    ),
]


def print_leaderboards(records: list[RunRecord], metric: str, results_dir: Path) -> None:
    """One table per dataset of ``records``, printed and written under ``results_dir/leaderboards``."""
    from bench.reports.leaderboard import datasets_in, leaderboard
    from bench.reports.render import rich_table, write_leaderboard

    for dataset in datasets_in(records):
        table = leaderboard(records, dataset, metric)
        console.print(rich_table(table, f"{dataset}: test split, sorted by {metric}"))
        paths = write_leaderboard(table, results_dir / "leaderboards", dataset)
        console.print(f"written: {', '.join(map(str, paths))}")


def leaderboard(
    metric: Annotated[str, typer.Option(help="Sort metric.")] = "balanced_accuracy",
    results_dir: ResultsDir = Path("results"),
) -> None:
    """Print and write the leaderboards from stored records (no training)."""
    print_leaderboards(stored_records(results_dir), metric, results_dir)


def list_backbones(resolution: Resolution = 224) -> None:
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


def list_datasets() -> None:
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


def latency(
    backbones: Annotated[str | None, typer.Option(help="Comma-separated backbones (default: all registered).")] = None,
    resolution: Resolution = 224,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,32",
    precisions: Annotated[str, typer.Option(help="Comma-separated: fp32, fp16, bf16 (autocast).")] = "fp32",
    channels_last: Annotated[bool, typer.Option(help="Run in channels_last memory format.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model first.")] = False,
    budget: Annotated[float, typer.Option(help="Seconds of timed passes per setting at most.")] = 10.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    results_dir: ResultsDir = Path("results"),
) -> None:
    """Inference latency per backbone: p50/p90/p99, throughput, CV and peak memory, with a device fingerprint."""
    from bench.environment.device import resolve_device

    wanted = options.names(backbones, "--backbones", "backbone name")
    sizes = options.ints(batch_sizes, "--batch-sizes")
    on = str(resolve_device(device))
    from bench.latency.measure import benchmark_backbones
    from bench.latency.report import latency_table, save_latency_records
    from bench.latency.timing import LatencyConfig
    from bench.models.registry import get_backbone, list_backbones

    names = list(wanted) or [e.name for e in list_backbones()]
    for name in names:
        get_backbone(name)
    config = LatencyConfig(
        batch_sizes=tuple(sizes),
        precisions=tuple(options.csv(precisions)),
        channels_last=channels_last,
        compile=compile,
        time_budget_s=budget,
        device=on,
    )
    results = benchmark_backbones(names, resolution, config)
    console.print(latency_table(results))
    console.print(f"written: {save_latency_records(results, results_dir)}")


def profile(
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
    from bench.environment.device import resolve_device

    wanted = options.names(backbones, "--backbones", "backbone name")
    sides = options.resolutions(resolutions, "--resolutions")
    on = str(resolve_device(device))
    from bench.train.profile import ProfileConfig, profile, profile_table  # torch: after the options are checked

    config = ProfileConfig(
        backbones=wanted,
        resolutions=sides,
        batch_size=batch_size,
        rounds=rounds,
        warmup=warmup,
        protocol=protocol,
        channels=channels,
        threads=threads,
        device=on,
    )
    console.print(profile_table(profile(config), protocol))
