"""Executors run the planned runs of a sweep; records are the same whichever one runs them.

``local`` runs them one after another in this process (the default). ``ray`` (``pip install -e
".[ray]"``) fans them out over a Ray cluster. An executor yields each run's record as it finishes,
so the caller can show progress and nothing depends on the order in which runs complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import torch

from bench.sweep import PlannedRun

ProgressFactory = Callable[[PlannedRun], Callable[[dict], None] | None]
"""Given a run about to start, returns the callback for its training events (or None)."""


class Executor(Protocol):
    def run(self, planned: list[PlannedRun], results_dir: Path, progress: ProgressFactory) -> Iterator[dict]: ...


class LocalExecutor:
    """Sequential runs in this process on one device."""

    def __init__(self, device: torch.device):
        self.device = device

    def run(self, planned: list[PlannedRun], results_dir: Path, progress: ProgressFactory) -> Iterator[dict]:
        from bench.runner import run

        for item in planned:
            yield run(item.spec, results_dir, self.device, progress(item))
