"""What a latency figure is, and when timing may stop: settings, results, statistics, stopping rules.

No torch here: the figures are computed from per-iteration milliseconds, so records can be read and
re-rendered (``bench check-readme``) without loading a model runtime. The interval of the p50 is
:func:`bench.timers.median.median_ci95`, shared with ``bench profile``; the measurement itself is
:mod:`bench.latency.measure`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.errors import ConfigError
from bench.precision import MEASURED_PRECISIONS
from bench.timers.median import median_ci95


@dataclass(frozen=True)
class LatencyConfig:
    """What to measure and how long to insist. Every (batch size, precision) pair is one setting.

    ``warmup_iters`` counts the first call, which is timed apart (``first_call_ms``); warm-up is also sized
    by time, ending once it has taken ``warmup_s`` or half the budget, so a slow setting does not spend its
    budget warming up. Timing stops at the first of: the p50 is stable (after at least ``min_iters`` iterations the
    coefficient of variation is at most ``cv_target``, or the 95% confidence interval of the p50 is within
    +-``cv_target`` of it), ``max_iters`` iterations, or ``time_budget_s`` of warm-up and timed passes
    together (the first call, which may compile, not counted).
    """

    batch_sizes: tuple[int, ...] = (1, 32)
    precisions: tuple[str, ...] = ("fp32",)
    channels_last: bool = False
    compile: bool = False
    warmup_iters: int = 10
    warmup_s: float = 1.0  # at most half of time_budget_s
    min_iters: int = 20
    max_iters: int = 500
    time_budget_s: float = 10.0
    cv_target: float = 0.05
    device: str = "auto"

    def __post_init__(self) -> None:
        # The CLI hands in lists; tuples keep the frozen config hashable and its records uniform.
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        object.__setattr__(self, "precisions", tuple(self.precisions))
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ConfigError(f"latency batch sizes must be positive integers, got {list(self.batch_sizes)}")
        if not self.precisions:
            raise ConfigError("latency needs at least one precision")
        for precision in self.precisions:
            if precision not in MEASURED_PRECISIONS:
                raise ConfigError(
                    f"latency precision {precision!r} is unknown (known: {', '.join(MEASURED_PRECISIONS)})"
                )
        if self.warmup_iters < 1:
            raise ConfigError("latency warmup_iters must be at least 1: the first call is never representative")
        if not 1 <= self.min_iters <= self.max_iters:
            raise ConfigError(f"latency needs 1 <= min_iters <= max_iters, got {self.min_iters} and {self.max_iters}")
        if self.time_budget_s <= 0 or self.cv_target <= 0 or self.warmup_s <= 0:
            raise ConfigError("latency time_budget_s, warmup_s and cv_target must be positive")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"latency device {self.device!r} is not one of auto, cpu, cuda, cuda:N")


@dataclass
class LatencyResult:
    """One (batch size, precision, memory format) setting: what ran, the figures, and on what machine.

    ``ms_per_batch_*`` are the time of one forward pass of the whole batch; ``ms_per_image_p50`` divides
    the batch p50 by the batch that ran; ``throughput_img_s`` is the sustained rate, images over the mean
    batch time (as timm computes it). p99 is an interpolation near the maximum below ~100 iterations.

    ``peak_memory_bytes`` depends on the device, hence ``peak_memory_kind``: on CUDA
    ``torch.cuda.max_memory_allocated`` over warm-up and timing (tensors only, weights included, the
    allocator's cache excluded); on Linux CPUs the growth of the process's peak RSS over its RSS before
    warm-up (activations and workspaces; weights already resident are not counted); ``None`` elsewhere.
    ``skipped`` is the reason when the setting could not run (fp16 unsupported on this CPU, out of memory
    even at batch 1, compilation failed); its figures are then ``None``.
    """

    backbone: str | None
    resolution: int | None
    input_size: tuple[int, int, int]
    batch_size: int
    batch_size_run: int | None
    precision: str
    memory_format: str
    compiled: bool
    device_kind: str
    ms_per_batch_p50: float | None = None
    ms_per_batch_p50_ci95: tuple[float, float] | None = None
    ms_per_batch_p90: float | None = None
    ms_per_batch_p99: float | None = None
    ms_per_batch_mean: float | None = None
    ms_per_image_p50: float | None = None
    throughput_img_s: float | None = None
    cv: float | None = None
    n_iters: int = 0
    stop_reason: str | None = None
    noisy: bool = False
    noisy_reason: str | None = None
    first_call_ms: float | None = None
    peak_memory_bytes: int | None = None
    peak_memory_kind: str | None = None
    oom_backoff: list[int] = field(default_factory=list)
    skipped: str | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        """The setting :meth:`to_dict` wrote (JSON lists back to the tuples they were)."""
        ci95 = data.get("ms_per_batch_p50_ci95")
        return cls(**{**data, "input_size": tuple(data["input_size"]), "ms_per_batch_p50_ci95": ci95 and tuple(ci95)})


def latency_stats(times_ms: Sequence[float], batch: int) -> dict[str, Any]:
    """The figures of a setting from its per-iteration batch times, keyed as in :class:`LatencyResult`."""
    times = np.asarray(times_ms, dtype=float)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    mean = float(times.mean())
    low, high = median_ci95(times)
    return {
        "ms_per_batch_p50": float(p50),
        "ms_per_batch_p50_ci95": (low, high),
        "ms_per_batch_p90": float(p90),
        "ms_per_batch_p99": float(p99),
        "ms_per_batch_mean": mean,
        "ms_per_image_p50": float(p50) / batch,
        "throughput_img_s": 1000.0 * batch / mean,
        "cv": coefficient_of_variation(times),
        "n_iters": len(times),
    }


def coefficient_of_variation(times_ms: Sequence[float]) -> float:
    """Sample standard deviation over mean; 0 for a single iteration."""
    times = np.asarray(times_ms, dtype=float)
    return float(times.std(ddof=1) / times.mean()) if len(times) > 1 else 0.0


def p50_ci_halfwidth(times_ms: Sequence[float]) -> float:
    """Half the width of the p50's 95% confidence interval, relative to the p50."""
    low, high = median_ci95(times_ms)
    return (high - low) / (2 * float(np.median(times_ms)))


def warmup_done(warmup_ms: Sequence[float], config: LatencyConfig) -> bool:
    """Whether warm-up (the passes after the first call) may end: ``warmup_iters`` reached, or ``warmup_s`` (at
    most half the budget, which leaves the other half to timing) spent."""
    limit_s = min(config.warmup_s, config.time_budget_s / 2)
    return len(warmup_ms) >= config.warmup_iters - 1 or sum(warmup_ms) >= limit_s * 1000


def stop_reason(times_ms: Sequence[float], config: LatencyConfig, warmup_ms: float = 0.0) -> str | None:
    """Why timing should stop now (``cv``, ``p50_ci``, ``max_iters``, ``budget``), or ``None`` to go on.

    Two stability tests: a small cv means every iteration agrees; a narrow confidence interval of the p50
    means the p50 is pinned even when rare outliers (another process on a shared CPU) inflate the cv. The
    interval also refuses a bimodal run, whose p50 merely sits between the modes. The budget counts the
    ``warmup_ms`` spent warming up and the timed passes, as measured, so it is deterministic under a fake timer;
    at least one pass is timed.
    """
    n = len(times_ms)
    if n == 0:
        return None
    if n >= config.min_iters:
        if coefficient_of_variation(times_ms) <= config.cv_target:
            return "cv"
        if p50_ci_halfwidth(times_ms) <= config.cv_target:
            return "p50_ci"
    if n >= config.max_iters:
        return "max_iters"
    if warmup_ms + sum(times_ms) >= config.time_budget_s * 1000:
        return "budget"
    return None


def noisy_reason(times_ms: Sequence[float], reason: str, config: LatencyConfig, warmup_ms: float = 0.0) -> str | None:
    """The one-line explanation for a run that stopped without a stable p50, else ``None``.

    Short of ``min_iters`` it says what budget would have reached them at the measured pace.
    """
    if reason in ("cv", "p50_ci"):
        return None
    n = len(times_ms)
    if n < config.min_iters:
        needed_s = (warmup_ms + config.min_iters * float(np.mean(times_ms))) / 1000
        return (
            f"time budget of {config.time_budget_s:g} s ran out after {n} iterations (< min_iters "
            f"{config.min_iters}) at {float(np.median(times_ms)) / 1000:.3g} s a pass: {config.min_iters} "
            f"need a budget of about {math.ceil(needed_s)} s"
        )
    limit = f"within the {config.time_budget_s:g} s budget" if reason == "budget" else f"after {n} iterations"
    return (
        f"p50 not stable {limit}: cv {coefficient_of_variation(times_ms):.3f}, "
        f"p50 95% CI +-{p50_ci_halfwidth(times_ms):.1%} (target {config.cv_target:.1%})"
    )
