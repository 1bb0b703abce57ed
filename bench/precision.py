"""The numeric precisions the harness knows, in one place: what a run may ask for and what autocast runs.

A run asks for a :data:`Precision`; ``auto`` is resolved per device by :func:`bench.train.engine.engine_for`
(on a CPU, from a measurement made when the sweep is planned: :mod:`bench.train.cpu_engine`).
A latency setting measures one of the :data:`MEASURED_PRECISIONS`, never ``auto``, because a latency figure
must say which precision it is. Records, sweeps and reports name precisions without running anything, so
this module does not import torch at import time: reading a record or rendering a report stays torch-free.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

AmpDtype = Literal["bf16", "fp16"]  # the precisions that mean autocast
AMP_DTYPES: tuple[str, ...] = get_args(AmpDtype)

MEASURED_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")  # what one latency setting runs

MemoryFormat = Literal["auto", "nchw", "nhwc"]
"""How a run lays out its images and convolution weights: ``nhwc`` is torch's channels_last. ``auto`` is NHWC on
CUDA and, on a CPU, whichever :mod:`bench.train.cpu_engine` measured faster. It changes speed, not the numbers
(beyond the order of float sums), so unlike the precision it is no part of a run's identity."""
MEMORY_FORMATS: tuple[str, ...] = get_args(MemoryFormat)


def engine_name(precision: str, channels_last: bool, fused_optimizer: bool = False, compiled: bool = False) -> str:
    """How a training engine is spelt everywhere (``fp32-nchw``, ``bf16-nhwc``, ``bf16-nhwc+fused``,
    ``bf16-nhwc+compile``): a CPU setting measured or pinned, a planned run's engine column, what a record says it
    trained in."""
    extras = ("+fused" if fused_optimizer else "") + ("+compile" if compiled else "")
    return f"{precision}-{'nhwc' if channels_last else 'nchw'}{extras}"


def autocast_dtype(precision: AmpDtype) -> torch.dtype:
    """The torch dtype autocast computes in for ``precision`` (bf16 or fp16)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(precision: str | None, device_type: str) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` on ``device_type``; ``None`` or ``fp32`` is plain fp32 (no context at all)."""
    if precision is None or precision == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device_type, dtype=autocast_dtype(precision))
