"""The timers ``bench latency`` and ``bench profile`` share: CUDA events synchronised before they are read, on a
machine without a GPU (torch.cuda faked), and the CPU's ``perf_counter_ns``."""

from __future__ import annotations

import torch

from bench.timers.backends import CpuBackend, CudaBackend


def test_cuda_backend_times_with_synchronised_events(monkeypatch):
    """Start event, the step, end event, wait for the end event, then read: never an unsynchronised clock."""
    log: list[str] = []

    class FakeEvent:
        count = 0

        def __init__(self, enable_timing=False):
            assert enable_timing
            self.name = "start" if FakeEvent.count % 2 == 0 else "end"
            FakeEvent.count += 1

        def record(self, stream):
            log.append(f"{self.name}.record@{stream}")

        def synchronize(self):
            log.append(f"{self.name}.synchronize")

        def elapsed_time(self, other):
            log.append("elapsed_time")
            return 12.5

    fake_cuda = {
        "Event": FakeEvent,
        "current_stream": lambda device: "stream0",
        "max_memory_allocated": lambda device: 123,
        "reset_peak_memory_stats": lambda device: log.append("reset_peak"),
        "empty_cache": lambda: log.append("empty_cache"),
        "synchronize": lambda device: log.append("synchronize"),
    }
    for name, value in fake_cuda.items():
        monkeypatch.setattr(torch.cuda, name, value)
    backend = CudaBackend(torch.device("cuda", 0))
    assert backend.time_ms(lambda: log.append("step")) == 12.5
    assert log == ["start.record@stream0", "step", "end.record@stream0", "end.synchronize", "elapsed_time"]
    backend.reset_peak_memory()
    backend.synchronize()
    backend.empty_cache()
    assert log[-3:] == ["reset_peak", "synchronize", "empty_cache"] and backend.peak_memory_bytes() == 123
    assert torch.cuda.OutOfMemoryError in backend.oom_errors


def test_cpu_backend_times_with_perf_counter_ns():
    clock = iter([0, 3_250_000]).__next__  # nanoseconds before and after the step
    backend = CpuBackend(clock=clock)
    assert backend.time_ms(lambda: None) == 3.25
