"""How busy the GPU was while a stretch of code ran, sampled from NVML.

Epoch time alone cannot tell a GPU-bound run from one starved by its input pipeline; NVML's
"utilisation" (the share of the last sample period in which a kernel was running) can. A daemon thread
polls it while training runs, so the training loop itself makes no NVML call and no extra sync.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from bench.environment.device import nvml_handle

POLL_S = 0.1  # NVML refreshes the figure every 1/6 s to 1 s depending on the GPU


class GpuUtilisation:
    """Context manager: ``mean_pct`` is the mean NVML GPU utilisation over the block, or None.

    None means there was nothing to sample: a CPU device, no NVML library, or a block shorter than one
    poll. Failing to read NVML never fails training.
    """

    def __init__(self, device: torch.device, pynvml: Any = None, poll_s: float = POLL_S):
        self.device = device
        self.poll_s = poll_s
        self._pynvml = pynvml
        self._initialised = False  # nvmlInit was called here, so nvmlShutdown is owed
        self._handle: Any = None
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def mean_pct(self) -> float | None:
        return sum(self._samples) / len(self._samples) if self._samples else None

    def __enter__(self) -> GpuUtilisation:
        if self.device.type != "cuda":
            return self
        try:
            if self._pynvml is None:
                import pynvml

                pynvml.nvmlInit()
                self._pynvml, self._initialised = pynvml, True
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
            self._handle = nvml_handle(self._pynvml, index, uuid)
        except Exception:  # no NVML here: the epoch is logged without the figure
            return self
        if self._handle is not None:
            self._thread = threading.Thread(target=self._poll, daemon=True, name="bench-gpu-utilisation")
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._samples.append(float(self._pynvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))
            except Exception:
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._initialised:
            try:
                self._pynvml.nvmlShutdown()
            except Exception:
                pass
