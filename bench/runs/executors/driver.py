"""What every executor shares: the :class:`Executor` protocol, the run as a worker executes it, and the driver.

The driver (:func:`drive`) claims each run before it starts (:mod:`bench.runs.claims`), queues runs on a set
of :class:`Workers`, forwards their training events, and turns a run whose worker failed it (killed, its node
lost, its environment stopped it, the harness raised) into another attempt, up to ``retries`` times, and then
into an ``unfinished`` outcome that is reported but never written, so a sweep always finishes and the run
stays to do.
"""

from __future__ import annotations

import socket
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any, Protocol

import torch

from bench.errors import ConfigError, ResultsError
from bench.runs.claims import Claims
from bench.runs.planned import PlannedRun
from bench.runs.record import RunRecord, Status
from bench.runs.resolve import ResolvedRun
from bench.runs.unfinished import reason
from bench.train.events import Event, ProgressFn, Stepped

ProgressFactory = Callable[[PlannedRun], ProgressFn | None]
"""Given a run that has started, returns the callback for its training events (or None)."""

EVENT_BATCH_S = 0.5  # a worker sends its step events at most this often (one per batch would flood a queue)
POLL_S = 0.2  # how often the driver looks for events and finished runs


class Executor(Protocol):
    """Runs planned runs and yields each one's record as it finishes (in whatever order they finish).

    Every planned run yields one record: its result (``ok``, ``failed``: written), or ``unfinished`` or
    ``skipped`` (:data:`bench.runs.record.Status`: never written).
    """

    def run(self, planned: list[PlannedRun], results_dir: Path, progress: ProgressFactory) -> Iterator[RunRecord]: ...


def check_retries(retries: int) -> int:
    if retries < 0:
        raise ConfigError(f"--retries takes a count of 0 or more, got {retries}")
    return retries


def run_here(
    planned: ResolvedRun, results_dir: Path, device: torch.device, progress, executor: dict[str, Any]
) -> RunRecord:
    """Run what the driver resolved here, its record stamped with who ran it: host, device and attempt.

    A worker whose versions of torch, timm or the harness key the run otherwise than the driver did would write a
    record the driver does not expect: it refuses instead. (Other data is found by the runner once it has loaded
    it: :func:`bench.runs.runner.run`.)
    """
    from bench.environment import versions
    from bench.runs.runner import run

    found, spec = planned.key_with(versions()), planned.spec
    if found != planned.key:
        raise ConfigError(
            f"{socket.gethostname()} keys {spec.dataset}/{spec.backbone} as run {found[:12]}, the driver as "
            f"{planned.key[:12]}: backbone-bench, torch or timm versions differ between them"
        )
    here = {"hostname": socket.gethostname(), **executor}
    return run(planned, results_dir, device, progress, executor=here)


class Forward:
    """A run's training events, sent to the driver in batches: at once for milestones, steps every so often."""

    def __init__(self, put: Callable[[tuple[str, list[Event]]], None], key: str):
        self.put, self.key = put, key
        self.batch: list[Event] = []
        self.sent = time.monotonic()

    def __call__(self, event: Event) -> None:
        self.batch.append(event)
        if not isinstance(event, Stepped) or time.monotonic() - self.sent >= EVENT_BATCH_S:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.put((self.key, self.batch))
            self.batch = []
        self.sent = time.monotonic()


class Workers(Protocol):
    """Where runs execute; :func:`drive` does the queueing, retries, records of lost runs and progress."""

    name: str
    slots: int | None  # runs at once (None: submit all, the cluster queues them)
    results_dir: Path

    def submit(self, item: PlannedRun, attempt: int) -> Future: ...

    def release(self, future: Future) -> None: ...

    def collect(self, item: PlannedRun, result: Any) -> RunRecord: ...

    def events(self) -> list[tuple[str, list[Event]]]: ...

    def close(self) -> None: ...


def drive(workers: Workers, planned: list[PlannedRun], progress: ProgressFactory, retries: int) -> Iterator[RunRecord]:
    """Yield each run's record as it finishes; a run its worker failed is queued again, then reported unfinished.

    ``progress`` is asked for a run's callback when its first event arrives (it has started) or, for a run
    that never started, just before its record is yielded.
    """
    by_key = {item.key: item for item in planned}
    queued = deque((item, 1) for item in planned)
    running: dict[Future, tuple[PlannedRun, int]] = {}
    callbacks: dict[str, ProgressFn | None] = {}
    finished: set[str] = set()
    claims = Claims()

    def callback(item: PlannedRun) -> ProgressFn | None:
        if item.key not in callbacks:
            callbacks[item.key] = progress(item)
        return callbacks[item.key]

    try:
        while queued or running:
            while queued and (workers.slots is None or len(running) < workers.slots):
                item, attempt = queued.popleft()
                if attempt == 1 and (why := claims.take(item)) is not None:
                    finished.add(item.key)
                    callback(item)
                    yield outcome_record(item, "skipped", why, {"name": workers.name})
                    continue
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
                    cause = getattr(err, "cause", None) or err  # Ray wraps what the task raised
                    executor = {"name": workers.name, "attempts": attempt}
                    record = outcome_record(item, "unfinished", f"{reason(cause)} (attempts: {attempt})", executor)
                    record.error_detail = "".join(traceback.format_exception(err))
                else:
                    workers.release(future)
                    try:
                        record = workers.collect(item, result)
                    except ResultsError as err:  # the driver's disk: the run's files are lost, not its result
                        record = outcome_record(item, "unfinished", reason(err), {"name": workers.name})
                claims.release(item)
                finished.add(item.key)
                callback(item)
                yield record
    finally:
        claims.close()
        workers.close()


def outcome_record(item: PlannedRun, status: Status, why: str, executor: dict[str, Any]) -> RunRecord:
    """What was planned and why it did not finish here (``unfinished`` or ``skipped``): reported, never written."""
    from bench.runs.runner import environment_here, new_record

    environment = environment_here({}, executor)  # the device is unknown: it never ran here, or it is gone
    record = new_record(item.run, environment)
    record.status = status
    record.error = why
    return record
