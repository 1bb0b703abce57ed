"""Which device a ``--device`` value means, and the facts about it that a measured number depends on.

Every command that takes a device resolves it here (``auto`` is CUDA when present), so ``bench run``,
``bench latency`` and ``bench profile`` agree on what a name means and how a missing GPU is reported. The
fingerprint goes into every run and latency record: without the GPU's clocks and driver, or the CPU model
and threads, a speed figure cannot be compared with anything.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Callable
from typing import Any

import torch

from bench.config import check_device_name
from bench.environment import allocator
from bench.errors import ConfigError


def resolve_device(name: str, what: str = "--device") -> torch.device:
    """``auto`` is CUDA when present, else the CPU; a device this machine does not have is a ConfigError.

    ``what`` names the setting in the message (``--device``, ``latency device``).
    """
    check_device_name(name, what)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{what} {name!r} requested but CUDA is not available on this machine")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{what} {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def device_fingerprint(device: torch.device) -> dict[str, Any]:
    """What a latency figure depends on besides the model: host, software and, on CUDA, the GPU's state.

    Every probe is guarded: a missing NVML or an unreadable file leaves a ``None``, never a failed run.
    The host part is recorded for CUDA too, because batch-1 GPU latency is bound by kernel launches.
    """
    fingerprint = _host_fingerprint()
    fingerprint["device_kind"] = device.type
    if device.type == "cuda":
        fingerprint |= _cuda_fingerprint(device)
    return fingerprint


def _guard(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # a probe that fails only leaves its field empty
        return None


def _host_fingerprint() -> dict[str, Any]:
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(affinity(0)) if affinity else None,
        "torch_threads": torch.get_num_threads(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "parallel_backend": _parallel_backend(),
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": _guard(lambda: os.getloadavg()[0]),
        "allocator": allocator.state(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            match = re.search(r"^model name\s*:\s*(.+)$", fh.read(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _parallel_backend() -> str | None:
    match = re.search(r"ATen parallel backend: (.+)", _guard(torch.__config__.parallel_info) or "")
    return match.group(1).strip() if match else None


def _cuda_fingerprint(device: torch.device) -> dict[str, Any]:
    index = device.index if device.index is not None else _guard(torch.cuda.current_device)
    props = _guard(torch.cuda.get_device_properties, index)
    fingerprint = {
        "gpu_index": index,
        "gpu_name": getattr(props, "name", None),
        "compute_capability": f"{props.major}.{props.minor}" if props is not None else None,
        "gpu_total_memory_bytes": getattr(props, "total_memory", None),
        "cuda_version": torch.version.cuda,
        "cudnn_version": _guard(torch.backends.cudnn.version),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    nvml = _nvml_fingerprint(index, getattr(props, "uuid", None))
    fingerprint["gpu_name"] = nvml.pop("gpu_name", None) or fingerprint["gpu_name"]
    return fingerprint | nvml


def _nvml_fingerprint(index: int | None, torch_uuid: object) -> dict[str, Any]:
    """Driver and the GPU's state at the start: clocks, power limit, temperature (NVML, each call guarded)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as err:  # no NVML library or driver: say so in the record
        return {"nvml_error": f"{type(err).__name__}: {err}"}
    try:
        handle = nvml_handle(pynvml, index, torch_uuid)
        clock = pynvml.nvmlDeviceGetClockInfo
        max_clock = pynvml.nvmlDeviceGetMaxClockInfo
        power_mw = _guard(pynvml.nvmlDeviceGetPowerManagementLimit, handle)
        return {
            "gpu_name": _text(_guard(pynvml.nvmlDeviceGetName, handle)),
            "driver_version": _text(_guard(pynvml.nvmlSystemGetDriverVersion)),
            "sm_clock_mhz": _guard(clock, handle, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": _guard(clock, handle, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": _guard(max_clock, handle, pynvml.NVML_CLOCK_SM),
            "max_mem_clock_mhz": _guard(max_clock, handle, pynvml.NVML_CLOCK_MEM),
            "power_limit_w": power_mw / 1000 if power_mw is not None else None,
            "temperature_c": _guard(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU),
        }
    finally:
        _guard(pynvml.nvmlShutdown)


def nvml_handle(pynvml: Any, index: int | None, torch_uuid: object) -> Any:
    """NVML's handle for torch's device, matched by UUID: NVML ignores ``CUDA_VISIBLE_DEVICES`` and may
    order GPUs differently from CUDA, so index ``i`` in torch is not always index ``i`` in NVML."""
    if torch_uuid is not None:
        text = str(torch_uuid)
        handle = _guard(pynvml.nvmlDeviceGetHandleByUUID, text if text[:4] in ("GPU-", "MIG-") else f"GPU-{text}")
        if handle is not None:
            return handle
    return _guard(pynvml.nvmlDeviceGetHandleByIndex, index)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value
