"""Training health read from a run's per-epoch history: a training loss that exploded, and a budget that ran out.

Both are pure functions of what every record stores (``history``: each epoch's ``train_loss``, ``val_loss`` and
validation metrics; ``selection``: the metric and the kept epoch), so the training loop names them as they
happen and a record written before they existed gets the same verdict when it is read.

**Exploded** (:func:`check_train_loss`): an epoch's mean training loss is not finite, or above
:data:`EXPLOSION_FACTOR` times its reference. The reference of epoch 1 is ``ln K``, the loss of a uniform guess
over the K classes, which is where a freshly initialised classifier starts; the reference of a later epoch is the
larger of ``ln K`` and epoch 1's loss. A loss several times a uniform guess's means the optimiser threw the
model far off, inside the epoch if not across epochs (from-scratch VGG-16 on ISIC: 15.6 in epoch 1, ``ln 2`` =
0.69). It is a note, not a failure: the run goes on and is judged by what it learned.

**Not converged** (:func:`check_convergence`): the kept epoch is the last one trained, and the selection metric
improved on the best of the earlier epochs by more than :data:`CONVERGENCE_TOLERANCE` of it (relative): the run
was still getting better when its epoch budget ended, so more epochs may change its rank. A warning about the
budget, not a failure: the run stays ranked.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from bench.evaluation.values import MetricValues
from bench.train.selection import epoch_score, higher_is_better


@dataclass
class EpochLog:
    """One epoch of training and its validation, as the loop logs it and a record's ``history`` keeps it."""

    phase: str
    epoch: int  # counted over the whole run, from 1
    lr: float
    train_loss: float
    val_loss: float
    val: MetricValues
    seconds: float  # the whole epoch: training and validation
    train_seconds: float | None = None  # the training steps alone
    images_per_s: float | None = None  # training images per second of train_seconds
    gpu_util_pct: float | None = None  # mean NVML utilisation during the training steps (CUDA only)

    # The fields that differ between two otherwise identical runs.
    TIMINGS: ClassVar[frozenset[str]] = frozenset({"seconds", "train_seconds", "images_per_s", "gpu_util_pct"})
    # Measured since the loop timed its steps apart from validation: left out of an epoch logged before.
    STEP_TIMINGS: ClassVar[tuple[str, ...]] = ("train_seconds", "images_per_s", "gpu_util_pct")

    def to_dict(self) -> dict:
        """The stored form (records and checkpoints): the step timings only where any was measured."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {"val": self.val.to_dict()}
        if all(out[name] is None for name in self.STEP_TIMINGS):
            for name in self.STEP_TIMINGS:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> EpochLog:
        """The epoch :meth:`to_dict` wrote (a loss that was not finite is stored as null: NaN again here)."""
        losses = {name: math.nan if data[name] is None else data[name] for name in ("train_loss", "val_loss")}
        return cls(**{**data, **losses, "val": MetricValues.from_dict(data["val"])})


def selection_scores(history: Sequence[EpochLog], select_on: str) -> list[float]:
    """Each epoch's value of ``select_on`` (:func:`bench.train.selection.epoch_score`) over a run's history."""
    return [epoch_score(h.val_loss, h.val, select_on) for h in history]


EXPLOSION_FACTOR = 3.0
CONVERGENCE_TOLERANCE = 1e-3  # relative to the best earlier value

ConvergedStatus = Literal["converged", "not converged", "not assessed"]


@dataclass(frozen=True)
class ConvergenceCheck:
    status: ConvergedStatus
    reason: str


def check_convergence(
    epochs: Sequence[int], scores: Sequence[float], kept_epoch: int, select_on: str,
    tolerance: float = CONVERGENCE_TOLERANCE,
) -> ConvergenceCheck:  # fmt: skip
    """Whether a run ended still improving: see the module docstring. ``epochs`` and ``scores`` are in training
    order (``scores``: :func:`selection_scores`); ``kept_epoch`` is the epoch selection kept."""
    if len(epochs) < 2:
        return ConvergenceCheck("not assessed", "one epoch trained: nothing to compare it with")
    of, metric = f"{kept_epoch} of {len(epochs)}", f"validation {select_on}"
    if kept_epoch != epochs[-1]:
        return ConvergenceCheck("converged", f"kept epoch {of}: {metric} peaked before the end")
    earlier = [s for s in scores[:-1] if math.isfinite(s)]
    final = scores[-1]
    if not earlier or not math.isfinite(final):
        return ConvergenceCheck("not assessed", f"kept epoch {of}: no earlier {metric} to compare it with")
    sign = 1.0 if higher_is_better(select_on) else -1.0
    best = max(earlier) if sign > 0 else min(earlier)
    gain = sign * (final - best)
    if gain > tolerance * max(abs(best), 1e-12):
        return ConvergenceCheck(
            "not converged", f"kept its last epoch ({of}) with {metric} still improving ({best:.4g} → {final:.4g})"
        )
    return ConvergenceCheck(
        "converged", f"kept its last epoch ({of}); {metric} within {tolerance:.1%} of the best before"
    )


def check_train_loss(losses: Sequence[float], n_classes: int, factor: float = EXPLOSION_FACTOR) -> str | None:
    """None where every epoch's mean training loss is finite and below ``factor`` times its reference (the
    module docstring); else the first such epoch, named."""
    uniform = math.log(n_classes)
    first = losses[0] if losses else math.nan
    for epoch, loss in enumerate(losses, start=1):
        if not math.isfinite(loss):
            return f"training loss became {loss} in epoch {epoch}"
        if epoch == 1 or not math.isfinite(first) or first <= uniform:
            reference, of = uniform, f"ln {n_classes}"
        else:
            reference, of = first, f"epoch 1's {first:.3g}"
        if loss > factor * reference:
            return f"training loss exploded: {loss:.3g} in epoch {epoch}, {loss / reference:.1f}x {of}"
    return None
