"""Training engine: it learns, it is deterministic, it selects on validation, it fails loudly."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re

import pytest
import timm
import torch

import bench.train.loop
from bench.data.dataset import Split
from bench.errors import ConfigError
from bench.protocol.spec import PRESETS, Augment, Phase, Protocol
from bench.train.loop import (
    BatchPipeline,
    DivergedError,
    EngineConfig,
    EpochLog,
    _augment,
    check_precision,
    class_weights,
    engine_for,
    fit,
    native_bf16,
    predict,
)

CPU = torch.device("cpu")
CLASSES = ("dark", "bright")


def _split(n: int, seed: int, channels: int = 1) -> Split:
    """A learnable task: bright images are class 1, dark ones class 0, with noise."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=gen)
    base = torch.where(labels.view(-1, 1, 1, 1) == 1, 170.0, 80.0)
    images = (base + 40 * torch.randn(n, channels, 16, 16, generator=gen)).clamp(0, 255).to(torch.uint8)
    return Split(images=images, labels=labels, ids=[f"{seed}/{i}" for i in range(n)])


PIPE = BatchPipeline((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), CPU)
QUICK = Protocol(
    name="quick", pretrained=False, batch_size=32, phases=(Phase("full", epochs=3, lr=3e-3, trainable=1.0),)
)


def _fit(protocol=QUICK, seed=0, arch="test_resnet"):
    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=2)
    result = fit(model, protocol, _split(256, 1), _split(128, 2), CLASSES, PIPE, seed=seed)
    return model, result


def test_it_learns_a_learnable_task():
    model, result = _fit()
    probs = predict(model, _split(128, 3), PIPE)
    accuracy = (probs.argmax(1) == _split(128, 3).labels.numpy()).mean()
    assert accuracy > 0.9, result.history
    assert len(result.history) == 3 and result.best_epoch in (1, 2, 3)


def test_same_seed_same_history():
    """CPU runs are bit-for-bit repeatable (timings aside)."""
    _, a = _fit(seed=5)
    _, b = _fit(seed=5)
    assert _history(a) == _history(b)


def test_epochs_log_training_throughput():
    _, result = _fit()
    for h in result.history:
        assert 0 < h.train_seconds < h.seconds
        assert h.images_per_s == pytest.approx(256 / h.train_seconds)
        assert h.gpu_util_pct is None  # a CPU run has nothing to sample


def test_model_ends_with_the_best_validation_weights():
    model, result = _fit()
    best = min(result.history, key=lambda h: h.val_loss)
    assert result.best_epoch == best.epoch and result.best_score == best.val_loss
    # Re-evaluating the returned model reproduces the best epoch's validation loss.
    logits = torch.from_numpy(predict(model, _split(128, 2), PIPE)).double()
    nll = torch.nn.functional.cross_entropy(logits, _split(128, 2).labels)
    assert nll.item() == pytest.approx(best.val_loss, rel=1e-6)


def test_early_stopping_cuts_a_phase():
    protocol = dataclasses.replace(
        QUICK, early_stopping_patience=1, phases=(Phase("full", epochs=30, lr=3e-2, trainable=1.0),)
    )
    _, result = _fit(protocol)
    assert result.stopped_early == ["full"] and len(result.history) < 30


def test_staged_phases_run_in_order():
    protocol = dataclasses.replace(PRESETS["staged"], pretrained=False, batch_size=64).with_epochs((1, 1, 1))
    _, result = _fit(protocol)
    assert [h.phase for h in result.history] == ["head", "top", "full"]


def test_nan_loss_raises_diverged():
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = timm.create_model("test_resnet", num_classes=2)

        def forward(self, x):
            return self.inner(x) * float("nan")

    model = timm.create_model("test_resnet", num_classes=2)
    model.forward = Broken().forward
    with pytest.raises(DivergedError, match="loss became nan in phase 'full', epoch 1"):
        fit(model, QUICK, _split(64, 1), _split(32, 2), CLASSES, PIPE, seed=0)


def test_fit_has_no_way_to_receive_test_data():
    """Model selection can only ever see train and validation."""
    assert [p for p in inspect.signature(fit).parameters if "test" in p] == []


def test_grayscale_feeds_rgb_models():
    x = PIPE(_split(4, 0, channels=1).images)
    assert x.shape[1] == 3 and torch.equal(x[:, 0], x[:, 2])


def test_normalisation():
    x = PIPE(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    assert torch.allclose(x, torch.ones_like(x))


@pytest.mark.parametrize(
    "aug",
    [
        Augment(hflip=True),
        Augment(rotation=30),
        Augment(zoom=0.2),
        Augment(rotation=10, hflip=True, vflip=True, zoom=0.1),
    ],
)
def test_augment_keeps_shape_and_changes_pixels(aug):
    x = torch.randn(8, 3, 16, 16)
    y = _augment(x, aug, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(x, y)


def test_hflip_only_mirrors_exactly_or_not_at_all():
    x = torch.randn(16, 3, 8, 8)
    y = _augment(x, Augment(hflip=True), torch.Generator().manual_seed(1))
    for a, b in zip(x, y, strict=True):
        assert torch.allclose(b, a, atol=1e-5) or torch.allclose(b, a.flip(-1), atol=1e-5)


@pytest.mark.parametrize(
    "labels, k, expected",
    [([0, 0, 0, 1], 2, [4 / 6, 2.0]), ([0, 1, 2, 2], 3, [4 / 3, 4 / 3, 2 / 3]), ([0, 0], 2, [0.5, 0.0])],
)
def test_class_weights(labels, k, expected):
    assert class_weights(torch.tensor(labels), k).tolist() == pytest.approx(expected)


class _Crash(Exception):
    pass


class MemoryCheckpoint:
    """Keeps the last saved state; optionally 'crashes' right after the n-th save."""

    def __init__(self, crash_after: int | None = None):
        self.saved, self.saves, self.crash_after = None, 0, crash_after

    def load(self):
        return self.saved

    def save(self, payload):
        import copy

        self.saved = copy.deepcopy(payload)
        self.saves += 1
        if self.saves == self.crash_after:
            raise _Crash


def _history(result) -> str:
    """History without timings, as JSON so that NaN compares equal to NaN."""
    timeless = [{k: v for k, v in dataclasses.asdict(h).items() if k not in EpochLog.TIMINGS} for h in result.history]
    return json.dumps(timeless)


@pytest.mark.parametrize("crash_after", [1, 2, 4])  # mid-phase, at a phase boundary, in the last phase
def test_resume_after_a_crash_equals_an_uninterrupted_run(crash_after):
    protocol = dataclasses.replace(PRESETS["staged"], pretrained=False, batch_size=64).with_epochs((2, 1, 2))
    train, val = _split(192, 1), _split(64, 2)

    def fresh():
        torch.manual_seed(0)
        return timm.create_model("test_resnet", num_classes=2)

    reference = fit(fresh(), protocol, train, val, CLASSES, PIPE, seed=0)
    ckpt = MemoryCheckpoint(crash_after=crash_after)
    with pytest.raises(_Crash):
        fit(fresh(), protocol, train, val, CLASSES, PIPE, seed=0, checkpoint=ckpt)
    ckpt.crash_after = None
    torch.manual_seed(123)  # the resumed process starts with other global RNG state: the checkpoint restores it
    model = fresh()
    resumed = fit(model, protocol, train, val, CLASSES, PIPE, seed=0, checkpoint=ckpt)
    assert _history(resumed) == _history(reference)
    assert resumed.best_epoch == reference.best_epoch
    assert ckpt.saves == 5  # one save per epoch overall, none repeated


def test_checkpoint_from_another_config_is_refused(tmp_path):
    from bench.errors import ResultsError
    from bench.train.checkpoint import RunCheckpoint

    RunCheckpoint(tmp_path / "r.ckpt", key="a" * 64).save({"x": torch.zeros(1)})
    with pytest.raises(ResultsError, match=r"r.ckpt: checkpoint is from a different config \(key aaaaaaaaaaaa"):
        RunCheckpoint(tmp_path / "r.ckpt", key="b" * 64).load()
    (tmp_path / "bad.ckpt").write_bytes(b"garbage")
    with pytest.raises(ResultsError, match="bad.ckpt: unreadable checkpoint"):
        RunCheckpoint(tmp_path / "bad.ckpt", key="a" * 64).load()


# ------------------------------------------------------------------------------------------ requested precision


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
    def probe(device):
        raise AssertionError("the CUDA probe ran for a CPU device")

    assert engine_for(CPU, 2**20, probe, precision) == EngineConfig()
    check_precision(CPU, precision)


@pytest.mark.parametrize(
    "device, bf16, precision, message",
    [
        ("cpu", None, "bf16", "--precision bf16 needs a CUDA device, not cpu"),
        ("cpu", None, "fp16", "--precision fp16 needs a CUDA device, not cpu"),
        ("cuda:1", False, "bf16", "--precision bf16: cuda:1 has no native bf16 (before Ampere): use fp16 or fp32"),
    ],
)
def test_a_precision_the_device_cannot_run_is_refused(device, bf16, precision, message, monkeypatch):
    """In one line, by the engine (a run) and by the check a sweep makes before it starts."""
    monkeypatch.setattr(bench.train.loop, "native_bf16", lambda d: bf16)
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
