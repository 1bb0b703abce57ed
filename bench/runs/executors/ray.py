"""The Ray executor: each run a task on a Ray cluster, its files sent back to the driver (needs ``.[ray]``)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch

from bench.errors import ConfigError
from bench.files import atomic_write_bytes
from bench.runs.executors.driver import Forward, ProgressFactory, check_retries, drive, run_here
from bench.runs.planned import PlannedRun
from bench.runs.record import RunRecord, record_path
from bench.runs.resolve import ResolvedRun
from bench.train.events import Event


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
        check_retries(self.retries)
        if importlib.util.find_spec("ray") is None:
            raise ConfigError('--executor ray needs Ray: pip install -e ".[ray]"')

    def __str__(self) -> str:
        return f"Ray at {self.address}" if self.address else "a local Ray"

    def run(self, planned: list[PlannedRun], results_dir: Path, progress: ProgressFactory) -> Iterator[RunRecord]:
        if not planned:
            return
        import ray

        connected_here = not ray.is_initialized()
        if connected_here:
            self._connect(ray)
        try:
            yield from drive(_RayTasks(self, results_dir), planned, progress, self.retries)
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
    planned: ResolvedRun, device: str, attempt: int, sweep: str, driver: tuple[str, dict], events: Any
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
    scratch = Path(tempfile.gettempdir()) / "backbone-bench-ray" / sweep / planned.key
    forward = Forward(events.put, planned.key)
    with _as_driver(*driver):
        run_here(planned, scratch, torch.device(device), forward, executor)
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
        args = (item.run, self._device, attempt, self._sweep, self._driver, self._queue)
        return self._task.remote(*args).future()

    def release(self, future: Future) -> None:
        pass

    def collect(self, item: PlannedRun, files: dict[str, bytes]) -> RunRecord:
        """Write the run's files under the results folder, its record last (a record never lacks its files)."""
        record_file = record_path(Path(), item.spec, item.key).as_posix()
        for name, data in sorted(files.items(), key=lambda kv: kv[0] == record_file):
            target = self.results_dir / name
            if not (name.startswith("splits/") and target.exists()):  # one split file per data fingerprint
                atomic_write_bytes(target, data)
        return RunRecord.from_json(json.loads(files[record_file]), self.results_dir / record_file)

    def events(self) -> list[tuple[str, list[Event]]]:
        n = self._queue.qsize()
        return self._queue.get_nowait_batch(n) if n else []

    def close(self) -> None:
        self._queue.shutdown()
