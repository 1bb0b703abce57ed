"""One harness training step and the data pipeline alone, as pytest-benchmark tests so CI can gate on them
(tests/benchmarks/speed_gate.py). Skipped by default (``--benchmark-skip`` in addopts); run them with
``pytest tests/benchmarks --benchmark-only``.

Torch runs on one thread, for the reasons given in ``test_latency_bench.py``: a gate compares runs across
runners, and with several threads a busy neighbour swings the figures far more than a regression would.
The step is :func:`bench.train.loop.train_step` itself, so a slower conversion, augmentation or optimiser path
shows up here; ``bench profile`` says how it compares with the bare model step. It runs twice: in fp32 NCHW, the
CPU's standing engine, and in bf16 autocast and channels-last, what ``auto`` resolves ResNet-18 to on a CPU with
native bf16 (``bench profile --engines``), so a slower bf16 or NHWC path (a format conversion per step, autocast
falling back to fp32) fails the gate too. The second is skipped on a CPU without bf16.
"""

from __future__ import annotations

import pytest
import torch
from timm.data import resolve_data_config

from bench.environment.device import device_fingerprint
from bench.models.registry import create_backbone
from bench.protocol.finetune import apply_phase, set_train_mode
from bench.protocol.spec import get_protocol
from bench.train.engine import Amp, cpu_native_bf16
from bench.train.loop import train_step
from bench.train.optim import optimizer_for, scheduler_for
from bench.train.pipeline import BatchPipeline

BACKBONE, SIDE, BATCH = "resnet18", 28, 32
PROTOCOL = get_protocol("scratch")  # rotation, flips and zoom: the full augmentation path


@pytest.fixture
def uint8_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """A grayscale MedMNIST-sized batch, as the dataset layer holds it."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (BATCH, 1, SIDE, SIDE), generator=gen, dtype=torch.uint8)
    return images, torch.randint(0, 2, (BATCH,), generator=gen)


def _info(benchmark, what: str) -> None:
    benchmark.group = f"cpu-{torch.get_num_threads()}thread-train-{SIDE}px-batch{BATCH}"
    benchmark.extra_info.update(
        what=what,
        backbone=BACKBONE,
        resolution=SIDE,
        batch_size=BATCH,
        unit="seconds per batch",
        fingerprint=device_fingerprint(torch.device("cpu")),
    )


def _harness_step(uint8_batch, bf16: bool = False, channels_last: bool = False):
    """:func:`train_step` on ResNet-18 with the scratch protocol, in the engine setting given."""
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model, _ = create_backbone(BACKBONE, num_classes=2)
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    phase = PROTOCOL.phases[0]
    names = set(apply_phase(model, phase))
    set_train_mode(model, phase)
    opt = optimizer_for(PROTOCOL, [p for n, p in model.named_parameters() if n in names], phase.lr)
    sched = scheduler_for(opt, PROTOCOL, phase, steps_per_epoch=1000)
    cfg = resolve_data_config({}, model=model)
    pipeline = BatchPipeline(cfg["mean"], cfg["std"], cpu, channels_last)
    amp = Amp("bf16" if bf16 else None, cpu)
    gen = torch.Generator().manual_seed(0)
    images, labels = uint8_batch

    def step() -> torch.Tensor:
        return train_step(model, opt, sched, pipeline, images, labels, PROTOCOL.augment, gen, amp=amp)

    return step


def test_harness_train_step(benchmark, torch_threads, uint8_batch, reference):
    step = _harness_step(uint8_batch)
    _info(benchmark, "bench.train.loop.train_step: uint8 batch -> augmented float, forward, backward, Adam, scheduler")
    loss = benchmark.pedantic(step, setup=reference.setup, warmup_rounds=3, rounds=20, iterations=1)
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.skipif(not cpu_native_bf16(), reason="this CPU has no native bf16: auto never picks it here")
def test_harness_train_step_bf16_channels_last(benchmark, torch_threads, uint8_batch, reference):
    step = _harness_step(uint8_batch, bf16=True, channels_last=True)
    _info(benchmark, "train_step as auto resolves ResNet-18 on a CPU with bf16: bf16 autocast, channels-last")
    loss = benchmark.pedantic(step, setup=reference.setup, warmup_rounds=3, rounds=20, iterations=1)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.dtype == torch.float32


def test_data_pipeline(benchmark, torch_threads, uint8_batch, reference):
    pipeline = BatchPipeline((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    images, _ = uint8_batch

    def convert() -> torch.Tensor:
        return pipeline(images, PROTOCOL.augment, gen)

    _info(benchmark, "BatchPipeline: uint8 batch -> normalised, augmented float batch")
    x = benchmark.pedantic(convert, setup=reference.setup, warmup_rounds=5, rounds=3000, iterations=1)
    assert x.shape == (BATCH, 3, SIDE, SIDE) and x.dtype == torch.float32
