"""A protocol's search space: the training settings tuned per backbone x dataset on validation, before training.

One learning rate for thirteen architectures decides half a comparison (a BatchNorm-free VGG-16 blows up where a
ResNet trains); MedIMeta searches per model for that reason. A protocol that declares ``[search]`` has each
backbone x dataset try ``trials`` settings of the named fields on the validation split (never the test split),
with bad trials pruned early by successive halving or Hyperband, and every seed then trains the best one
(:mod:`bench.runs.search` runs the study). The space and budget are part of the protocol, so of the experiment
identity; the value a search picks is not (it is a result, kept in each record).

The trials are a Latin hypercube design drawn from the space with ``seed``: the same settings for every backbone
(each range cut into ``trials`` strata, each used once), so a comparison tries every architecture on equal terms,
a search resumed after a kill or shared by several machines tries the same settings, and only pruning, which
reads the scores, adapts. With the handful of trials a CPU affords, a model-based sampler would still be in its
random start-up phase (Optuna's TPE samples its first 10 at random).

A file declares it as::

    [search]
    trials = 6
    epochs = 12                              # each trial's epoch budget (default: the protocol's)
    pruner = "successive_halving"            # or "hyperband", or "none"
    lr = { low = 1e-4, high = 3e-3 }         # the first phase's learning rate; later phases keep their ratio
    weight_decay = { low = 1e-6, high = 1e-2 }
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

from bench.config import FieldError, check_epochs

Pruner = Literal["successive_halving", "hyperband", "none"]


@dataclass(frozen=True)
class Range:
    """A continuous range to search; ``log`` spaces it by orders of magnitude (learning rates, decays)."""

    low: float
    high: float
    log: bool = True

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise FieldError("low", f"is {self.low} and high {self.high}; a range needs low < high")
        if self.log and self.low <= 0:
            raise FieldError("low", f"is {self.low}; a log range needs low > 0 (or log = false)")

    def at(self, u: float) -> float:
        """The value at quantile ``u`` in [0, 1) of the range, to 3 significant figures (readable in tables)."""
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return min(max(float(f"{value:.3g}"), self.low), self.high)


@dataclass(frozen=True)
class Search:
    """How to tune a protocol per backbone x dataset: the space, the number of trials and their budget."""

    trials: int
    epochs: int | tuple[int, ...] | None = None  # a trial's epochs (one number, or one per phase); None: the protocol's
    pruner: Pruner = "successive_halving"
    min_epochs: int = 2  # the first rung: no trial is pruned before it has trained this many epochs
    reduction_factor: int = 3  # successive halving keeps the best 1/reduction_factor at each rung
    seed: int = 0  # of the design and of every trial's training
    lr: Range | None = None
    weight_decay: Range | None = None
    drop_rate: Range | None = None
    warmup_epochs: tuple[int, ...] | None = None  # choices

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise FieldError("trials", f"is {self.trials}; a search needs at least 1 trial")
        check_epochs(self.epochs)
        if self.min_epochs < 1:
            raise FieldError("min_epochs", f"is {self.min_epochs}; it must be >= 1")
        if self.reduction_factor < 2:
            raise FieldError("reduction_factor", f"is {self.reduction_factor}; it must be >= 2")
        if not self.space:
            raise FieldError("lr", "and every other searchable field are unset: name at least one to search")
        if self.drop_rate is not None and not (0 <= self.drop_rate.low and self.drop_rate.high < 1):
            raise FieldError("drop_rate", f"spans {self.drop_rate.low}-{self.drop_rate.high}; it must lie in [0, 1)")
        if self.warmup_epochs is not None and (not self.warmup_epochs or min(self.warmup_epochs) < 0):
            raise FieldError("warmup_epochs", f"is {list(self.warmup_epochs)}; give one or more choices >= 0")

    @property
    def space(self) -> dict[str, Range | tuple[int, ...]]:
        """The searched fields, in declaration order."""
        names = ("lr", "weight_decay", "drop_rate", "warmup_epochs")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def design(self) -> list[dict[str, float | int]]:
        """The ``trials`` settings to try, in trial order: a Latin hypercube over the space, drawn with ``seed``."""
        from scipy.stats import qmc  # scipy is heavy to import; only a search needs it

        space = self.space
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            points = qmc.LatinHypercube(d=len(space), seed=self.seed).random(self.trials)
        return [
            {
                name: dim.at(float(u)) if isinstance(dim, Range) else dim[min(int(u * len(dim)), len(dim) - 1)]
                for (name, dim), u in zip(space.items(), row, strict=True)
            }
            for row in points
        ]
