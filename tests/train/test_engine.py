"""The engine: the GPU settings each device gets (the CUDA probe faked), the precision asked for kept or
refused, autocast, and a run recording the engine it used."""

from __future__ import annotations

import re

import pytest
import torch

import bench.train.engine
from bench.errors import ConfigError
from bench.runs.record import load_records
from bench.runs.spec import RunSpec
from bench.train.engine import DATA_ON_DEVICE_SHARE, Amp, EngineConfig, check_precision, engine_for, native_bf16

CPU = torch.device("cpu")
GIB = 2**30


def _gpu(bf16: bool):
    """A faked CUDA probe: bf16 support as given, 80 GB free (so the data goes on the device)."""

    def probe(device):
        assert device.type == "cuda"
        return bf16, 80 * 2**30

    return probe


@pytest.mark.parametrize(
    "device, bf16, precision, amp",
    [
        ("cuda", True, "auto", "bf16"),
        ("cuda", False, "auto", "fp16"),  # pre-Ampere: fp16 with a GradScaler
        ("cuda", True, "fp32", None),  # autocast off, e.g. to reproduce a paper's fp32 numbers
        ("cuda:1", False, "fp32", None),
        ("cuda", True, "bf16", "bf16"),
        ("cuda", True, "fp16", "fp16"),  # asked for: kept although bf16 is there
        ("cuda", False, "fp16", "fp16"),
    ],
)
def test_cuda_engine_keeps_to_the_requested_precision(device, bf16, precision, amp):
    """Only autocast follows the request: NHWC, fused Adam and data placement change speed, not numbers."""
    engine = engine_for(torch.device(device), 2**20, _gpu(bf16), precision)
    assert engine == EngineConfig(amp, True, True, False, fused_optimizer=True, eval_batch_size=1024)


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_cpu_engine_is_fp32_for_auto_and_fp32(precision):
    """An unresolved ``auto`` is the CPU's standing fp32 NCHW: a measured bf16 reaches the engine as ``bf16``."""

    def probe(device):
        raise AssertionError("the CUDA probe ran for a CPU device")

    assert engine_for(CPU, 2**20, probe, precision) == EngineConfig()
    check_precision(CPU, precision)


@pytest.mark.parametrize(
    "precision, memory_format, expected",
    [
        ("bf16", "auto", EngineConfig("bf16")),
        ("bf16", "nhwc", EngineConfig("bf16", channels_last=True)),
        ("fp32", "nhwc", EngineConfig(channels_last=True)),
        ("auto", "nchw", EngineConfig()),
    ],
)
def test_a_cpu_with_native_bf16_runs_what_was_resolved(precision, memory_format, expected, monkeypatch):
    """bf16 autocast and channels-last on the CPU; the GPU settings (fused Adam, placement) stay off."""
    monkeypatch.setattr(bench.train.engine, "cpu_native_bf16", lambda: True)
    assert engine_for(CPU, 2**20, precision=precision, memory_format=memory_format) == expected
    check_precision(CPU, precision)


@pytest.mark.parametrize("memory_format, channels_last", [("auto", True), ("nhwc", True), ("nchw", False)])
def test_cuda_memory_format_is_nhwc_unless_asked(memory_format, channels_last):
    engine = engine_for(torch.device("cuda"), 2**20, _gpu(True), "auto", memory_format)
    assert engine.channels_last is channels_last and engine.amp == "bf16"


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("flags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n", True),  # AMD Zen 4, Intel Cooper Lake
        ("flags\t\t: fpu avx512f amx_bf16 amx_tile\n", True),  # Intel Sapphire Rapids
        ("Features\t: fp asimd bf16 i8mm\n", True),  # Arm (Graviton 3, Neoverse V1)
        ("flags\t\t: fpu sse avx2 avx512f avx512bw\n", False),  # AVX-512 without bf16: software conversion
        ("Features\t: fp asimd\n", False),
    ],
)
def test_cpu_native_bf16_reads_the_feature_flags(flags, expected, tmp_path, monkeypatch):
    import builtins

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\n{flags}")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: real_open(cpuinfo if f == "/proc/cpuinfo" else f, *a, **k))
    assert bench.train.engine.cpu_native_bf16() is expected


@pytest.mark.parametrize(
    "device, bf16, precision, message",
    [
        ("cpu", False, "bf16", "--precision bf16: this CPU has no native bf16 (avx512_bf16, AMX or Arm BF16)"),
        ("cpu", True, "fp16", "--precision fp16 needs a CUDA device, not cpu"),
        ("cuda:1", False, "bf16", "--precision bf16: cuda:1 has no native bf16 (before Ampere): use fp16 or fp32"),
    ],
)
def test_a_precision_the_device_cannot_run_is_refused(device, bf16, precision, message, monkeypatch):
    """In one line, by the engine (a run) and by the check a sweep makes before it starts."""
    monkeypatch.setattr(bench.train.engine, "native_bf16", lambda d: bf16)
    monkeypatch.setattr(bench.train.engine, "cpu_native_bf16", lambda: bf16)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}") as by_engine:
        engine_for(torch.device(device), 2**20, _gpu(bf16), precision)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}") as by_check:
        check_precision(torch.device(device), precision)
    assert "\n" not in str(by_engine.value) + str(by_check.value)


@pytest.mark.parametrize(
    "hip, capability, expected",
    [(None, (7, 0), False), (None, (7, 5), False), (None, (8, 0), True), (None, (9, 0), True), ("6.2", (9, 4), True)],
)
def test_native_bf16_is_ampere_or_later(hip, capability, expected, monkeypatch):
    """Volta and Turing emulate bf16 (slowly): that is no bf16 to pick or to accept a request for."""
    monkeypatch.setattr(torch.version, "hip", hip)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
    assert native_bf16(torch.device("cuda:0")) is expected


def _probe(bf16: bool, free_gib: float):
    def probe(device):
        assert device.type == "cuda"
        return bf16, int(free_gib * GIB)

    return probe


def _cuda(amp: str, on_device: bool) -> EngineConfig:
    """What a CUDA device gets: everything on, the data either on the device or pinned."""
    return EngineConfig(amp, True, on_device, not on_device, fused_optimizer=True, eval_batch_size=1024)


@pytest.mark.parametrize(
    "device, data_gib, probe, expected",
    [
        ("cpu", 0.1, None, EngineConfig()),
        (
            "cuda",
            0.1,
            _probe(True, 70),
            _cuda("bf16", on_device=True),
        ),
        (
            "cuda:1",
            30,
            _probe(True, 70),  # more than DATA_ON_DEVICE_SHARE of free memory: pinned host memory instead
            _cuda("bf16", on_device=False),
        ),
        (
            "cuda",
            0.1,
            _probe(False, 10),  # pre-Ampere: fp16 with a GradScaler
            _cuda("fp16", on_device=True),
        ),
    ],
)
def test_engine_for_device(device, data_gib, probe, expected):
    assert engine_for(torch.device(device), int(data_gib * GIB), probe=probe) == expected


def test_data_on_device_threshold_is_a_share_of_free_memory():
    free = 8 * GIB
    at = int(DATA_ON_DEVICE_SHARE * free)
    assert engine_for(torch.device("cuda"), at, _probe(True, 8)).data_on_device
    assert not engine_for(torch.device("cuda"), at + 1, _probe(True, 8)).data_on_device


def test_cpu_engine_never_touches_cuda():
    def probe(device):
        raise AssertionError("the CUDA probe ran for a CPU device")

    assert engine_for(CPU, 10**12, probe=probe) == EngineConfig()


@pytest.mark.parametrize("dtype, expected", [(None, torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_amp_autocasts_the_forward_pass(dtype, expected):
    amp = Amp(dtype, CPU)
    with amp.autocast():
        out = torch.nn.Linear(4, 2)(torch.randn(3, 4))
    assert out.dtype == expected
    assert (amp.scaler is not None) == (dtype == "fp16")


@pytest.fixture
def quick_latency(monkeypatch):
    """The runs below are about the engine; the latency stage only has to run, not to be precise."""
    import bench.runs.runner
    from bench.latency.timing import LatencyConfig

    quick = LatencyConfig(batch_sizes=(1,), warmup_iters=1, min_iters=2, max_iters=3, time_budget_s=0.2)
    monkeypatch.setattr(bench.runs.runner, "RUN_LATENCY", quick)


@pytest.mark.parametrize(
    "engine, expected",
    [
        (None, EngineConfig()),  # the CPU default: all off, so CPU results stay bit-identical
        *[
            (e, e)
            for e in (
                EngineConfig("bf16", channels_last=True, data_on_device=True, fused_optimizer=True, eval_batch_size=16),
                EngineConfig("fp16", channels_last=True, fused_optimizer=True),
            )
        ],
    ],
    ids=["cpu-default", "bf16-nhwc-on-device", "fp16-scaler"],
)
def test_a_run_records_the_engine_it_used(project, tmp_path, quick_latency, engine, expected):
    """Every setting the GPU path uses also runs on the CPU (autocast, NHWC, fused Adam, GradScaler)."""
    from bench.runs.runner import run

    spec = RunSpec(backbone="test_resnet", dataset="tiny", protocol="scratch", epochs=1)
    record = run(spec, tmp_path / "r", CPU, engine=engine)
    assert record.status == "ok", record.error
    assert load_records(tmp_path / "r")[0].engine == expected
