"""Which device a name means, and the device fingerprint with NVML faked."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from bench.environment.device import device_fingerprint, resolve_device
from bench.errors import ConfigError

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@NO_CUDA
def test_auto_is_the_cpu_without_cuda():
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize(
    "name, what, message",
    [
        pytest.param("cuda:1", "--device", r"--device 'cuda:1' requested but CUDA is not available", marks=NO_CUDA),
        pytest.param("cuda", "latency device", r"latency device 'cuda' requested", marks=NO_CUDA),
        ("gpu0", "--device", r"--device takes auto, cpu, cuda or cuda:N, got 'gpu0'"),
    ],
)
def test_a_device_that_cannot_be_had_is_a_config_error(name, what, message):
    with pytest.raises(ConfigError, match=message):
        resolve_device(name, what)


def test_cpu_fingerprint():
    fp = device_fingerprint(torch.device("cpu"))
    assert fp["device_kind"] == "cpu" and fp["cpu_model"]
    assert fp["torch_threads"] == torch.get_num_threads() and fp["torch_version"] == torch.__version__
    assert fp["logical_cores"] >= 1 and "gpu_name" not in fp
    json.dumps(fp)


def fake_pynvml(fail: frozenset[str] = frozenset()):
    """A pynvml module whose calls named in ``fail`` raise, as NVML does for unsupported queries."""
    values = {
        "nvmlInit": None,
        "nvmlShutdown": None,
        "nvmlDeviceGetHandleByUUID": "handle-by-uuid",
        "nvmlDeviceGetHandleByIndex": "handle-by-index",
        "nvmlDeviceGetName": b"NVIDIA H100 80GB HBM3",
        "nvmlSystemGetDriverVersion": "580.65.06",
        "nvmlDeviceGetClockInfo": 1980,
        "nvmlDeviceGetMaxClockInfo": 1980,
        "nvmlDeviceGetPowerManagementLimit": 700_000,
        "nvmlDeviceGetTemperature": 41,
    }
    module = types.SimpleNamespace(NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2, NVML_TEMPERATURE_GPU=0, calls=[])

    def make(name, value):
        def call(*args):
            module.calls.append((name, args))
            if name in fail:
                raise RuntimeError(f"NVMLError_NotSupported: {name}")
            return value

        return call

    for name, value in values.items():
        setattr(module, name, make(name, value))
    return module


def fake_device_properties(index):
    return types.SimpleNamespace(name="torch-name", major=9, minor=0, total_memory=80 * 2**30, uuid="abcd-1234")


# (case, NVML calls that fail, expected fields)
NVML_CASES = [
    (
        "all calls work",
        frozenset(),
        dict(
            gpu_name="NVIDIA H100 80GB HBM3",
            driver_version="580.65.06",
            sm_clock_mhz=1980,
            power_limit_w=700.0,
            temperature_c=41,
        ),
    ),
    (
        "temperature unsupported",
        frozenset({"nvmlDeviceGetTemperature"}),
        dict(temperature_c=None, sm_clock_mhz=1980),
    ),
    ("power query fails", frozenset({"nvmlDeviceGetPowerManagementLimit"}), dict(power_limit_w=None)),
    ("NVML cannot start", frozenset({"nvmlInit"}), dict(gpu_name="torch-name", nvml_error=...)),
]


@pytest.mark.parametrize("case, fail, expected", NVML_CASES, ids=[c[0] for c in NVML_CASES])
def test_cuda_fingerprint_with_fake_nvml(monkeypatch, case, fail, expected):
    nvml = fake_pynvml(fail)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties", fake_device_properties)
    fp = device_fingerprint(torch.device("cuda", 0))
    assert fp["device_kind"] == "cuda" and fp["gpu_index"] == 0 and fp["compute_capability"] == "9.0"
    assert fp["cuda_version"] == torch.version.cuda and "torch_threads" in fp
    for key, value in expected.items():
        assert (fp[key] is not None) if value is ... else fp[key] == value, key
    if "nvmlInit" not in fail:
        assert ("nvmlDeviceGetHandleByUUID", ("GPU-abcd-1234",)) in nvml.calls  # matched by UUID, not index
        assert nvml.calls[-1][0] == "nvmlShutdown"
    json.dumps(fp)


def test_cuda_fingerprint_without_pynvml_or_gpu(monkeypatch):
    def no_gpu(index):
        raise RuntimeError("Found no NVIDIA driver on your system")

    monkeypatch.setitem(sys.modules, "pynvml", None)  # the import fails
    monkeypatch.setattr(torch.cuda, "get_device_properties", no_gpu)
    fp = device_fingerprint(torch.device("cuda"))
    assert fp["nvml_error"].startswith("ModuleNotFoundError") and fp["gpu_name"] is None
    assert fp["compute_capability"] is None and fp["cuda_version"] == torch.version.cuda


def test_nvml_falls_back_to_index_when_uuid_unknown(monkeypatch):
    nvml = fake_pynvml(frozenset({"nvmlDeviceGetHandleByUUID"}))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties", fake_device_properties)
    fp = device_fingerprint(torch.device("cuda", 1))
    assert ("nvmlDeviceGetHandleByIndex", (1,)) in nvml.calls and fp["gpu_name"] == "NVIDIA H100 80GB HBM3"
