"""From what a user asked for to the runs to do and the executor to do them, all checked before anything trains.

``bench run`` takes either a sweep file or an ad-hoc product (backbones x datasets x one protocol x seeds),
then overrides (epochs, precision, memory format), a results folder and an executor. Everything that can be
wrong with that (an unknown name, an executor option without its executor, a precision the device cannot run)
is a one-line :class:`~bench.errors.ConfigError` here, so a sweep either starts whole or not at all, and the
CLI only parses options and prints. A local CPU sweep's engine (precision, memory format) is decided here too,
by measurement, because the precision is part of each run's key (:mod:`bench.runs.engines`). The plan is then run
by :func:`bench.runs.execute.execute`, whoever asked for it: ``bench run``, :func:`bench.run_sweep` or ``bench check``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.config import FieldError, check_device_name
from bench.environment.cores import usable_cores
from bench.errors import ConfigError
from bench.files import check_writable
from bench.precision import MEMORY_FORMATS, PRECISIONS
from bench.runs.planned import PlannedRun, plan_runs
from bench.runs.spec import RunSpec
from bench.runs.sweep import Group, Sweep, default_sweep_path, load_sweep

if TYPE_CHECKING:  # torch is imported where a device is needed: a mistaken option fails without waiting for it
    import torch

    from bench.runs.engines import EngineNote
    from bench.runs.executors.driver import Executor

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class SweepRequest:
    """The runs asked for: ``sweep`` (a file or a name under ``sweeps/``), or ``backbones`` x ``datasets``.

    ``epochs``, ``precision`` and ``memory_format`` override every run's when set; ``data_root`` points every run's
    dataset at another copy (a full download); ``keep_weights=False`` keeps no run's model (a sweep's groups can
    also say so). ``weights`` replaces every run's initial weights (a file, or ``run:...``:
    :mod:`bench.runs.source`), and ``allow_overlap`` lets every run train from a source that saw its val/test images.
    ``search_storage`` is the database of every run's search study (:mod:`bench.runs.search`; default: an SQLite
    file per study in the results folder), checked here so a bad URL fails before anything trains.
    ``train_fractions``: train every run on each of these shares of its training split (:mod:`bench.data.fractions`),
    one run per share; None keeps the sweep's (an ad-hoc sweep's: the whole split). ``fraction_budget`` (``epochs``
    or ``steps``: :meth:`bench.runs.sweep.Group.epochs_at`) replaces every group's; None keeps the sweep's. Both,
    and ``epochs``, are put in the groups before they expand, so "steps" scales the command line's epochs.
    ``fused_optimizer`` puts every run on the fused AdamW kernel, ``compile`` trains every run through
    ``torch.compile`` (a sweep's groups can also ask for either).
    ``standing_engine``: a local CPU run trains in the CPU's standing fp32 NCHW unless it asks for another, nothing
    measured (:mod:`bench.runs.engines`); ``bench check`` reruns the reference so, as it was made, and so plans the
    reference's own keys.
    """

    sweep: str | None = None
    backbones: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    protocol: str = "scratch"
    seeds: tuple[int, ...] = (0,)
    resolution: int = 28
    epochs: int | tuple[int, ...] | None = None
    precision: str | None = None
    memory_format: str | None = None
    data_root: Path | None = None
    keep_weights: bool = True
    weights: str | None = None
    allow_overlap: bool = False
    search_storage: str | None = None
    train_fractions: tuple[float, ...] | None = None
    fraction_budget: str | None = None
    fused_optimizer: bool = False
    compile: bool = False
    standing_engine: bool = False


@dataclass(frozen=True)
class ExecutorRequest:
    """Where the runs go: ``local`` on ``device`` (auto, cpu, cuda, cuda:N) or ``ray``, with its options.

    ``workers``: runs at once on the CPU, each a process with ``cores // workers`` torch threads (None: one
    per core, which measured fastest on this project's 2-core machines; see README "What the harness costs").
    """

    kind: str = "local"
    device: str = "auto"
    ray_address: str | None = None
    cpus_per_task: int = 1
    retries: int = 1
    workers: int | None = None


@dataclass(frozen=True)
class SweepPlan:
    """A checked sweep: every run with its key and status, the ones to do now, who does them, and where the
    records go (the folder the keys were looked up in: :func:`bench.runs.execute.execute` writes there)."""

    name: str
    results_dir: Path
    specs: list[RunSpec]
    planned: list[PlannedRun]
    todo: list[PlannedRun]
    executor: Executor
    devices: list[torch.device]  # this machine's devices the runs use (none known here for Ray's GPUs)
    engines: list[EngineNote] = field(default_factory=list)  # the CPU settings decided for the runs (local CPU)

    @property
    def finished_before(self) -> int:
        return len(self.planned) - len(self.todo)

    @property
    def failed_before(self) -> int:
        """Runs recorded failed earlier and skipped now (``--retry-failed`` runs them)."""
        return sum(p.status == "failed" for p in self.planned) - sum(p.status == "failed" for p in self.todo)


def sweep_specs(request: SweepRequest) -> tuple[str, list[RunSpec]]:
    """The sweep's name and its runs, with the request's overrides applied."""
    if request.backbones or request.datasets:
        if not (request.backbones and request.datasets):
            raise ConfigError("an ad-hoc sweep needs both --backbones and --datasets")
        if request.sweep is not None:
            raise ConfigError("--sweep and --backbones/--datasets are two ways to say what to run: give one")
        group = Group(
            backbones=request.backbones,
            datasets=request.datasets,
            protocols=(request.protocol,),
            seeds=request.seeds,
            resolution=request.resolution,
            train_fractions=request.train_fractions or (1.0,),
        )
        sweep = Sweep(name="adhoc", group=(group,))
    else:
        sweep = load_sweep(request.sweep or default_sweep_path())
    sweep = _with_overrides(sweep, request)
    specs = sweep.expand(str(request.data_root) if request.data_root else None)
    if request.precision is not None:
        if request.precision not in PRECISIONS:
            raise ConfigError(f"--precision takes {', '.join(PRECISIONS)}, got {request.precision!r}")
        specs = [dataclasses.replace(s, precision=request.precision) for s in specs]
    if request.memory_format is not None:
        if request.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"--memory-format takes {', '.join(MEMORY_FORMATS)}, got {request.memory_format!r}")
        specs = [dataclasses.replace(s, memory_format=request.memory_format) for s in specs]
    if request.fused_optimizer:
        specs = [dataclasses.replace(s, fused_optimizer=True) for s in specs]
    if request.compile:
        specs = [dataclasses.replace(s, compile=True) for s in specs]
    if not request.keep_weights:
        specs = [dataclasses.replace(s, keep_weights=False) for s in specs]
    if request.weights is not None:
        specs = [dataclasses.replace(s, weights_file=request.weights) for s in specs]
    if request.allow_overlap:
        specs = [dataclasses.replace(s, allow_overlap=True) for s in specs]
    if request.search_storage is not None:
        from bench.runs.search import shown_url  # imports Optuna: only when a storage is named

        shown_url(request.search_storage)
        specs = [dataclasses.replace(s, search_storage=request.search_storage) for s in specs]
    return sweep.name, specs


_OPTIONS = {"epochs": "--epochs", "train_fractions": "--train-fractions", "fraction_budget": "--fraction-budget"}


def _with_overrides(sweep: Sweep, request: SweepRequest) -> Sweep:
    """``sweep`` with the request's epochs, training fractions and fraction budget (those set) in every group.

    A combination a group refuses (``--fraction-budget steps`` with no epochs to scale) is a one-line ConfigError
    naming the options given and the group.
    """
    changes = {k: getattr(request, k) for k in _OPTIONS if getattr(request, k) is not None}
    if not changes:
        return sweep
    groups = []
    for i, group in enumerate(sweep.group):
        try:
            groups.append(dataclasses.replace(group, **changes))
        except FieldError as err:
            given = " ".join(f"{_OPTIONS[k]} {_shown(v)}" for k, v in changes.items())
            where = "the ad-hoc sweep" if request.backbones else f"--sweep {request.sweep or 'default'}, group {i + 1}"
            raise ConfigError(f"{given}: {where}: field '{err.field}' {err.problem}") from None
    return dataclasses.replace(sweep, group=tuple(groups))


def _shown(value: object) -> str:
    """An option's value as typed: ``0.1,0.5,1``, ``3,2``, ``steps``."""
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def make_executor(request: ExecutorRequest, runs: int | None = None) -> tuple[Executor, list[torch.device]]:
    """The executor and the local devices it uses; Ray's GPUs are on its nodes, where each run checks its own.

    On the CPU the local executor gets one device entry per worker process, never more than the ``runs`` to
    do: a single run stays in this process, with every core, and starts no worker.
    """
    import torch

    from bench.runs.executors.local import LocalExecutor, visible_devices
    from bench.runs.executors.ray import RayExecutor

    _check_executor(request)
    if request.kind == "ray":
        executor = RayExecutor(request.ray_address, request.device, request.cpus_per_task, request.retries)
        return executor, [torch.device("cpu")] if request.device == "cpu" else []
    from bench.environment.device import resolve_device

    devices = visible_devices(resolve_device(request.device))
    if devices[0].type == "cpu":
        workers = request.workers or usable_cores()
        devices = devices * max(1, min(workers, runs if runs is not None else workers))
    elif request.workers is not None and request.workers != len(devices):
        raise ConfigError(
            f"--workers {request.workers}: on {devices[0].type} the local executor runs one worker per visible GPU "
            f"({len(devices)} here; CUDA_VISIBLE_DEVICES picks them)"
        )
    return LocalExecutor(devices, request.retries), devices


def _check_executor(request: ExecutorRequest) -> None:
    if request.kind not in EXECUTORS:
        raise ConfigError(f"--executor takes {' or '.join(EXECUTORS)}, got {request.kind!r}")
    if request.ray_address and request.kind != "ray":
        raise ConfigError(f"--ray-address {request.ray_address} needs --executor ray")
    check_device_name(request.device, "--device")
    if request.workers is not None:
        if request.kind != "local":
            raise ConfigError(f"--workers {request.workers} needs --executor local (Ray: --cpus-per-task)")
        if request.workers < 1:
            raise ConfigError(f"--workers takes 1 or more, got {request.workers}")


def plan_sweep(
    request: SweepRequest, results_dir: Path, executor: ExecutorRequest, retry_failed: bool = False
) -> SweepPlan:
    """Check everything about a sweep, the results folder writable included, and find what is left to do.

    ``retry_failed``: runs recorded failed are to do too.
    """
    _check_executor(executor)  # the cheap checks first: a mistyped option fails in a second
    name, specs = sweep_specs(request)
    threads = None if request.standing_engine else planned_cpu_threads(executor)
    engines: list[EngineNote] = []

    def decide(specs: list[RunSpec]) -> list[RunSpec]:
        from bench.runs.engines import resolve_engines

        resolved, notes = resolve_engines(specs, threads)  # type: ignore[arg-type]  (only called with threads)
        engines.extend(notes)
        return resolved

    planned = plan_runs(specs, results_dir, decide if threads is not None else None)
    specs = [p.spec for p in planned]
    todo = [p for p in planned if p.status is None or (retry_failed and p.status == "failed")]
    runner, devices = make_executor(executor, len(todo))
    check_precisions(specs, devices)
    check_writable(results_dir)  # the last check, the first write: nothing is made for a sweep that fails a check
    return SweepPlan(name, results_dir, specs, planned, todo, runner, devices, engines)


def planned_cpu_threads(executor: ExecutorRequest) -> int | None:
    """The torch threads of each run of a local CPU sweep, the count its engine is measured at; None elsewhere.

    It is the workers' count (cores / ``--workers``, or OMP_NUM_THREADS), whatever the number of runs left to do:
    a rerun with fewer runs left must resolve every run as before, or it would not find the finished ones. (A
    sweep with a single run left trains it in this process on every core, in the setting measured for one worker.)
    """
    from bench.environment.device import resolve_device
    from bench.runs.executors.local import worker_threads

    if executor.kind != "local" or resolve_device(executor.device).type != "cpu":
        return None
    import torch

    return worker_threads(executor.workers or usable_cores()) or torch.get_num_threads()


def check_precisions(specs: list[RunSpec], devices: list[torch.device]) -> None:
    """Refuse a precision one of ``devices`` cannot run now, rather than as one failed record per run."""
    from bench.train.engine import check_precision

    for precision in dict.fromkeys(s.auto_precision or s.precision for s in specs):
        for device in devices:
            check_precision(device, precision)
