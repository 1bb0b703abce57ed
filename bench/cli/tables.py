"""The commands that print a table and train nothing: leaderboards, the registries, latency, the profile."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bench.cli import options
from bench.cli.output import Format, FormatOption, message, print_data, show, written
from bench.cli.shared import ResultsDir, stored_records
from bench.config import MAX_RESOLUTION, MIN_RESOLUTION
from bench.errors import ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS, get_metric
from bench.paths import WORKING_RESULTS, data_hint, describe_embedded, embedded_data, is_shipped, replaced_entries
from bench.reports.column_groups import COLUMN_GROUPS, parse_columns
from bench.table_columns import Keep, add_column

if TYPE_CHECKING:
    import pandas as pd

    from bench.runs.record import RunRecord

SPLITS = ("train", "val", "test")
Resolution = Annotated[
    int,
    typer.Option(
        help="Input side in pixels (upsized to a backbone's minimum).", min=MIN_RESOLUTION, max=MAX_RESOLUTION
    ),
]


def print_leaderboards(
    records: list[RunRecord],
    metric: str,
    results_dir: Path,
    fmt: Format = Format.table,
    columns: tuple[str, ...] = (),
) -> None:
    """One table per dataset of ``records``, printed and written under ``results_dir/leaderboards``.

    Each table is ``bench.leaderboard(records, dataset, metric)``, the library's own call: the records read from
    a folder bring its ``bench latency`` passes (:func:`bench.reports.latency_pass.passes_of`), read here once for
    every dataset rather than once per table.
    csv and json print the numeric tables of every dataset as one, with a ``dataset`` column: the rows of the
    CSV files written beside the Markdown. ``columns``: the optional column groups to add (``--columns``), whose
    tables and files are written under their own names (:func:`bench.reports.column_files.write_column_files`).
    """
    from bench.reports.column_files import write_column_files
    from bench.reports.latency_pass import passes_of
    from bench.reports.leaderboard import datasets_in, leaderboard
    from bench.reports.render import rich_table, write_leaderboard

    numeric = []
    passes = passes_of(records)
    for dataset in datasets_in(records):
        table = leaderboard(records, dataset, metric, passes=passes, columns=columns)
        if fmt in (Format.csv, Format.json):
            numeric.append(table)
        else:
            show(rich_table(table, dataset), fmt)
        paths = write_leaderboard(table, results_dir / "leaderboards", dataset)
        paths += write_column_files(table, records, results_dir, dataset)
        written(", ".join(map(str, paths)))
    if numeric:
        print_data(stacked(numeric), fmt)


def stacked(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The datasets' tables as one frame for csv/json. Their ``attrs`` (a subgroup detail frame among them) are left
    behind: pandas compares the inputs' attrs when it concatenates, and two frames in them cannot be compared."""
    import pandas as pd

    bare = []
    for table in tables:
        frame = table.copy()
        frame.attrs = {}
        bare.append(frame)
    return pd.concat(bare, ignore_index=True)


def leaderboard(
    metric: Annotated[
        str,
        typer.Option(
            help="Sort metric. " + " ".join(f"{name}: {get_metric(name).description}." for name in HEADLINE_METRICS)
        ),
    ] = "balanced_accuracy",
    columns: Annotated[
        str,
        typer.Option(
            help="Comma-separated column groups to add to the default columns: "
            + "; ".join(f"{g.name}: {g.description}" for g in COLUMN_GROUPS)
            + ". Written as leaderboards/<dataset>+<group>.md, never over the default table."
        ),
    ] = "",
    results_dir: ResultsDir = WORKING_RESULTS,
    fmt: FormatOption = Format.table,
) -> None:
    """Print and write the leaderboards from stored records (no training).

    Example: bench leaderboard --metric auc --format csv > leaderboard.csv

    Calibration and subgroups: bench leaderboard --columns calibration,subgroups
    """
    groups = parse_columns(columns)  # an unknown group is one line naming it, before any record is read
    print_leaderboards(stored_records(results_dir), metric, results_dir, fmt, groups)


def list_backbones(resolution: Resolution = 224, fmt: FormatOption = Format.table) -> None:
    """Registered backbones with parameters and GMACs at RESOLUTION (any other timm name works too).

    The figures are counted once per backbone, resolution and timm/torch version, then read from the cache.

    Example: bench list backbones --resolution 64 | grep efficientnet
    """
    import pandas as pd

    from bench.models.figures import registry_figures

    rows = [
        {
            "name": f.name,
            "title": f.title,
            "params_m": f.params / 1e6,
            "gmacs": f.gmacs,
            "min_input": f.min_input,
            "runs_at": f.runs_at,
        }
        for f in registry_figures(resolution)
    ]
    data = pd.DataFrame(rows)
    table = Table(title=f"backbones (GMACs per image at {resolution} px)", header_style="bold")
    add_column(table, "resolution", Keep.ANSWER, grouping=True)  # piped, each line says at which the GMACs are
    columns = {"name": Keep.ANSWER, "params (M)": Keep.ANSWER, "GMACs": Keep.ANSWER, "min input": Keep.FIGURE}
    columns |= {f"runs {resolution} px at": Keep.FIGURE, "title": Keep.DETAIL}
    for col, keep in columns.items():
        add_column(table, col, keep, wraps=col == "title", justify="left" if col in ("name", "title") else "right")
    for row in rows:
        table.add_row(
            str(resolution),
            row["name"],
            f"{row['params_m']:.2f}",
            f"{row['gmacs']:.3f}",
            str(row["min_input"]),
            f"{row['runs_at']}" + (" (upsized)" if row["runs_at"] != resolution else ""),
            row["title"],
        )
    show(table, fmt, data)
    for line in replaced_entries("backbones"):
        message(line, fmt)


def list_datasets(fmt: FormatOption = Format.table) -> None:
    """Registered datasets with classes and split sizes (from metadata, without decoding images).

    Example: bench list datasets --format json
    """
    from bench.data.entries import list_datasets
    from bench.data.loading import describe_dataset

    table = Table(title="datasets", header_style="bold")
    for col in ("name", "train", "val", "test", "groups in >1 split"):
        keep = Keep.ANSWER if col == "name" else Keep.DETAIL if col.startswith("groups") else Keep.FIGURE
        add_column(table, col, keep, justify="left" if col == "name" else "right")
    add_column(table, "classes", Keep.FIGURE, max_width=30)  # prose wraps at words (max_width) in a terminal
    add_column(table, "shares source with", Keep.DETAIL, max_width=50)
    entries = list_datasets()
    embedded = embedded_data()  # an installed wheel ships the entries, and the default sweep's data decoded
    served = [e for e in entries if not e.path.exists() and e.name in embedded and is_shipped(e.source_file)]
    absent = [e for e in entries if not e.path.exists() and e not in served]
    for entry in entries:
        info = {} if entry in absent else describe_dataset(entry)
        sizes = info.get("split_sizes", {})
        table.add_row(
            entry.name,
            *(("no local data", "", "") if entry in absent else (str(sizes.get(s, "?")) for s in SPLITS)),
            "" if info.get("groups_in_multiple_splits") is None else str(info["groups_in_multiple_splits"]),
            ", ".join(entry.classes),
            entry.shares_source_with,
        )
    show(table, fmt)
    if served:
        message(
            f"embedded in the wheel, decoded (so only at these resolutions): {describe_embedded()}; "
            "the full data: set BENCH_HOME to a clone",
            fmt,
        )
    shipped = [e.name for e in absent if is_shipped(e.source_file)]
    if shipped:
        message(f"no local data for {', '.join(shipped)}: {data_hint()}", fmt)
    for entry in absent:
        if entry.name not in shipped:
            message(f"no local data for {entry.name} at {entry.path}: fix 'path' in {entry.source_file}", fmt)
    for line in replaced_entries("datasets"):
        message(line, fmt)


def latency(
    backbones: Annotated[str | None, typer.Option(help="Comma-separated backbones (default: all registered).")] = None,
    resolution: Resolution = 224,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,32",
    precisions: Annotated[str, typer.Option(help="Comma-separated: fp32, fp16, bf16 (autocast).")] = "fp32",
    channels_last: Annotated[bool, typer.Option(help="Run in channels_last memory format.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model first.")] = False,
    budget: Annotated[float, typer.Option(help="Seconds of timed passes per setting at most.")] = 10.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    results_dir: ResultsDir = WORKING_RESULTS,
    fmt: FormatOption = Format.table,
) -> None:
    """Inference latency per backbone: p50/p90/p99, throughput, CV and peak memory, with a device fingerprint.

    Example: bench latency --backbones resnet18 --batch-sizes 1 --device cpu --format json
    """
    from bench.environment.device import resolve_device

    wanted = options.names(backbones, "--backbones", "backbone name")
    sizes = options.ints(batch_sizes, "--batch-sizes")
    on = str(resolve_device(device))
    import pandas as pd

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
    show(latency_table(results), fmt, pd.json_normalize([r.to_dict() for r in results]))
    written(str(save_latency_records(results, results_dir)))


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
    engines: Annotated[
        bool,
        typer.Option(
            "--engines",
            help="Compare the engine settings instead (fp32/bf16 x NCHW/channels-last), on the CPU or with --device "
            "cuda a GPU: step time, ratio to fp32 NCHW, achieved FLOP/s and its share of the measured peak; the one "
            "`bench run` picks is marked.",
        ),
    ] = False,
    peers: Annotated[
        bool,
        typer.Option(
            "--peers",
            help="CPU: the harness's step against its peers' loops instead (the bare fp32 loop, MedMNIST v2's, timm's "
            "train.py at its defaults and with --channels-last --amp bf16, the harness in auto and fp32 NCHW): "
            "images/s and ratios, interleaved in one run.",
        ),
    ] = False,
    fused_optimizer: Annotated[
        bool,
        typer.Option(
            help="With --engines: also each setting with the fused optimiser (a GPU's always is); with --peers: "
            "harness-auto with it (bench run --fused-optimizer)."
        ),
    ] = False,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="With --engines: also each setting through torch.compile (bench run --compile), its compile time "
            "apart.",
        ),
    ] = False,
    settings: Annotated[
        str | None,
        typer.Option(
            help="With --engines: only these settings, comma-separated (fp32-nchw,bf16-nhwc,bf16-nhwc+compile); "
            "fp32-nchw, the ratios' baseline, is always timed."
        ),
    ] = None,
    loops: Annotated[str | None, typer.Option(help="With --peers: comma-separated loops (default: all).")] = None,
    timm_script: Annotated[
        Path | None,
        typer.Option(help="With --peers: timm's train.py, which the timm wheel lacks.", envvar="BENCH_TIMM_SCRIPT"),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Harness training step vs the bare model step: the overhead ratio and what each harness part costs.

    Example: bench profile --backbones resnet18 --resolutions 28 --threads 1

    Engines: bench profile --engines --backbones resnet18,densenet121,efficientnet_b0 --resolutions 32 --threads 1

    GPU engines: bench profile --engines --compile --device cuda --resolutions 224

    Peers: bench profile --peers --timm-script train.py --backbones resnet18 --resolutions 32 --threads 1 --rounds 4
    """
    from bench.environment.device import resolve_device

    wanted = options.names(backbones, "--backbones", "backbone name")
    sides = options.resolutions(resolutions, "--resolutions")
    on = str(resolve_device(device))
    if compile and not engines:
        raise ConfigError("--compile goes with --engines, which times the engine settings")
    if settings is not None and not engines:
        raise ConfigError("--settings goes with --engines, which times the engine settings")
    if engines:
        from bench.train.engine_speed import EngineSpeedConfig, engine_speed_table, engine_speeds

        named = tuple(options.csv(settings))
        if settings is not None and not named:
            raise ConfigError("--settings is empty: name at least one setting, e.g. bf16-nhwc")
        config = EngineSpeedConfig(
            wanted, sides, batch_size, rounds, warmup, threads, fused_optimizer, compile, on, named
        )
        show(engine_speed_table(engine_speeds(config)), fmt)
        return
    if peers:
        _peers(wanted, sides, batch_size, rounds, warmup, threads, on, loops, timm_script, fmt, fused_optimizer)
        return
    if fused_optimizer:
        raise ConfigError("--fused-optimizer goes with --engines or --peers, which time the CPU engine settings")
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
    show(profile_table(profile(config), protocol), fmt)


def _peers(
    wanted: tuple[str, ...],
    sides: tuple[int, ...],
    batch_size: int,
    rounds: int,
    warmup: int,
    threads: int | None,
    on: str,
    loops: str | None,
    timm_script: Path | None,
    fmt: Format,
    fused: bool = False,
) -> None:
    """``bench profile --peers``: :mod:`bench.train.peers`' loops side by side, then issue 30's targets."""
    if on != "cpu":
        raise ConfigError(f"--peers compares CPU training loops: use --device cpu, not {on}")
    from bench.train.peer_table import peer_frame, peer_table, target_table
    from bench.train.peers import LOOPS, PeerConfig, peer_speeds

    chosen = tuple(options.csv(loops)) or LOOPS
    config = PeerConfig(
        wanted, sides, batch_size, rounds, warmup, threads=threads, loops=chosen, timm_script=timm_script, fused=fused
    )
    rows = peer_speeds(config)
    show(peer_table(rows, timm_script), fmt, peer_frame(rows, timm_script))
    if fmt in (Format.table, Format.md):
        show(target_table(rows), fmt)
