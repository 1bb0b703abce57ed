"""Executors run the planned runs of a sweep; records are the same whichever one runs them.

``local`` runs them in this process one after another on one device or, given several devices (every
visible GPU), in one worker process per device. ``ray`` (``pip install -e ".[ray]"``) fans them out over a
Ray cluster, one task per run holding a whole GPU (or N CPUs). An executor yields each run's record as it
finishes, so the caller can show progress and nothing depends on the order in which runs complete.

A run that fails in a way it can report itself (diverged loss, out of memory) is a ``failed`` record written
by the runner, as in any run. A run whose worker process fails it (killed, its node lost, the harness
raised) is queued again up to ``retries`` times and then written as a ``failed`` record by the driver, so a
sweep always finishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import logging
import multiprocessing as mp
import os
import queue
import shutil
import socket
import tempfile
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

import torch

from bench.errors import ConfigError
from bench.runs.record import SCHEMA_VERSION, RunSpec, atomic_write_bytes, config_key, write_json
from bench.runs.sweep import PlannedRun

ProgressFactory = Callable[[PlannedRun], Callable[[dict], None] | None]
"""Given a run that has started, returns the callback for its training events (or None)."""

EVENT_BATCH_S = 0.5  # a worker sends its step events at most this often (one per batch would flood a queue)
POLL_S = 0.2  # how often the driver looks for events and finished runs


class Executor(Protocol):
    def run(self, planned: list[PlannedRun], results_dir: Path, progress: ProgressFactory) -> Iterator[dict]: ...


def visible_devices(device: torch.device) -> list[torch.device]:
    """``cuda`` without an index means every visible GPU (one worker process each); anything else is itself."""
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return [device]


def _check_retries(retries: int) -> int:
    if retries < 0:
        raise ConfigError(f"--retries takes a count of 0 or more, got {retries}")
    return retries


# ------------------------------------------------------------------------------------------- in a worker


def _execute(
    spec: RunSpec, key: str, results_dir: Path, device: torch.device, progress, executor: dict[str, Any]
) -> dict:
    """Run ``spec`` here and stamp its record with who ran it: host, device and attempt.

    A worker that resolves the spec to another key than the driver planned (other versions of torch,
    timm or the harness) would write a record the driver does not expect: it refuses instead.
    """
    from bench.runs.runner import record_path, resolve, run

    found = config_key(resolve(spec))
    if found != key:
        raise ConfigError(
            f"{socket.gethostname()} resolves {spec.dataset}/{spec.backbone} to config {found[:12]}, the driver to "
            f"{key[:12]}: backbone-bench, torch or timm versions differ between them"
        )
    record = run(spec, results_dir, device, progress)
    record["environment"]["executor"] = {"hostname": socket.gethostname(), **executor}
    write_json(record_path(results_dir, spec, key), record)
    return record


class _Forward:
    """A run's training events, sent to the driver in batches: at once for milestones, steps every so often."""

    def __init__(self, put: Callable[[tuple[str, list[dict]]], None], key: str):
        self.put, self.key = put, key
        self.batch: list[dict] = []
        self.sent = time.monotonic()

    def __call__(self, event: dict) -> None:
        self.batch.append(event)
        if event["event"] != "step" or time.monotonic() - self.sent >= EVENT_BATCH_S:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.put((self.key, self.batch))
            self.batch = []
        self.sent = time.monotonic()


# ------------------------------------------------------------------------------------------- the driver


class _Workers(Protocol):
    """Where runs execute; :func:`_drive` does the queueing, retries, records of lost runs and progress."""

    name: str
    slots: int | None  # runs at once (None: submit all, the cluster queues them)

    def submit(self, item: PlannedRun, attempt: int) -> Future: ...

    def release(self, future: Future) -> None: ...

    def collect(self, item: PlannedRun, result: Any) -> dict: ...

    def events(self) -> list[tuple[str, list[dict]]]: ...

    def close(self) -> None: ...


def _drive(workers: _Workers, planned: list[PlannedRun], progress: ProgressFactory, retries: int) -> Iterator[dict]:
    """Yield each run's record as it finishes; a run its worker failed is queued again, then recorded failed.

    ``progress`` is asked for a run's callback when its first event arrives (it has started) or, for a run
    that never started, just before its record is yielded.
    """
    by_key = {item.key: item for item in planned}
    queued = deque((item, 1) for item in planned)
    running: dict[Future, tuple[PlannedRun, int]] = {}
    callbacks: dict[str, Callable[[dict], None] | None] = {}
    finished: set[str] = set()

    def callback(item: PlannedRun) -> Callable[[dict], None] | None:
        if item.key not in callbacks:
            callbacks[item.key] = progress(item)
        return callbacks[item.key]

    try:
        while queued or running:
            while queued and (workers.slots is None or len(running) < workers.slots):
                item, attempt = queued.popleft()
                running[workers.submit(item, attempt)] = (item, attempt)
            done, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
            for key, events in workers.events():
                report = None if key in finished else callback(by_key[key])
                if report is not None:
                    for event in events:
                        report(event)
            for future in done:
                item, attempt = running.pop(future)
                try:
                    result = future.result()
                except Exception as err:  # the task raised, or its worker or node was lost
                    workers.release(future)
                    if attempt <= retries:
                        queued.append((item, attempt + 1))
                        continue
                    record = _failed_record(item, err, attempt, workers.name)
                    write_json(item.path, record)
                else:
                    workers.release(future)
                    record = workers.collect(item, result)
                finished.add(item.key)
                callback(item)
                yield record
    finally:
        workers.close()


def _failed_record(item: PlannedRun, err: BaseException, attempts: int, executor: str) -> dict:
    """The record of a run its workers failed: what was planned, what went wrong, after how many attempts."""
    from bench.environment import git_commit, versions
    from bench.runs.runner import resolve

    cause = getattr(err, "cause", None) or err  # Ray wraps what the task raised
    return {
        "schema": SCHEMA_VERSION,
        "key": item.key,
        "status": "failed",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **resolve(item.spec),
        "environment": {
            "versions": versions(),
            "git_commit": git_commit(),
            "platform": None,
            "device": {},  # unknown: the worker is gone
            "executor": {"name": executor, "attempts": attempts},
        },
        "timings_s": {},
        "error": f"{type(cause).__name__}: {cause}".splitlines()[0] + f" (attempts: {attempts})",
        "error_detail": "".join(traceback.format_exception(err)),
    }


# ------------------------------------------------------------------------------------------------ local


class LocalExecutor:
    """One device: runs one after another in this process. Several: one worker process per device.

    Worker processes write their records to ``results_dir`` themselves (it is on this machine) and share
    the CPU's cores evenly as torch threads. ``retries`` applies to them only: in this process, a harness
    error stops the sweep with its traceback.
    """

    def __init__(self, devices: Sequence[torch.device], retries: int = 1):
        if not devices:
            raise ConfigError("the local executor needs at least one device")
        self.devices = list(devices)
        self.retries = _check_retries(retries)

    def __str__(self) -> str:
        if len(self.devices) == 1:
            return str(self.devices[0])
        return f"{len(self.devices)} worker processes ({', '.join(map(str, self.devices))})"

    def run(self, planned: list[PlannedRun], results_dir: Path, progress: ProgressFactory) -> Iterator[dict]:
        if len(self.devices) > 1:
            yield from _drive(_Processes(self.devices, results_dir), planned, progress, self.retries)
            return
        (device,) = self.devices
        for item in planned:
            yield _execute(item.spec, item.key, results_dir, device, progress(item), {"name": "local", "attempt": 1})


_EVENTS: Any = None  # in a local worker process: the driver's event queue


def _start_process(events: Any, threads: int | None) -> None:
    global _EVENTS
    _EVENTS = events
    if threads is not None:
        torch.set_num_threads(threads)


def _process_task(spec: RunSpec, key: str, results_dir: Path, device: str, attempt: int) -> dict:
    forward = _Forward(_EVENTS.put, key)
    record = _execute(spec, key, results_dir, torch.device(device), forward, {"name": "local", "attempt": attempt})
    forward.flush()
    return record


class _Processes:
    """A single-process pool per device: a killed worker breaks only its own pool, which is replaced."""

    name = "local"

    def __init__(self, devices: list[torch.device], results_dir: Path):
        self.devices = devices
        self.results_dir = results_dir
        self.slots = len(devices)
        self._context = mp.get_context("spawn")  # CUDA cannot be used in a forked child
        self._events = self._context.Queue()
        # OMP_NUM_THREADS, when set, holds in the workers as it does here; else they share the cores
        self._threads = None if "OMP_NUM_THREADS" in os.environ else max(1, (os.cpu_count() or 1) // len(devices))
        self._pools: dict[int, ProcessPoolExecutor] = {}
        self._free = list(range(len(devices)))
        self._slot: dict[Future, int] = {}

    def submit(self, item: PlannedRun, attempt: int) -> Future:
        slot = self._free.pop(0)
        args = (_process_task, item.spec, item.key, self.results_dir, str(self.devices[slot]), attempt)
        try:
            future = self._pool(slot).submit(*args)
        except BrokenProcessPool:  # its idle worker died since the last run
            self._pools.pop(slot).shutdown(wait=False)
            future = self._pool(slot).submit(*args)
        self._slot[future] = slot
        return future

    def _pool(self, slot: int) -> ProcessPoolExecutor:
        if slot not in self._pools:
            self._pools[slot] = ProcessPoolExecutor(
                1, self._context, initializer=_start_process, initargs=(self._events, self._threads)
            )
        return self._pools[slot]

    def release(self, future: Future) -> None:
        slot = self._slot.pop(future)
        if isinstance(future.exception(), BrokenProcessPool):
            self._pools.pop(slot).shutdown(wait=False)
        self._free.append(slot)

    def collect(self, item: PlannedRun, result: dict) -> dict:
        return result

    def events(self) -> list[tuple[str, list[dict]]]:
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._events.close()


# -------------------------------------------------------------------------------------------------- Ray


@dataclasses.dataclass
class RayExecutor:
    """Each run a Ray task holding one whole GPU (``device`` auto or cuda) or ``cpus_per_task`` CPUs.

    ``address`` joins a running cluster (``auto`` or ``HOST:PORT``); without it a local Ray is started
    (``num_cpus``: its CPUs, default all). A Ray already initialised in this process is used as it is.
    Workers need the harness, its registries and the data at the paths the driver uses, but no shared
    results folder: each run works in a scratch folder on its node and returns its files (record,
    probabilities, split), which the driver writes under ``results_dir``.

    A GPU run's latency is measured alone on its GPU. CPU runs share their node with whatever else Ray
    placed there, and so does their latency figure: the record's ``environment.executor`` says which
    node ran it and what share of the node it held.
    """

    address: str | None = None
    device: str = "auto"
    cpus_per_task: int = 1
    retries: int = 1
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device {self.device}: with --executor ray use auto, cpu or cuda (Ray picks the GPU)")
        if self.cpus_per_task < 1:
            raise ConfigError(f"--cpus-per-task takes 1 or more, got {self.cpus_per_task}")
        _check_retries(self.retries)
        if importlib.util.find_spec("ray") is None:
            raise ConfigError('--executor ray needs Ray: pip install -e ".[ray]"')

    def __str__(self) -> str:
        return f"Ray at {self.address}" if self.address else "a local Ray"

    def run(self, planned: list[PlannedRun], results_dir: Path, progress: ProgressFactory) -> Iterator[dict]:
        if not planned:
            return
        import ray

        connected_here = not ray.is_initialized()
        if connected_here:
            self._connect(ray)
        try:
            yield from _drive(_RayTasks(self, results_dir), planned, progress, self.retries)
        finally:
            if connected_here:
                ray.shutdown()

    def _connect(self, ray: Any) -> None:
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        if self.address is None:
            # "local": a new instance even where `ray start` or RAY_ADDRESS names another cluster
            ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, **quiet)
            return
        if self.address != "auto":  # Ray itself retries an unreachable address for minutes
            host, _, port = self.address.removeprefix("ray://").rpartition(":")
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
            except (OSError, ValueError) as err:
                raise ConfigError(f"--ray-address {self.address}: no Ray cluster answers there ({err})") from None
        try:
            ray.init(address=self.address, **quiet)
        except ConnectionError as err:
            raise ConfigError(f"--ray-address {self.address}: no Ray cluster there ({err})".splitlines()[0]) from None

    def task_resources(self, ray: Any) -> dict[str, int]:
        """What each run asks for, checked against the cluster so a run can never wait forever."""
        nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
        gpus = max((n.get("GPU", 0) for n in nodes), default=0)
        cpus = max((n.get("CPU", 0) for n in nodes), default=0)
        if self.device == "cuda" and not gpus:
            raise ConfigError("--device cuda: the Ray cluster has no GPU")
        if self.cpus_per_task > cpus:
            raise ConfigError(f"--cpus-per-task {self.cpus_per_task}: no node of the Ray cluster has that many CPUs")
        return {"num_cpus": self.cpus_per_task, "num_gpus": int(self.device != "cpu" and gpus >= 1)}


@contextlib.contextmanager
def _as_driver(cwd: str, env: dict[str, str]) -> Iterator[None]:
    """The driver's ``BENCH_*`` variables and, where that folder exists here, its working directory.

    So a relative data root or weights file means what it means to the driver. Set per task and undone
    after it (rather than a Ray runtime_env), so a worker process serves every sweep and test warm.
    """
    saved_cwd, saved_env = os.getcwd(), {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ray_task(
    spec: RunSpec, key: str, device: str, attempt: int, sweep: str, driver: tuple[str, dict], events: Any
) -> dict:
    """One run on a Ray worker, in a scratch folder on its node; returns the files it wrote, by relative path.

    The scratch folder is named by sweep and run, so a retry that lands on the same node resumes from the
    last epoch checkpoint. Torch gets as many threads as the task has CPUs.
    """
    import ray

    context = ray.get_runtime_context()
    assigned = context.get_assigned_resources()
    torch.set_num_threads(max(1, int(assigned.get("CPU", 1))))
    node = next((n for n in ray.nodes() if n["NodeID"] == context.get_node_id()), {})
    executor = {
        "name": "ray",
        "node_id": context.get_node_id(),
        "node_ip": node.get("NodeManagerAddress"),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "resources": assigned,
        "node_resources": {k: v for k, v in node.get("Resources", {}).items() if k in ("CPU", "GPU")},
        "attempt": attempt,
    }
    scratch = Path(tempfile.gettempdir()) / "backbone-bench-ray" / sweep / key
    forward = _Forward(events.put, key)
    with _as_driver(*driver):
        _execute(spec, key, scratch, torch.device(device), forward, executor)
    forward.flush()
    files = {
        p.relative_to(scratch).as_posix(): p.read_bytes()
        for p in sorted(scratch.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and p.suffix != ".ckpt"
    }
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):  # the sweep's folder, once its last run on this node is done
        scratch.parent.rmdir()
    return files


class _RayTasks:
    name = "ray"
    slots = None

    def __init__(self, executor: RayExecutor, results_dir: Path):
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.results_dir = results_dir
        resources = executor.task_resources(ray)
        self._device = "cuda" if resources["num_gpus"] else "cpu"
        # a GPU run gets a fresh worker process: CUDA stays bound to the GPU a process first used
        self._task = ray.remote(**resources, max_retries=0, max_calls=1 if resources["num_gpus"] else 0)(_ray_task)
        # the event queue lives on the driver's node: a lost worker node must not take it along
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self._queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
        self._sweep = uuid.uuid4().hex[:12]
        self._driver = (os.getcwd(), {k: v for k, v in os.environ.items() if k.startswith("BENCH_")})

    def submit(self, item: PlannedRun, attempt: int) -> Future:
        args = (item.spec, item.key, self._device, attempt, self._sweep, self._driver, self._queue)
        return self._task.remote(*args).future()

    def release(self, future: Future) -> None:
        pass

    def collect(self, item: PlannedRun, files: dict[str, bytes]) -> dict:
        """Write the run's files under the results folder, its record last (a record never lacks its files)."""
        from bench.runs.runner import record_path

        record_file = record_path(Path(), item.spec, item.key).as_posix()
        for name, data in sorted(files.items(), key=lambda kv: kv[0] == record_file):
            target = self.results_dir / name
            if not (name.startswith("splits/") and target.exists()):  # one split file per data fingerprint
                atomic_write_bytes(target, data)
        return json.loads(files[record_file])

    def events(self) -> list[tuple[str, list[dict]]]:
        n = self._queue.qsize()
        return self._queue.get_nowait_batch(n) if n else []

    def close(self) -> None:
        self._queue.shutdown()
