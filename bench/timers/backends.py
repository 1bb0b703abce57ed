"""The device-specific part of timing a step: timers, synchronisation, peak memory, the OOM type.

On CUDA each step is bracketed by CUDA events and the end event is synchronised: an unsynchronised wall
clock measures how long it takes to *launch* kernels, not to run them. On the CPU ``perf_counter_ns``.
The calls live in a small backend object, so the CUDA path is exercised by the tests on a machine without
a GPU; latency's forward passes (:mod:`bench.latency.measure`) and ``bench profile``'s training steps
(:mod:`bench.train.profile`) are timed by the same one.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from bench.environment.device import device_fingerprint


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


def select_backend(device: torch.device) -> Backend:
    """The CUDA backend for a CUDA device, else the CPU one."""
    return CudaBackend(device) if device.type == "cuda" else CpuBackend()
