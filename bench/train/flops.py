"""How much arithmetic a training step does, and how much the machine can do: FLOPs counted, peak measured.

A step's time says which engine setting is fastest; its FLOP/s over what the CPU can do says how much is
left on the table. :func:`step_flops` counts one step with torch's own counter (``FlopCounterMode``: the
convolutions and matrix products as dispatched, forward and backward, whatever the dtype);
:func:`matmul_peak` times a large matrix product in one dtype on the current threads, the best a backbone's
step could hope for (no vendor figure fits a shared VM's slice of a CPU, and bf16 and fp32 peaks differ by the
instructions the CPU has).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from bench.timers.backends import select_backend

PEAK_SIDE = 2048
"""Side of the square matrices of the peak: 17 GFLOP a product, large enough for oneDNN's best kernel and for
the time to dwarf the call, small enough for a fraction of a second on one core."""
CUDA_PEAK_SIDE = 8192
"""A GPU's side: 1.1 TFLOP a product, about 1.4 ms on an H100 in bf16 (some 800 TFLOP/s), where 2048 would time
the launch."""
CPU = torch.device("cpu")


def step_flops(step: Callable[[], object]) -> int:
    """Floating-point operations of one call of ``step`` (multiply and add counted as two), by torch's counter.

    It counts what dispatches through convolutions and matrix products, the bulk of a training step; the
    elementwise work (normalisation, activations, the optimiser) is left out, so achieved FLOP/s is a floor.
    A convolution's backward is counted by :func:`conv_backward_flops`, not torch's formula.
    """
    mapping = {torch.ops.aten.convolution_backward: conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        step()
    return int(counter.get_total_flops())


def conv_backward_flops(
    grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, _output_padding, _groups,
    output_mask, out_shape=None, **kwargs,
) -> int:  # fmt: skip
    """A convolution's backward: the forward's FLOPs once for the input's gradient and once for the weight's.

    Each gradient is a convolution with exactly the forward's multiply-adds. torch 2.14's own formula forgets the
    groups in the weight's gradient and counts a depthwise convolution's backward as a dense one: 65x too many
    for a 64-channel 3x3 depthwise layer, which put EfficientNet-B0's step at 86% of the fp32 peak.
    """
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def matmul_peak(dtype: torch.dtype, device: torch.device = CPU, side: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of the fastest of ``repeats`` products of two ``side`` x ``side`` matrices of ``dtype`` (after one
    untimed product), on the current torch threads or on the GPU ``device``: the peak as a backbone's step could
    reach it. A GPU's product is timed by CUDA events (:mod:`bench.timers.backends`) and is :data:`CUDA_PEAK_SIDE`
    a side by default, where the time dwarfs a kernel launch."""
    side = side or (CUDA_PEAK_SIDE if device.type == "cuda" else PEAK_SIDE)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(side, side, generator=gen).to(device, dtype)
    b = torch.randn(side, side, generator=gen).to(device, dtype)
    clock = select_backend(device)
    clock.time_ms(lambda: torch.mm(a, b))
    best_ms = min(clock.time_ms(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * side**3 / (best_ms / 1000)
