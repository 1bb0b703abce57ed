"""FLOPs of a step and the matmul peak: hand-countable layers, and the depthwise backward torch overcounts."""

from __future__ import annotations

import pytest
import torch

from bench.train.flops import matmul_peak, step_flops


@pytest.mark.parametrize("groups", [1, 4, 64])
def test_a_convolution_step_is_three_forwards(groups):
    """Forward, the input's gradient and the weight's gradient: each 2 x N x H x W x C_out x (C_in / groups) x 9."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 64, 16, 16, requires_grad=True)
    forward = 2 * 2 * 16 * 16 * 64 * (64 // groups) * 9
    assert step_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_a_frozen_input_needs_no_input_gradient():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 8, 8)  # the image: no gradient asked for
    assert step_flops(lambda: conv(x).sum().backward()) == 2 * (2 * 2 * 8 * 8 * 8 * 3 * 9)


def test_a_linear_layer_counts_its_products():
    layer = torch.nn.Linear(16, 4, bias=False)
    x = torch.randn(8, 16)
    assert step_flops(lambda: layer(x)) == 2 * 8 * 16 * 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_peak_is_a_rate(dtype):
    peak = matmul_peak(dtype, side=128, repeats=2)
    assert 1e6 < peak < 1e15
