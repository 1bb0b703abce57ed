"""``bench run``: parse the options, hand them to :func:`bench.runs.plan.plan_sweep`, show progress and tables."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bench.cli import options
from bench.cli.output import show
from bench.cli.progress import SweepBars, sweep_bars
from bench.cli.shared import Interrupted, ResultsDir, console
from bench.cli.tables import print_leaderboards
from bench.config import MAX_RESOLUTION, MIN_RESOLUTION
from bench.paths import PUBLISHED_RESULTS, WORKING_RESULTS
from bench.table_columns import Keep, add_column

if TYPE_CHECKING:
    from bench.runs.plan import SweepPlan
    from bench.runs.planned import PlannedRun
    from bench.runs.record import RunRecord
    from bench.train.events import ProgressFn


def run(
    sweep: Annotated[str | None, typer.Option(help="Sweep TOML file or name under sweeps/ (default: default).")] = None,
    backbones: Annotated[str | None, typer.Option(help="Comma-separated backbones (ad-hoc sweep).")] = None,
    datasets: Annotated[
        str | None,
        typer.Option(help="Comma-separated datasets (ad-hoc sweep): registered names, or folders (./my_photos)."),
    ] = None,
    protocol: Annotated[str, typer.Option(help="Protocol preset or TOML file (ad-hoc sweep).")] = "scratch",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (ad-hoc sweep).")] = "0",
    resolution: Annotated[
        int,
        typer.Option(help="Input side in pixels (ad-hoc sweep).", min=MIN_RESOLUTION, max=MAX_RESOLUTION),
    ] = 28,
    epochs: Annotated[str | None, typer.Option(help="Epochs per phase: one number, or one per phase.")] = None,
    train_fractions: Annotated[
        str | None,
        typer.Option(
            help="Train on these shares of the training split, one run each (0.1,0.25,0.5,1; stratified, nested; "
            "overrides the sweep's)."
        ),
    ] = None,
    fraction_budget: Annotated[
        str | None,
        typer.Option(
            help="What a share below 1 keeps: epochs (each trains --epochs) or steps (a share f trains --epochs/f, "
            "rounded up: about the whole split's optimiser steps; needs --epochs). Overrides the sweep's "
            "(default: epochs)."
        ),
    ] = None,
    data_root: Annotated[Path | None, typer.Option(help="Read the dataset from this folder (full download).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[
        str | None,
        typer.Option(
            help="auto (CUDA: bf16 autocast, fp16 without bf16; CPU: fp32, or bf16 where measured faster), fp32, "
            "bf16 (CUDA, or a CPU with native bf16) or fp16 (CUDA only). Overrides the sweep's (default: auto); "
            "bf16 and any asked precision are part of the run key."
        ),
    ] = None,
    memory_format: Annotated[
        str | None,
        typer.Option(
            help="auto (CUDA: nhwc; CPU: whichever measured faster), nchw or nhwc (channels_last). Overrides the "
            "sweep's; speed only, not part of the run key."
        ),
    ] = None,
    fused_optimizer: Annotated[
        bool,
        typer.Option(
            help="CPU: train with torch's fused AdamW kernel instead of its per-tensor loop (a GPU always fuses): "
            "faster where the optimiser step weighs, deterministic, but rounded otherwise, so part of the run key."
        ),
    ] = False,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="Train through torch.compile (TorchInductor; its first step compiles, tens of seconds a model): "
            "faster on most GPUs, rounded otherwise, so part of the run key. Scores come from the eager model.",
        ),
    ] = False,
    retry_failed: Annotated[bool, typer.Option(help="Re-run runs whose record says failed.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the plan (runs, done, to do, estimated training time) and train nothing."
        ),
    ] = False,
    estimate_from: Annotated[
        list[Path] | None,
        typer.Option(help="--dry-run: more results folders whose records time the estimate (repeatable)."),
    ] = None,
    no_keep_weights: Annotated[
        bool, typer.Option("--no-keep-weights", help="Keep no run's model (.safetensors beside its record).")
    ] = False,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Initial weights of every run (pretrained protocols): a weights file, a kept .safetensors, "
            "or another run: run:DATASET/BACKBONE/PROTOCOL[/sSEED]."
        ),
    ] = None,
    allow_overlap: Annotated[
        bool,
        typer.Option("--allow-overlap", help="Train from a run source although it saw target val/test images."),
    ] = False,
    search_storage: Annotated[
        str | None,
        typer.Option(
            help="Database of the protocols' search studies, shared by every machine that names it "
            "(postgresql+psycopg://USER@HOST/DB; default: an SQLite file per study under RESULTS_DIR/search)."
        ),
    ] = None,
    metric: Annotated[str, typer.Option(help="Leaderboard sort metric.")] = "balanced_accuracy",
    results_dir: ResultsDir = WORKING_RESULTS,
    executor_kind: Annotated[
        str, typer.Option("--executor", help="local (this machine; one process per GPU) or ray (a Ray cluster).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="ray: join this cluster, auto or HOST:PORT (default: start a local Ray).")
    ] = None,
    cpus_per_task: Annotated[int, typer.Option(help="ray: CPUs (torch threads) each run holds.")] = 1,
    workers: Annotated[
        int | None,
        typer.Option(
            help="local, CPU: runs at once, each a process with cores/N torch threads (default: one per core; "
            "a single run stays in this process)."
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option(help="Re-queue a run whose worker failed or was lost this many times, then record it failed.")
    ] = 1,
) -> None:
    """Train and evaluate a sweep (default: the bundled-data sweep), then print the leaderboards.

    Example: bench run --backbones resnet18,efficientnet_b0 --datasets pneumoniamnist --seeds 0,1,2 --epochs 3
    """
    backbone_names = options.names(backbones, "--backbones", "backbone name")  # parsed before the slow imports
    dataset_names = options.datasets(datasets)
    seed_values, epoch_counts = options.seeds(seeds), options.epochs(epochs)
    fractions, budget = options.train_fractions(train_fractions), options.fraction_budget(fraction_budget)
    # Importing torch and planning (data fingerprints, the CPU engines) take seconds: say so in a terminal.
    planning = console.status("planning: loading torch, the data and the engine choices ...")
    planning.start()
    from bench.runs.execute import execute
    from bench.runs.plan import ExecutorRequest, SweepRequest, plan_sweep

    request = SweepRequest(
        sweep=sweep,
        backbones=backbone_names,
        datasets=dataset_names,
        protocol=protocol,
        seeds=seed_values,
        resolution=resolution,
        epochs=epoch_counts,
        precision=precision,
        memory_format=memory_format,
        data_root=data_root,
        keep_weights=not no_keep_weights,
        weights=weights,
        allow_overlap=allow_overlap,
        search_storage=search_storage,
        train_fractions=fractions,
        fraction_budget=budget,
        fused_optimizer=fused_optimizer,
        compile=compile,
    )
    executor = ExecutorRequest(
        kind=executor_kind,
        device=device,
        ray_address=ray_address,
        cpus_per_task=cpus_per_task,
        retries=retries,
        workers=workers,
    )
    try:
        plan = plan_sweep(request, results_dir, executor, retry_failed)
    finally:
        planning.stop()
    command = shlex.join(["bench", *sys.argv[1:]])
    console.print(
        f"[bold]{plan.name}[/]: {len(plan.specs)} runs ({len(plan.todo)} to do) on {plan.executor}, "
        f"results in {results_dir}/{skip_note(plan, results_dir)}",
        soft_wrap=True,
    )
    for note in plan.engines:
        console.print(note.line(), soft_wrap=True, markup=False, highlight=False)
    print_inferred(plan)
    if dry_run:
        print_plan(plan, [results_dir, PUBLISHED_RESULTS, *(estimate_from or [])])
        return
    started = time.perf_counter()
    several = executor_kind == "ray" or len(plan.devices) > 1
    bars_at = sweep_bars(len(plan.todo), total=len(plan.specs), finished_before=plan.finished_before, lines=several)
    with bars_at as bars:
        watcher = SweepWatch(bars)
        try:
            records = execute(plan, watcher)
        except KeyboardInterrupt:
            resume = "an unfinished run resumes from its last epoch" if executor_kind == "local" else "the rest rerun"
            raise Interrupted(
                f"{bars.done + bars.failed} run(s) finished now and {plan.finished_before} before are "
                f"saved in {results_dir}/runs; {resume} when you run `{command}` again"
            ) from None
    elapsed = time.perf_counter() - started
    skipped = f", {bars.skipped} skipped (another process has them)" if bars.skipped else ""
    console.print(
        f"{bars.done + bars.failed} run(s) done ({bars.failed} failed){skipped}, {plan.finished_before} already "
        f"finished, in {elapsed:.0f} s"
    )
    print_timings(records)
    print_leaderboards(records, metric, results_dir)
    if print_not_ok([r for r in records if r.status == "failed"] + watcher.not_recorded, command):
        raise typer.Exit(1)


@dataclass
class SweepWatch:
    """The sweep's bars, and the outcomes that are never written (unfinished, skipped), kept for the last lines."""

    bars: SweepBars
    not_recorded: list[RunRecord] = field(default_factory=list)

    def started(self, item: PlannedRun) -> ProgressFn:
        return self.bars.started(item)

    def finished(self, record: RunRecord) -> None:
        self.bars.finished(record)
        if record.status in ("unfinished", "skipped"):
            self.not_recorded.append(record)


def print_inferred(plan: SweepPlan) -> None:
    """The entry inferred for each dataset folder of the sweep, as the TOML file that would register it."""
    from bench.data.folder import entry_toml, inferred_entries

    for entry in inferred_entries((s.dataset, s.data_root) for s in plan.specs):
        console.print(
            f"{entry.name}: the entry inferred from the folder {entry.path} (save it as "
            f"datasets/{entry.name}.toml to register it):",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
        console.print(entry_toml(entry), soft_wrap=True, markup=False, highlight=False, end="")


def skip_note(plan: SweepPlan, results_dir: Path) -> str:
    """Why runs of the sweep are not trained now, and how to train them again (the end of the first line).

    Without it a skip reads as a run that did nothing: a run counts as done when a finished record of the same
    run key (the same experiment, seed and torch/timm/harness versions) is in the results folder.
    """
    finished = plan.finished_before - plan.failed_before
    note = (
        f"; {finished} skipped: a finished record with the same run key is in {results_dir}/runs (to train "
        "them again, pass another --results-dir or delete those records)"
        if finished
        else ""
    )
    return note + (f"; {plan.failed_before} failed before, skipped (add --retry-failed)" if plan.failed_before else "")


def print_plan(plan: SweepPlan, timed_by: list[Path]) -> None:
    """The runs still to do, each with its estimated training time from earlier records (``--dry-run``)."""
    from bench.runs.engines import engine_label
    from bench.runs.estimate import estimate_runs
    from bench.runs.record import load_records

    kind = plan.devices[0].type if plan.devices else "cuda"
    earlier = [r for folder in dict.fromkeys(timed_by) for r in load_records(folder)]
    estimates = estimate_runs(plan.todo, earlier, kind)
    table = Table(title=f"{plan.name}: to do", header_style="bold")
    add_column(table, "sweep", Keep.ANSWER, grouping=True)  # piped, each line names its sweep
    for column, keep in (("run", Keep.ANSWER), ("engine", Keep.DETAIL), ("estimated train", Keep.ANSWER)):
        add_column(table, column, keep, justify="left" if column in ("run", "engine") else "right")
    add_column(table, "from", Keep.FIGURE, wraps=True, justify="right")
    for item in plan.todo:
        guess = estimates[item.key]
        seconds = "unknown" if guess.seconds is None else f"{guess.seconds / 60:.1f} min"
        engine = engine_label(item.spec, kind)
        table.add_row(plan.name, item.label, engine, seconds, guess.reason or f"median of {guess.based_on} run(s)")
    show(table)
    console.print(_plan_summary(plan, estimates, timed_by), soft_wrap=True)


def _plan_summary(plan: SweepPlan, estimates: dict, timed_by: list[Path]) -> str:
    """The plan's last line: counts and the total estimate, or, with none to give, where one would come from."""
    head = f"{len(plan.specs)} runs: {plan.finished_before} done, {len(plan.todo)} to do"
    known = [e.seconds for e in estimates.values() if e.seconds is not None]
    if not plan.todo:
        return f"{head}; nothing was trained"
    if not known:
        folders = ", ".join(f"{folder}/" for folder in dict.fromkeys(timed_by))
        return (
            f"{head}; no estimate: no finished run of the same backbone, resolution and device in {folders} "
            "(pass --estimate-from FOLDER with such records, or time one run first); nothing was trained"
        )
    unknown = len(plan.todo) - len(known)
    return (
        f"{head}; estimated training {sum(known) / 3600:.2f} h for {len(known)} of them"
        + (f" ({unknown} unknown)" if unknown else "")
        + ", from earlier runs of the same backbone, resolution and device (evaluation and latency add a few "
        "seconds a run); nothing was trained"
    )


def print_not_ok(records: list[RunRecord], command: str) -> bool:
    """The last lines: every run of the sweep not ok, with its whole reason, and the command to retry them.

    One run a line, never wrapped or cut (grep finds them on any terminal); True when any failed or did not
    finish, which makes `bench run` exit 1.
    """
    for r in records:
        note = " (not recorded: it runs again next time)" if r.status == "unfinished" else ""
        console.print(f"{r.status}: {r.label}: {r.error}{note}", soft_wrap=True, markup=False, highlight=False)
    failed = {r.status for r in records} & {"failed", "unfinished"}
    if failed:
        retry = command if "failed" not in failed or "--retry-failed" in command else f"{command} --retry-failed"
        console.print(f"retry: {retry}", soft_wrap=True, markup=False, highlight=False)
    return bool(failed)


def print_timings(records: list[RunRecord]) -> None:
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
        keep = Keep.ANSWER if column in ("stage", "seconds") else Keep.FIGURE
        add_column(table, column, keep, justify="left" if column == "stage" else "right")
    for stage in stages:
        runs = per_run[stage].dropna()
        spread = [f"{v:.2f}" for v in (runs.min(), runs.median(), runs.max())] if len(runs) else ["-"] * 3
        table.add_row(stage, f"{totals[stage]:.1f}", f"{100 * totals[stage] / whole:.0f}%", *spread)
    show(table)
