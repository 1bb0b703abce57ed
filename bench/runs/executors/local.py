"""The local executor: runs in this process on one device, or one worker process per device entry.

Several entries are every visible GPU, or the CPU repeated once per worker (``bench run --workers N``): small
CPU models scale badly across threads, so N single-thread runs side by side finish a sweep sooner than one
N-thread run after another.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from bench.environment.cores import usable_cores
from bench.errors import ConfigError
from bench.runs.claims import Claims
from bench.runs.executors.driver import Forward, ProgressFactory, check_retries, drive, outcome_record, run_here
from bench.runs.planned import PlannedRun
from bench.runs.record import RunRecord
from bench.runs.resolve import ResolvedRun
from bench.runs.unfinished import RunUnfinished
from bench.train.events import Event


def visible_devices(device: torch.device) -> list[torch.device]:
    """``cuda`` without an index means every visible GPU (one worker process each); anything else is itself."""
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return [device]


def worker_threads(workers: int) -> int | None:
    """Torch threads of each of ``workers`` processes: the cores shared evenly, or None to honour OMP_NUM_THREADS.

    With OMP_NUM_THREADS set, it holds in the workers as it does here (the tests pin one thread so CPU runs
    give the same bits in any executor).
    """
    return None if "OMP_NUM_THREADS" in os.environ else max(1, usable_cores() // workers)


class LocalExecutor:
    """One device: runs one after another in this process. Several: one worker process per device entry.

    Worker processes write their records to ``results_dir`` themselves (it is on this machine) and share
    the CPU's cores evenly as torch threads. ``retries`` applies to them only: in this process, a run its
    environment stopped is reported unfinished at once, and a harness error stops the sweep with its traceback.
    """

    def __init__(self, devices: Sequence[torch.device], retries: int = 1):
        if not devices:
            raise ConfigError("the local executor needs at least one device")
        self.devices = list(devices)
        self.retries = check_retries(retries)

    def __str__(self) -> str:
        if len(self.devices) == 1:
            return str(self.devices[0])
        if {d.type for d in self.devices} == {"cpu"}:
            threads = worker_threads(len(self.devices))
            each = f"{threads} torch thread(s) each" if threads else f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
            return f"{len(self.devices)} worker processes on cpu ({each})"
        return f"{len(self.devices)} worker processes ({', '.join(map(str, self.devices))})"

    def run(self, planned: list[PlannedRun], results_dir: Path, progress: ProgressFactory) -> Iterator[RunRecord]:
        if len(self.devices) > 1:
            yield from drive(_Processes(self.devices, results_dir), planned, progress, self.retries)
            return
        (device,) = self.devices
        executor = {"name": "local", "attempt": 1}
        with Claims() as claims:
            for item in planned:
                if (why := claims.take(item)) is not None:
                    progress(item)
                    yield outcome_record(item, "skipped", why, executor)
                    continue
                try:
                    record = run_here(item.run, results_dir, device, progress(item), executor)
                except RunUnfinished as err:
                    record = outcome_record(item, "unfinished", str(err), executor)
                claims.release(item)
                yield record


_EVENTS: Any = None  # in a local worker process: the driver's event queue


def _start_process(events: Any, threads: int | None) -> None:
    """A worker leaves Ctrl-C to the driver, which stops it (a terminal sends SIGINT to the whole group)."""
    global _EVENTS
    _EVENTS = events
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads is not None:
        torch.set_num_threads(threads)


def _process_task(planned: ResolvedRun, results_dir: Path, device: str, attempt: int) -> RunRecord:
    forward = Forward(_EVENTS.put, planned.key)
    executor = {"name": "local", "attempt": attempt, "pid": os.getpid()}  # which worker: runs share a pool
    record = run_here(planned, results_dir, torch.device(device), forward, executor)
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
        self._threads = worker_threads(len(devices))
        self._pools: dict[int, ProcessPoolExecutor] = {}
        self._free = list(range(len(devices)))
        self._slot: dict[Future, int] = {}

    def submit(self, item: PlannedRun, attempt: int) -> Future:
        slot = self._free.pop(0)
        args = (_process_task, item.run, self.results_dir, str(self.devices[slot]), attempt)
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

    def collect(self, item: PlannedRun, result: RunRecord) -> RunRecord:
        return result

    def events(self) -> list[tuple[str, list[Event]]]:
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """After the last run; with runs still in flight (Ctrl-C, or the caller stopped), their workers are stopped.

        A stopped run resumes from its last epoch checkpoint next time, as one interrupted in this process does.
        """
        if self._slot:
            for process in mp.active_children():  # this driver's only children are its pools' workers
                process.terminate()
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._events.close()
