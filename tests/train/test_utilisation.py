"""GPU utilisation sampling: NVML is faked, so these run without a GPU."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from bench.train.utilisation import GpuUtilisation


class FakeNvml:
    """Returns the utilisation figures in turn (the last one repeats); records the handle lookups."""

    def __init__(self, figures, fail=False):
        self.figures, self.fail, self.calls = list(figures), fail, []

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.calls.append(uuid)
        return "handle"

    def nvmlDeviceGetUtilizationRates(self, handle):
        if self.fail:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        value = self.figures.pop(0) if len(self.figures) > 1 else self.figures[0]
        return SimpleNamespace(gpu=value, memory=0)


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: SimpleNamespace(uuid="1234-abcd"))
    return torch.device("cuda", 0)


def test_mean_of_the_samples(fake_cuda):
    nvml = FakeNvml([40, 80])
    with GpuUtilisation(fake_cuda, pynvml=nvml, poll_s=0.005) as busy:
        time.sleep(0.1)
    assert nvml.calls == ["GPU-1234-abcd"]  # matched by UUID, not by index
    assert 40 < busy.mean_pct <= 80


@pytest.mark.parametrize(
    "device, nvml",
    [
        (torch.device("cpu"), FakeNvml([50])),  # nothing to sample on a CPU
        (torch.device("cuda", 0), FakeNvml([50], fail=True)),  # NVML fails mid-run: no figure, no crash
    ],
)
def test_no_figure_without_a_readable_gpu(fake_cuda, device, nvml):
    with GpuUtilisation(device, pynvml=nvml, poll_s=0.005) as busy:
        time.sleep(0.05)
    assert busy.mean_pct is None
