"""Inference latency of a backbone, measured so that the figures can be published.

The method follows timm's ``benchmark.py`` and the MLPerf latency rules, with the gaps they leave closed:

* the model runs in eval mode under ``torch.inference_mode()``; the first call and a warm-up (a number of
  passes or a time, whichever ends first) are left out of the figures (they pay lazy initialisation, cuDNN
  autotuning and ``torch.compile``'s compilation);
* every forward pass is timed on its own, so percentiles exist, and timing goes on until the p50 is stable
  or the per-setting time budget (warm-up included) is spent; a result that never stabilised says so
  (``noisy``) and why, with the budget that would have reached ``min_iters``;
* on CUDA each step is bracketed by CUDA events and the end event is synchronised, on the CPU it is timed
  with ``perf_counter_ns`` (:mod:`bench.timers.backends`, shared with ``bench profile``);
* every figure says whether it is per batch or per image (timm's ``infer_step_time`` is ms per *batch*,
  which is easily misread as per-image latency);
* a CUDA out-of-memory at a batch size halves the batch and goes on, recording the sizes that failed;
* each result carries a fingerprint of the machine (GPU clocks and driver, or CPU model and threads),
  without which a latency figure cannot be compared with anything (:mod:`bench.environment.device`).

The statistics and the stopping rule are :mod:`bench.latency.timing`; tables and records are
:mod:`bench.latency.report`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from bench.backoff import halving
from bench.environment.device import resolve_device
from bench.errors import ConfigError
from bench.latency.timing import (
    LatencyConfig,
    LatencyResult,
    latency_stats,
    noisy_reason,
    stop_reason,
    warmup_done,
)
from bench.models.registry import create_backbone, get_backbone, resolve_resolution
from bench.precision import autocast
from bench.timers.backends import Backend, select_backend


class _Unsupported(Exception):
    """A requested feature (reduced precision, compilation) does not work here; the setting is skipped."""


@dataclass
class _Run:
    times_ms: list[float]
    stop_reason: str
    first_call_ms: float
    peak_memory_bytes: int | None
    warmup_ms: float  # warm-up passes after the first call, counted in the budget


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
    backend = select_backend(resolve_device(config.device, "latency device"))
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

    def attempt(size: int):
        return _run(model, input_size, size, precision, config, backend)

    try:
        run, run_batch = halving(batch, attempt, backend.oom_errors, backend.empty_cache, result.oom_backoff)
    except backend.oom_errors:
        result.skipped = f"out of memory at every batch size down to 1 (tried {result.oom_backoff})"
        return result
    except _Unsupported as err:
        result.skipped = str(err)
        return result
    result.batch_size_run = run_batch
    for name, value in latency_stats(run.times_ms, run_batch).items():
        setattr(result, name, value)
    result.stop_reason = run.stop_reason
    result.noisy_reason = noisy_reason(run.times_ms, run.stop_reason, config, run.warmup_ms)
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

    with torch.inference_mode(), autocast(precision, backend.device.type):
        if precision != "fp32" and not torch.is_autocast_enabled(backend.device.type):
            raise _Unsupported(f"{precision} autocast is not supported on {backend.device.type}")
        first_call_ms = _first_call(step, precision, config.compile, backend)
        backend.reset_peak_memory()
        warmup: list[float] = []
        while not warmup_done(warmup, config):
            warmup.append(backend.time_ms(step))
        backend.synchronize()
        times: list[float] = []
        while (reason := stop_reason(times, config, sum(warmup))) is None:
            times.append(backend.time_ms(step))
    return _Run(times, reason, first_call_ms, backend.peak_memory_bytes(), sum(warmup))


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
