"""How training and inference use the device: precision (autocast, GradScaler), memory format, data placement.

:func:`engine_for` decides once per run, from the device and the precision and memory format asked for, and
refuses what the device cannot run; the loop (:mod:`bench.train.loop`) only follows the settings, so the
precision rules are read in one place. Which of them a CPU trains a backbone fastest with is measured, not
ruled, by :mod:`bench.train.cpu_engine`; planning writes its choice into the spec, and this module follows it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import platform
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from bench.errors import ConfigError
from bench.precision import AmpDtype, MemoryFormat, Precision, autocast, engine_name

# A dataset moves to the GPU whole when its uint8 images take at most this share of the free memory:
# the rest is for the model, its activations and the optimiser.
DATA_ON_DEVICE_SHARE = 0.25


@dataclass(frozen=True)
class EngineConfig:
    """How training and inference use the device; :func:`engine_for` picks it per device and requested precision.

    All off is the CPU's standing setting (fp32 NCHW); a CPU with native bf16 may train in bf16 autocast and
    NHWC where that measured faster. Either way CPU results stay bit-for-bit reproducible for a given thread
    count. On CUDA, reduced precision and NHWC memory are what tensor cores need, and data already on the
    device (or in pinned memory, so copies overlap compute) keeps the GPU from waiting on the host.
    """

    amp: AmpDtype | None = None  # autocast dtype of forward passes; fp16 adds a GradScaler
    channels_last: bool = False  # model and batches in NHWC
    data_on_device: bool = False  # the uint8 splits live on the device: no per-step host copy at all
    pin_memory: bool = False  # host batches are pinned and copied asynchronously
    fused_optimizer: bool = False  # one fused Adam kernel; it also lets GradScaler skip its per-step sync
    compile: bool = False  # training's forward (and so backward) through torch.compile (TorchInductor)
    eval_batch_size: int = 512  # the first try; bench.train.loop.predict halves it on out-of-memory

    @property
    def name(self) -> str:
        """``bf16-nhwc``, ``fp32-nchw+fused``, ``bf16-nhwc+compile``: as the plan's engine column spells a CPU
        setting."""
        return engine_name(self.amp or "fp32", self.channels_last, self.fused_optimizer, self.compile)

    def to_dict(self) -> dict:
        """The settings as records store them; ``compile`` only when on, so a record made before it existed
        re-serialises byte for byte."""
        out = dataclasses.asdict(self)
        if not self.compile:
            del out["compile"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> EngineConfig:
        return cls(**data)


def engine_for(
    device: torch.device,
    data_bytes: int,
    probe: Callable[[torch.device], tuple[bool, int]] | None = None,
    precision: Precision = "auto",
    memory_format: MemoryFormat = "auto",
    fused: bool = False,
    compiled: bool = False,
) -> EngineConfig:
    """The engine settings for ``device``, a dataset of ``data_bytes`` (uint8 images, all splits), ``precision``
    and ``memory_format``.

    ``auto`` is bf16 autocast on CUDA (fp16 with a GradScaler where bf16 is missing) and fp32 on the CPU (a
    CPU's measured bf16 reaches here as ``bf16``: planning resolved it); ``fp32`` turns autocast off and leaves
    the rest of the GPU settings on, which change speed, not numbers. ``memory_format`` ``auto`` is NHWC on
    CUDA and NCHW on the CPU. ``fused`` asks a CPU for the fused AdamW kernel (CUDA always has it): it changes
    the numbers' rounding, so it is a run's own experiment (``RunSpec.fused_optimizer``); so does ``compiled``,
    training through ``torch.compile`` on either device (``RunSpec.compile``). A precision the device cannot run is
    refused (:func:`check_precision`).
    ``probe`` returns (bf16 supported, free device bytes); it is the only CUDA call, so tests can fake it.
    """
    if device.type != "cuda":
        amp = _amp(device, precision, bf16=precision == "bf16" and native_bf16(device))
        return EngineConfig(amp=amp, channels_last=memory_format == "nhwc", fused_optimizer=fused, compile=compiled)
    bf16, free_bytes = (probe or _cuda_probe)(device)
    on_device = data_bytes <= DATA_ON_DEVICE_SHARE * free_bytes
    return EngineConfig(
        amp=_amp(device, precision, bf16),
        channels_last=memory_format != "nchw",
        data_on_device=on_device,
        pin_memory=not on_device,
        fused_optimizer=True,
        compile=compiled,
        eval_batch_size=1024,
    )


def check_precision(device: torch.device, precision: Precision) -> None:
    """Refuse a precision ``device`` cannot run before a sweep starts, rather than as one failed record per run.

    It only reads device properties (:func:`native_bf16`), so a driver can check the GPUs its workers will use
    without allocating on them.
    """
    _amp(device, precision, bf16=precision == "bf16" and native_bf16(device))


def _amp(device: torch.device, precision: Precision, bf16: bool) -> AmpDtype | None:
    """The autocast dtype ``precision`` means on ``device`` (``bf16``: whether it has bf16); ConfigError if it can't."""
    if device.type != "cuda":
        if precision == "fp16":
            raise ConfigError(
                f"--precision fp16 needs a CUDA device, not {device}: fp16 autocast on the CPU is slow, "
                "use auto, fp32 or (with native bf16) bf16 there"
            )
        if precision == "bf16" and not bf16:
            raise ConfigError(
                f"--precision bf16: this CPU has no native bf16 (avx512_bf16, AMX or Arm BF16), so {device} would "
                "emulate it, slower than fp32: use auto or fp32"
            )
        return "bf16" if precision == "bf16" else None
    if precision == "bf16" and not bf16:
        raise ConfigError(f"--precision bf16: {device} has no native bf16 (before Ampere): use fp16 or fp32")
    if precision == "auto":
        return "bf16" if bf16 else "fp16"
    return None if precision == "fp32" else precision


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: compute capability 8 (Ampere) or later, or any ROCm GPU; on the
    CPU, bf16 dot-product instructions (:func:`cpu_native_bf16`).

    Older GPUs emulate bf16 slowly (``torch.cuda.is_bf16_supported()`` counts that as support): fp16 is the
    precision to pick there, and a bf16 request is refused. So is a CPU's, for the same reason (oneDNN's
    ``_is_mkldnn_bf16_supported`` says yes to any AVX-512 CPU, which converts in software).
    """
    if device.type != "cuda":
        return cpu_native_bf16()
    return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8


CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
"""CPU feature flags of bf16 arithmetic: x86 AVX512-BF16 and AMX (``/proc/cpuinfo`` flags), Arm's BF16 (its
``Features`` line). torch 2.14's ``get_cpu_capability()`` says only ``AVX512`` on an AVX512-BF16 CPU."""


def cpu_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions: a flag of :data:`CPU_BF16_FLAGS`, or Apple's ``FEAT_BF16``."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = re.findall(r"^(?:flags|Features)\s*:\s*(.*)$", fh.read(), re.MULTILINE)
        return bool(CPU_BF16_FLAGS & {f for line in flags for f in line.split()})
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True)
        except OSError:
            return False
        return out.stdout.strip() == "1"
    return False


def _cuda_probe(device: torch.device) -> tuple[bool, int]:
    return native_bf16(device), torch.cuda.mem_get_info(device)[0]


def training_net(model: torch.nn.Module, compiled: bool) -> torch.nn.Module:
    """What training steps call: ``model`` itself, or ``compiled``, ``torch.compile(model)`` (the same parameters;
    it compiles at its first step and again where a phase changes what trains)."""
    if not compiled:
        return model
    # Inductor's C++ toolchain warns "No CUDA runtime is found" where a CUDA build of torch runs on a CPU-only
    # machine (this project's install): nothing is wrong, and a user would read it as an error
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return torch.compile(model)


class Amp:
    """Autocast around the forward pass and loss, with a GradScaler for fp16; plain fp32 when ``dtype`` is None."""

    def __init__(self, dtype: AmpDtype | None, device: torch.device):
        self.dtype = dtype
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if dtype == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.dtype, self.device_type)

    def step(self, loss: torch.Tensor, opt: torch.optim.Optimizer, clip_norm: float | None = None) -> None:
        """Backward and optimiser step (gradients already zeroed); ``clip_norm`` caps the gradients' global L2
        norm first (unscaled, under fp16's GradScaler)."""
        if self.scaler is None:
            loss.backward()
            _clip(opt, clip_norm)
            opt.step()
            return
        self.scaler.scale(loss).backward()
        if clip_norm is not None:
            self.scaler.unscale_(opt)
            _clip(opt, clip_norm)
        self.scaler.step(opt)
        self.scaler.update()


def _clip(opt: torch.optim.Optimizer, clip_norm: float | None) -> None:
    if clip_norm is not None:
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, clip_norm)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch's CPU threads set to ``threads`` (None: left as is) for the block, then put back."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
