"""Inference latency of a backbone, measured so that the figures can be published.

The method follows timm's ``benchmark.py`` and the MLPerf latency rules, with the gaps they leave closed:

* the model runs in eval mode under ``torch.inference_mode()``; the first call and a fixed warm-up are never
  timed (they pay lazy initialisation, cuDNN autotuning and ``torch.compile``'s compilation);
* every forward pass is timed on its own, so percentiles exist, and timing goes on until the p50 is stable
  or the per-setting time budget is spent; a result that never stabilised says so (``noisy``) and why;
* on CUDA each step is bracketed by CUDA events and the end event is synchronised: an unsynchronised wall
  clock measures how long it takes to *launch* kernels, not to run them. On the CPU ``perf_counter_ns``;
* every figure says whether it is per batch or per image (timm's ``infer_step_time`` is ms per *batch*,
  which is easily misread as per-image latency);
* a CUDA out-of-memory at a batch size halves the batch and goes on, recording the sizes that failed;
* each result carries a fingerprint of the machine (GPU clocks and driver, or CPU model and threads),
  without which a latency figure cannot be compared with anything.

The device-specific calls (events, synchronisation, memory statistics, the OOM exception type) live in a
small backend object, so the CUDA path is exercised by the tests on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import os
import platform
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from rich.table import Table
from torch import nn

from bench.errors import ConfigError
from bench.models.registry import create_backbone, get_backbone, resolve_resolution
from bench.runs.record import atomic_write_bytes, write_json

PRECISIONS = ("fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
RECORD_SCHEMA = "backbone-bench/latency/v1"
_Z95 = 1.959964


@dataclass(frozen=True)
class LatencyConfig:
    """What to measure and how long to insist. Every (batch size, precision) pair is one setting.

    ``warmup_iters`` counts the first call, which is timed apart (``first_call_ms``). Timing stops at the
    first of: the p50 is stable (after at least ``min_iters`` iterations the coefficient of variation is
    at most ``cv_target``, or the 95% confidence interval of the p50 is within +-``cv_target`` of it),
    ``max_iters`` iterations, or ``time_budget_s`` of timed forward passes (warm-up not counted).
    """

    batch_sizes: tuple[int, ...] = (1, 32)
    precisions: tuple[str, ...] = ("fp32",)
    channels_last: bool = False
    compile: bool = False
    warmup_iters: int = 10
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
            if precision not in PRECISIONS:
                raise ConfigError(f"latency precision {precision!r} is unknown (known: {', '.join(PRECISIONS)})")
        if self.warmup_iters < 1:
            raise ConfigError("latency warmup_iters must be at least 1: the first call is never representative")
        if not 1 <= self.min_iters <= self.max_iters:
            raise ConfigError(f"latency needs 1 <= min_iters <= max_iters, got {self.min_iters} and {self.max_iters}")
        if self.time_budget_s <= 0 or self.cv_target <= 0:
            raise ConfigError("latency time_budget_s and cv_target must be positive")
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


# --------------------------------------------------------------------------------------------- statistics


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


def median_ci95(times_ms: Sequence[float]) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median, from order statistics.

    Latencies are skewed and have outliers (a shared CPU, a GPU clock change), so a normal-theory interval
    would mislead; ranks n/2 -+ 1.96 sqrt(n)/2, rounded outwards, hold for any continuous distribution.
    """
    ordered = np.sort(np.asarray(times_ms, dtype=float))
    n = len(ordered)
    spread = _Z95 * math.sqrt(n) / 2
    low = max(1, math.floor(n / 2 - spread))
    high = min(n, math.ceil(1 + n / 2 + spread))
    return float(ordered[low - 1]), float(ordered[high - 1])


def p50_ci_halfwidth(times_ms: Sequence[float]) -> float:
    """Half the width of the p50's 95% confidence interval, relative to the p50."""
    low, high = median_ci95(times_ms)
    return (high - low) / (2 * float(np.median(times_ms)))


def stop_reason(times_ms: Sequence[float], config: LatencyConfig) -> str | None:
    """Why timing should stop now (``cv``, ``p50_ci``, ``max_iters``, ``budget``), or ``None`` to go on.

    Two stability tests: a small cv means every iteration agrees; a narrow confidence interval of the p50
    means the p50 is pinned even when rare outliers (another process on a shared CPU) inflate the cv. The
    interval also refuses a bimodal run, whose p50 merely sits between the modes. The budget counts timed
    passes only, so that it is deterministic under a fake timer.
    """
    n = len(times_ms)
    if n >= config.min_iters:
        if coefficient_of_variation(times_ms) <= config.cv_target:
            return "cv"
        if p50_ci_halfwidth(times_ms) <= config.cv_target:
            return "p50_ci"
    if n >= config.max_iters:
        return "max_iters"
    if sum(times_ms) >= config.time_budget_s * 1000:
        return "budget"
    return None


def noisy_reason(times_ms: Sequence[float], reason: str, config: LatencyConfig) -> str | None:
    """The one-line explanation for a run that stopped without a stable p50, else ``None``."""
    if reason in ("cv", "p50_ci"):
        return None
    n = len(times_ms)
    if n < config.min_iters:
        budget = f"{config.time_budget_s:g} s"
        return f"time budget of {budget} ran out after {n} iterations (< min_iters {config.min_iters})"
    limit = f"within the {config.time_budget_s:g} s budget" if reason == "budget" else f"after {n} iterations"
    return (
        f"p50 not stable {limit}: cv {coefficient_of_variation(times_ms):.3f}, "
        f"p50 95% CI +-{p50_ci_halfwidth(times_ms):.1%} (target {config.cv_target:.1%})"
    )


# --------------------------------------------------------------------------------------------- backends


class Backend(Protocol):
    """The device-specific part of a measurement, small enough to fake in tests."""

    kind: str
    device: torch.device
    oom_errors: tuple[type[BaseException], ...]
    memory_kind: str | None

    def time_ms(self, step: Callable[[], object]) -> float: ...

    def synchronize(self) -> None: ...

    def reset_peak_memory(self) -> None: ...

    def peak_memory_bytes(self) -> int | None: ...

    def empty_cache(self) -> None: ...

    def fingerprint(self) -> dict[str, Any]: ...


class CudaBackend:
    """CUDA events around each step, end event synchronised before it is read."""

    kind = "cuda"
    oom_errors: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError,)
    memory_kind = "cuda_max_memory_allocated"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def time_ms(self, step: Callable[[], object]) -> float:
        stream = torch.cuda.current_stream(self.device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record(stream)
        step()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def reset_peak_memory(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory_bytes(self) -> int | None:
        return torch.cuda.max_memory_allocated(self.device)

    def empty_cache(self) -> None:
        torch.cuda.empty_cache()

    def fingerprint(self) -> dict[str, Any]:
        return device_fingerprint(self.device)


class CpuBackend:
    """``perf_counter_ns`` around each step; peak memory from the kernel's RSS high-water mark.

    There is no OOM back-off on the CPU: an allocation failure there is a plain ``RuntimeError`` (or, with
    overcommit, the OOM killer), nothing a smaller batch reliably recovers from.
    """

    kind = "cpu"
    device = torch.device("cpu")
    oom_errors: tuple[type[BaseException], ...] = ()
    memory_kind = "cpu_peak_rss_delta"

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self._clock = clock
        self._rss_before: int | None = None

    def time_ms(self, step: Callable[[], object]) -> float:
        start = self._clock()
        step()
        return (self._clock() - start) / 1e6

    def synchronize(self) -> None:
        """CPU execution is synchronous."""

    def reset_peak_memory(self) -> None:
        """Return freed heap to the OS, then restart the high-water mark at the current RSS.

        Without the trim, activations land in pages kept from an earlier setting and the peak does not move.
        Resetting ``VmHWM`` (Linux ``clear_refs`` 5) also resets the process's ``ru_maxrss``.
        """
        _malloc_trim()
        self._rss_before = _proc_status_bytes("VmRSS") if _reset_peak_rss() else None

    def peak_memory_bytes(self) -> int | None:
        peak = _proc_status_bytes("VmHWM")
        if self._rss_before is None or peak is None:
            return None
        return max(0, peak - self._rss_before)

    def empty_cache(self) -> None:
        """The CPU allocator keeps no cache of its own."""

    def fingerprint(self) -> dict[str, Any]:
        return device_fingerprint(self.device)


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _proc_status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            match = re.search(rf"^{key}:\s+(\d+) kB", fh.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def resolve_device(spec: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; asking for CUDA on a machine without it is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"latency device {spec!r} requested but CUDA is not available on this machine")
    return device


def select_backend(device: torch.device) -> Backend:
    return CudaBackend(device) if device.type == "cuda" else CpuBackend()


# --------------------------------------------------------------------------------------------- fingerprint


def device_fingerprint(device: torch.device) -> dict[str, Any]:
    """What a latency figure depends on besides the model: host, software and, on CUDA, the GPU's state.

    Every probe is guarded: a missing NVML or an unreadable file leaves a ``None``, never a failed run.
    The host part is recorded for CUDA too, because batch-1 GPU latency is bound by kernel launches.
    """
    fingerprint = _host_fingerprint()
    fingerprint["device_kind"] = device.type
    if device.type == "cuda":
        fingerprint |= _cuda_fingerprint(device)
    return fingerprint


def _guard(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # a probe that fails only leaves its field empty
        return None


def _host_fingerprint() -> dict[str, Any]:
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(affinity(0)) if affinity else None,
        "torch_threads": torch.get_num_threads(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "parallel_backend": _parallel_backend(),
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": _guard(lambda: os.getloadavg()[0]),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            match = re.search(r"^model name\s*:\s*(.+)$", fh.read(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _parallel_backend() -> str | None:
    match = re.search(r"ATen parallel backend: (.+)", _guard(torch.__config__.parallel_info) or "")
    return match.group(1).strip() if match else None


def _cuda_fingerprint(device: torch.device) -> dict[str, Any]:
    index = device.index if device.index is not None else _guard(torch.cuda.current_device)
    props = _guard(torch.cuda.get_device_properties, index)
    fingerprint = {
        "gpu_index": index,
        "gpu_name": getattr(props, "name", None),
        "compute_capability": f"{props.major}.{props.minor}" if props is not None else None,
        "gpu_total_memory_bytes": getattr(props, "total_memory", None),
        "cuda_version": torch.version.cuda,
        "cudnn_version": _guard(torch.backends.cudnn.version),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    nvml = _nvml_fingerprint(index, getattr(props, "uuid", None))
    fingerprint["gpu_name"] = nvml.pop("gpu_name", None) or fingerprint["gpu_name"]
    return fingerprint | nvml


def _nvml_fingerprint(index: int | None, torch_uuid: object) -> dict[str, Any]:
    """Driver and the GPU's state at the start: clocks, power limit, temperature (NVML, each call guarded)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as err:  # no NVML library or driver: say so in the record
        return {"nvml_error": f"{type(err).__name__}: {err}"}
    try:
        handle = nvml_handle(pynvml, index, torch_uuid)
        clock = pynvml.nvmlDeviceGetClockInfo
        max_clock = pynvml.nvmlDeviceGetMaxClockInfo
        power_mw = _guard(pynvml.nvmlDeviceGetPowerManagementLimit, handle)
        return {
            "gpu_name": _text(_guard(pynvml.nvmlDeviceGetName, handle)),
            "driver_version": _text(_guard(pynvml.nvmlSystemGetDriverVersion)),
            "sm_clock_mhz": _guard(clock, handle, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": _guard(clock, handle, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": _guard(max_clock, handle, pynvml.NVML_CLOCK_SM),
            "max_mem_clock_mhz": _guard(max_clock, handle, pynvml.NVML_CLOCK_MEM),
            "power_limit_w": power_mw / 1000 if power_mw is not None else None,
            "temperature_c": _guard(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU),
        }
    finally:
        _guard(pynvml.nvmlShutdown)


def nvml_handle(pynvml: Any, index: int | None, torch_uuid: object) -> Any:
    """NVML's handle for torch's device, matched by UUID: NVML ignores ``CUDA_VISIBLE_DEVICES`` and may
    order GPUs differently from CUDA, so index ``i`` in torch is not always index ``i`` in NVML."""
    if torch_uuid is not None:
        text = str(torch_uuid)
        handle = _guard(pynvml.nvmlDeviceGetHandleByUUID, text if text[:4] in ("GPU-", "MIG-") else f"GPU-{text}")
        if handle is not None:
            return handle
    return _guard(pynvml.nvmlDeviceGetHandleByIndex, index)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


# --------------------------------------------------------------------------------------------- measurement


class _Unsupported(Exception):
    """A requested feature (reduced precision, compilation) does not work here; the setting is skipped."""


@dataclass
class _Run:
    times_ms: list[float]
    stop_reason: str
    first_call_ms: float
    peak_memory_bytes: int | None


def measure_latency(
    model: nn.Module,
    input_size: tuple[int, int, int],
    config: LatencyConfig,
    backbone: str | None = None,
) -> list[LatencyResult]:
    """Latency of ``model`` on ``(C, H, W)`` inputs: one result per (precision, batch size) setting.

    The model is returned in the training mode, device and memory format it came in, so a training run can
    measure its own model and carry on.
    """
    if len(input_size) != 3 or any(int(s) < 1 for s in input_size):
        raise ConfigError(f"latency input size must be (channels, height, width), got {input_size}")
    backend = select_backend(resolve_device(config.device))
    fingerprint = backend.fingerprint()
    results = []
    with _prepared(model, backend.device, config.channels_last):
        for precision in config.precisions:
            for batch in config.batch_sizes:
                result = _measure_setting(model, tuple(input_size), batch, precision, config, backend)
                result.backbone, result.fingerprint = backbone, fingerprint
                results.append(result)
    return results


@contextlib.contextmanager
def _prepared(model: nn.Module, device: torch.device, channels_last: bool) -> Iterator[None]:
    """Eval mode on ``device`` in the requested memory format; everything undone on exit."""
    was_training = model.training
    first = next(model.parameters(), None)
    home = first.device if first is not None else device
    original_format = _memory_format(model)
    target = torch.channels_last if channels_last else torch.contiguous_format
    model.eval().to(device=device, memory_format=target)
    try:
        yield
    finally:
        model.to(device=home, memory_format=original_format).train(was_training)


def _memory_format(model: nn.Module) -> torch.memory_format:
    """``channels_last`` when the model's 4-D weights are stored so (trained that way), else contiguous."""
    weights = [p for p in model.parameters() if p.dim() == 4]
    stored_nhwc = bool(weights) and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    # Some weights (1x1 kernels, one input channel) are both; a model with no plain-contiguous one is NHWC.
    if stored_nhwc and not all(w.is_contiguous() for w in weights):
        return torch.channels_last
    return torch.contiguous_format


def _measure_setting(
    model: nn.Module,
    input_size: tuple[int, int, int],
    batch: int,
    precision: str,
    config: LatencyConfig,
    backend: Backend,
) -> LatencyResult:
    """One setting, halving the batch on out-of-memory until it fits (or nothing does)."""
    result = LatencyResult(
        backbone=None,
        resolution=input_size[1] if input_size[1] == input_size[2] else None,
        input_size=input_size,
        batch_size=batch,
        batch_size_run=None,
        precision=precision,
        memory_format="channels_last" if config.channels_last else "contiguous",
        compiled=config.compile,
        device_kind=backend.kind,
        peak_memory_kind=backend.memory_kind,
    )
    run_batch = batch
    while run_batch >= 1:
        try:
            run = _run(model, input_size, run_batch, precision, config, backend)
            break
        except backend.oom_errors:
            result.oom_backoff.append(run_batch)
        except _Unsupported as err:
            result.skipped = str(err)
            return result
        # Outside the except block: the failed step's frames, and the tensors they hold, are released now.
        backend.empty_cache()
        run_batch //= 2
    else:
        result.skipped = f"out of memory at every batch size down to 1 (tried {result.oom_backoff})"
        return result
    result.batch_size_run = run_batch
    for name, value in latency_stats(run.times_ms, run_batch).items():
        setattr(result, name, value)
    result.stop_reason = run.stop_reason
    result.noisy_reason = noisy_reason(run.times_ms, run.stop_reason, config)
    result.noisy = result.noisy_reason is not None
    result.first_call_ms = run.first_call_ms
    result.peak_memory_bytes = run.peak_memory_bytes
    return result


def _run(
    model: nn.Module,
    input_size: tuple[int, int, int],
    batch: int,
    precision: str,
    config: LatencyConfig,
    backend: Backend,
) -> _Run:
    """First call, warm-up, then timed iterations until :func:`stop_reason` says stop."""
    inputs = _inputs(batch, input_size, backend.device, config.channels_last)
    forward = _forward(model, config.compile)

    def step() -> object:
        return forward(inputs)

    with torch.inference_mode(), _precision_context(precision, backend.device):
        if precision != "fp32" and not torch.is_autocast_enabled(backend.device.type):
            raise _Unsupported(f"{precision} autocast is not supported on {backend.device.type}")
        first_call_ms = _first_call(step, precision, config.compile, backend)
        backend.reset_peak_memory()
        for _ in range(config.warmup_iters - 1):
            step()
        backend.synchronize()
        times: list[float] = []
        while (reason := stop_reason(times, config)) is None:
            times.append(backend.time_ms(step))
    return _Run(times, reason, first_call_ms, backend.peak_memory_bytes())


def _first_call(step: Callable[[], object], precision: str, compiled: bool, backend: Backend) -> float:
    """Time the first call; a failure of an optional feature (compile, reduced precision) skips the setting.

    A plain fp32 eager failure is a real error and propagates.
    """
    try:
        return backend.time_ms(step)
    except backend.oom_errors:
        raise
    except RuntimeError as err:
        features = (["torch.compile"] if compiled else []) + ([precision] if precision != "fp32" else [])
        if not features:
            raise
        message = (str(err).strip().splitlines() or [""])[0]
        raise _Unsupported(
            f"{' + '.join(features)} failed on {backend.device.type}: {type(err).__name__}: {message}"
        ) from err


def _inputs(batch: int, input_size: tuple[int, int, int], device: torch.device, channels_last: bool) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, *input_size, generator=generator).to(device)
    return inputs.contiguous(memory_format=torch.channels_last) if channels_last else inputs


def _forward(model: nn.Module, compile_model: bool) -> Callable[[torch.Tensor], object]:
    """The model, or a fresh static-shape compilation of it for this setting.

    Dynamo caches compiled code per code object (every ResNet shares ``ResNet.forward``) up to a small
    recompile limit, after which it silently runs eagerly; and a second batch size would otherwise be
    compiled with dynamic shapes, which is not what a deployment with a fixed batch runs. Resetting Dynamo
    is global: anything compiled before in this process compiles again on its next call.
    """
    if not compile_model:
        return model
    torch._dynamo.reset()
    return torch.compile(model, dynamic=False)


def _precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


def benchmark_backbones(
    names: list[str], resolution: int, config: LatencyConfig, num_classes: int = 1000
) -> list[LatencyResult]:
    """``bench latency``: each backbone randomly initialised (weights do not change latency), at
    ``resolution`` or, where the architecture needs more, at its minimum input size."""
    results = []
    for name in names:
        entry = get_backbone(name)
        side = resolve_resolution(entry, resolution, policy="upsize")
        model, _ = create_backbone(name, num_classes)
        results += measure_latency(model, (3, side, side), config, backbone=name)
    return results


# --------------------------------------------------------------------------------------------- reporting


def latency_table(results: Sequence[LatencyResult]) -> Table:
    """A rich table; every latency header says whether it is per batch or per image."""
    table = Table(title="Inference latency", caption=_caption(results))
    for header in ("Backbone", "Res", "Batch", "Precision", "Format", "Device"):
        table.add_column(header)
    for header in ("p50 ms/batch", "p90 ms/batch", "p99 ms/batch", "p50 ms/image", "img/s", "CV", "Iters"):
        table.add_column(header, justify="right")
    table.add_column("Peak mem", justify="right")
    table.add_column("Notes")
    for r in results:
        table.add_row(
            r.backbone or "-",
            str(r.resolution or "x".join(map(str, r.input_size[1:]))),
            _batch_cell(r),
            r.precision,
            r.memory_format + (" +compile" if r.compiled else ""),
            r.device_kind,
            _ms(r.ms_per_batch_p50),
            _ms(r.ms_per_batch_p90),
            _ms(r.ms_per_batch_p99),
            _ms(r.ms_per_image_p50),
            f"{r.throughput_img_s:,.0f}" if r.throughput_img_s is not None else "-",
            f"{r.cv:.3f}" if r.cv is not None else "-",
            str(r.n_iters),
            _mib(r.peak_memory_bytes),
            _notes(r),
        )
    return table


def _caption(results: Sequence[LatencyResult]) -> str:
    where = ""
    if results:
        fp = results[0].fingerprint
        device = fp.get("gpu_name") if results[0].device_kind == "cuda" else fp.get("cpu_model")
        load = fp.get("load_avg_1m")
        where = f"{device}, {fp.get('torch_threads')} torch threads, torch {fp.get('torch_version')}"
        where += f", load {load:.1f} at start. " if load is not None else ". "
    return where + "ms/batch: one forward pass of the whole batch; img/s: batch / mean ms/batch."


def _batch_cell(r: LatencyResult) -> str:
    if r.batch_size_run is None or r.batch_size_run == r.batch_size:
        return str(r.batch_size)
    return f"{r.batch_size_run} (asked {r.batch_size})"


def _notes(r: LatencyResult) -> str:
    notes = []
    if r.skipped:
        notes.append(f"skipped: {r.skipped}")
    if r.oom_backoff:
        notes.append(f"OOM at {', '.join(map(str, r.oom_backoff))}")
    if r.noisy:
        notes.append(f"noisy: {r.noisy_reason}")
    if r.compiled and r.first_call_ms is not None:
        notes.append(f"first call (compile) {r.first_call_ms / 1000:.1f} s")
    return "; ".join(notes)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _mib(value: int | None) -> str:
    return f"{value / 2**20:.1f} MiB" if value is not None else "-"


def latency_frame(results: Sequence[LatencyResult]) -> pd.DataFrame:
    """One row per result, the fingerprint flattened to ``fingerprint.<key>`` columns."""
    return pd.json_normalize([r.to_dict() for r in results], sep=".")


def save_latency_records(results: Sequence[LatencyResult], out_dir: Path) -> Path:
    """Write ``out_dir/latency/latency-<UTC time>-<id>.json``, one file per invocation, atomically.

    ``out_dir`` is the results root (``results/``). The random suffix keeps two invocations in the same
    microsecond apart; :func:`bench.runs.record.write_json` makes the file appear whole or not at all.
    """
    now = datetime.now(UTC)
    path = Path(out_dir) / "latency" / f"latency-{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.json"
    payload = {
        "schema": RECORD_SCHEMA,
        "created_utc": now.isoformat(),
        "records": [r.to_dict() for r in results],
    }
    write_json(path, payload)
    atomic_write_bytes(path.with_suffix(".md"), latency_markdown(payload["records"]).encode())
    return path


def latency_markdown(records: Sequence[dict]) -> str:
    """The Markdown summary written beside a latency JSON (and quoted in the README): one row per setting.

    Built from the stored dicts, so ``bench check-readme`` can re-derive it from the JSON alone; the cells
    are :func:`latency_table`'s.
    """
    results = [LatencyResult(**r) for r in records]
    rows = [
        {
            "backbone": r.backbone,
            "res": r.resolution,
            "batch": _batch_cell(r),
            "precision": r.precision,
            "format": r.memory_format + (" +compile" if r.compiled else ""),
            "p50 ms/batch": _ms(r.ms_per_batch_p50),
            "p50 ms/image": _ms(r.ms_per_image_p50),
            "img/s": f"{r.throughput_img_s:,.0f}" if r.throughput_img_s is not None else "-",
            "CV": f"{r.cv:.3f}" if r.cv is not None else "-",
            "peak mem": _mib(r.peak_memory_bytes),
            "notes": _notes(r),
        }
        for r in results
    ]
    fp = records[0]["fingerprint"] if records else {}
    if fp.get("device_kind") == "cuda":
        device = (
            f"{fp.get('gpu_name')} (driver {fp.get('driver_version')}, CUDA {fp.get('cuda_version')}, "
            f"cuDNN {fp.get('cudnn_version')}, power limit {fp.get('power_limit_w')} W)"
        )
    else:
        device = f"{fp.get('cpu_model')}, {fp.get('torch_threads')} threads"
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    return (
        f"{table}\n\n{device}, torch {fp.get('torch_version')}. ms/batch: one forward pass of the whole batch; "
        "ms/image = ms/batch / batch; img/s: batch / mean ms/batch.\n"
    )
