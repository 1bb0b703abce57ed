"""Batch-1 CPU latency of two small backbones, as pytest-benchmark tests so CI can gate on regressions
(tests/benchmarks/speed_gate.py). Skipped by default (``--benchmark-skip`` in addopts); run them with
``pytest tests/benchmarks --benchmark-only``.

pytest-benchmark times the forward pass itself (its own clock and statistics). Torch runs on one thread:
a gate compares runs across runners with different core counts, and with several threads a busy
neighbour makes OpenMP's spin-waiting threads swing batch-1 latency by 10x. The harness's device
fingerprint goes into ``extra_info`` so that a saved run says what machine produced it.
"""

from __future__ import annotations

import pytest
import torch

from bench.environment.device import device_fingerprint
from bench.models.registry import create_backbone

# (backbone, input side): small enough for a 2-core CI runner, large enough to be compute-bound
CASES = [("resnet18", 64), ("efficientnet_b0", 64)]


@pytest.mark.parametrize("name, side", CASES, ids=[c[0] for c in CASES])
def test_cpu_batch1_latency(benchmark, torch_threads, reference, name, side):
    model, _ = create_backbone(name, num_classes=1000)
    model.eval()
    inputs = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))

    def forward():
        with torch.inference_mode():
            return model(inputs)

    benchmark.group = f"cpu-{torch_threads}thread-batch1-{side}px"
    benchmark.extra_info.update(
        backbone=name,
        resolution=side,
        batch_size=1,
        unit="seconds per batch of 1",
        fingerprint=device_fingerprint(torch.device("cpu")),
    )
    output = benchmark.pedantic(forward, setup=reference.setup, warmup_rounds=5, rounds=100, iterations=1)
    assert output.shape == (1, 1000)
