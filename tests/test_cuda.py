"""The CUDA paths on a real GPU: skipped on machines without one (the rest of the suite fakes CUDA).

Run them wherever a GPU is at hand (`pytest tests/test_cuda.py`): they check what fakes cannot, that
autocast, channels_last, on-device data, CUDA-event timing and NVML sampling work together for real.
"""

from __future__ import annotations

import pytest
import timm
import torch

from bench.latency.measure import measure_latency
from bench.latency.timing import LatencyConfig
from bench.runs.runner import run
from bench.runs.spec import RunSpec
from bench.train.engine import engine_for, native_bf16
from bench.train.engine_speed import EngineSpeedConfig, engine_speeds
from bench.train.pipeline import BatchPipeline
from bench.train.utilisation import GpuUtilisation

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def test_engine_on_a_real_gpu():
    engine = engine_for(CUDA, data_bytes=1 << 20)
    assert engine.amp == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert engine.channels_last and engine.data_on_device and engine.fused_optimizer


def test_a_run_trains_and_records_on_the_gpu(project, tmp_path):
    spec = RunSpec(backbone="test_resnet", dataset="tiny", protocol="scratch", seed=0, epochs=2)
    record = run(spec, tmp_path / "results", CUDA)
    assert record.status == "ok", record.error
    assert record.engine.amp in ("bf16", "fp16") and record.engine.data_on_device
    assert record.environment.device["device_kind"] == "cuda"
    assert all(h.images_per_s > 0 for h in record.history)
    assert record.latency[0].fingerprint["gpu_name"]  # NVML or torch named the GPU
    assert 0.0 <= record.score("accuracy") <= 1.0


@pytest.mark.parametrize("precision, channels_last", [("fp32", False), ("fp16", True), ("bf16", True)])
def test_latency_with_cuda_events(precision, channels_last):
    model = timm.create_model("resnet18", num_classes=10).eval()
    config = LatencyConfig(
        batch_sizes=(1, 8), precisions=(precision,), channels_last=channels_last, time_budget_s=1.0, device="cuda"
    )
    results = measure_latency(model, (3, 64, 64), config, backbone="resnet18")
    assert [r.batch_size for r in results] == [1, 8]
    for r in results:
        assert r.device_kind == "cuda" and r.skipped is None
        assert 0 < r.ms_per_batch_p50 <= r.ms_per_batch_p99
        assert r.ms_per_image_p50 == pytest.approx(r.ms_per_batch_p50 / r.batch_size)
        assert r.peak_memory_bytes and r.peak_memory_bytes > 0
    assert next(model.parameters()).device.type == "cpu"  # handed back where it came from


def test_nvml_sees_the_gpu_busy():
    x = torch.randn(4096, 4096, device=CUDA)
    with GpuUtilisation(CUDA, poll_s=0.02) as busy:
        for _ in range(200):
            x = (x @ x).tanh()
        torch.cuda.synchronize()
    assert busy.mean_pct is not None and busy.mean_pct > 10


def test_pipeline_makes_channels_last_batches_on_the_gpu():
    pipe = BatchPipeline((0.5,) * 3, (0.5,) * 3, CUDA, channels_last=True)
    batch = pipe(torch.randint(0, 255, (4, 1, 28, 28), dtype=torch.uint8))
    assert batch.device.type == "cuda" and batch.shape == (4, 3, 28, 28)
    assert batch.is_contiguous(memory_format=torch.channels_last)


def test_engine_settings_are_timed_on_the_gpu_compiled_too():
    """`bench profile --engines --settings bf16-nhwc,bf16-nhwc+compile --device cuda`: the steps on the GPU, the
    compiled one's first call timed apart, the auto row what `bench run --device cuda` trains in, real peaks."""
    if not native_bf16(CUDA):
        pytest.skip("a GPU run trains in fp16 before Ampere, which no engine row times")
    names = ("bf16-nhwc", "bf16-nhwc+compile")
    config = EngineSpeedConfig(("test_resnet",), (32,), batch_size=8, rounds=2, device="cuda", settings=names)
    rows = engine_speeds(config)
    assert [r.setting for r in rows] == ["fp32-nchw", *names]
    assert [r.setting for r in rows if r.auto] == ["bf16-nhwc"]
    assert all(r.step_ms > 0 and r.flops == rows[0].flops > 0 and r.share_of_peak > 0 for r in rows)
    assert rows[-1].compile_s > 0 and rows[0].compile_s is None
    assert rows[0].fingerprint["device_kind"] == "cuda" and rows[1].peak_flops > 1e12  # any GPU beats a TFLOP/s
