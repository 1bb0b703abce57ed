"""What a run tells whoever watches it, as it runs: four typed events, one stream from the loop, the runner and its
search, read by the terminal's progress bars and forwarded by the executors' workers.

Typed rather than dicts so that a reader names what it reads (``event.loss``, not ``event["loss"]``) and a type
checker sees a renamed field; frozen dataclasses of plain values, so they pickle across a worker process's queue
or a Ray node. The events carry no timing: whoever shows them stamps them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.train.history import EpochLog


@dataclass(frozen=True)
class Started:
    """Training begins: ``total_steps`` optimiser steps at most (early stopping may end it sooner).

    A protocol's search sends one for each trial before the run's own (``what`` says which).
    """

    total_steps: int
    what: str = "training"


@dataclass(frozen=True)
class Stepped:
    """One optimiser step done; ``loss`` is its training loss where reading it costs no wait (None otherwise)."""

    phase: str
    epoch: int
    step: int  # within the epoch, from 1
    loss: float | None = None


@dataclass(frozen=True)
class EpochEnded:
    """An epoch trained and validated: its log (training and validation loss, validation metrics, seconds)."""

    log: EpochLog


@dataclass(frozen=True)
class Stage:
    """The run moved on to work that is not optimiser steps, so a watcher does not see a stalled bar:
    ``loading data``, ``searching``, ``evaluating`` (the one look at the test split), ``evaluation sets``,
    ``latency``."""

    name: str


Event = Started | Stepped | EpochEnded | Stage
ProgressFn = Callable[[Event], None]
"""Receives a run's events, in order, in the process that runs it."""
