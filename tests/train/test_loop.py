"""The training loop: it learns, it is deterministic, it selects (and stops) on validation's select_on, it resumes
exactly, it fails loudly or stops cleanly on a non-finite loss, it names a loss that explodes, it clips gradients;
predict backs off on out-of-memory."""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
import timm
import torch

from bench.data.loading import Split
from bench.protocol.spec import Phase, Protocol, get_protocol
from bench.train.history import EpochLog
from bench.train.loop import DivergedError, class_weights, fit, predict, train_step
from bench.train.pipeline import BatchPipeline

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
    protocol = dataclasses.replace(get_protocol("staged"), pretrained=False, batch_size=64).with_epochs((1, 1, 1))
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
    protocol = dataclasses.replace(get_protocol("staged"), pretrained=False, batch_size=64).with_epochs((2, 1, 2))
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
    from bench.runs.checkpoint import RunCheckpoint

    RunCheckpoint(tmp_path / "r.ckpt", key="a" * 64).save({"x": torch.zeros(1)})
    with pytest.raises(ResultsError, match=r"r.ckpt: checkpoint is from a different config \(key aaaaaaaaaaaa"):
        RunCheckpoint(tmp_path / "r.ckpt", key="b" * 64).load()
    (tmp_path / "bad.ckpt").write_bytes(b"garbage")
    with pytest.raises(ResultsError, match="bad.ckpt: unreadable checkpoint"):
        RunCheckpoint(tmp_path / "bad.ckpt", key="a" * 64).load()


class OomAbove(torch.nn.Module):
    """A model that runs out of memory on batches larger than ``limit``."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.seen = limit, []
        self.inner = timm.create_model("test_resnet", num_classes=2)

    def forward(self, x):
        self.seen.append(len(x))
        if len(x) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (faked)")
        return self.inner(x)


def test_predict_halves_the_batch_on_out_of_memory():
    gen = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8, generator=gen), torch.zeros(40), [""] * 40)
    pipe = BatchPipeline((0.5,) * 3, (0.5,) * 3, CPU)
    torch.manual_seed(0)
    model = OomAbove(limit=8)
    probs = predict(model, split, pipe, batch_size=32)
    assert probs.shape == (40, 2) and model.seen[:3] == [32, 16, 8] and max(model.seen[3:]) == 8
    np.testing.assert_allclose(probs, predict(model.inner, split, pipe, batch_size=8), rtol=1e-6)


def test_gradual_unfreezing_moves_one_more_group_each_epoch():
    """After 2 epochs of a gradual phase the top 2 groups and the head moved; every group below is untouched."""
    from bench.protocol.finetune import layer_groups

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    phase = Phase("gradual", epochs=2, lr=3e-3, trainable=1.0, unfreeze="gradual")
    protocol = dataclasses.replace(QUICK, phases=(phase,), early_stopping_patience=None)
    fit(model, protocol, _split(64, 1), _split(32, 2), CLASSES, PIPE, seed=0)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    groups = layer_groups(model)
    assert len(groups) > 2
    assert {n for g in groups[-2:] for n in g} | {"fc.weight", "fc.bias"} <= moved
    assert not {n for g in groups[:-2] for n in g} & moved


def test_a_balanced_sampler_trains_deterministically_and_differently():
    balanced = dataclasses.replace(QUICK, sampler="balanced")
    (_, a), (_, b) = _fit(balanced), _fit(balanced)
    (_, shuffled) = _fit()
    assert [h.train_loss for h in a.history] == [h.train_loss for h in b.history]
    assert [h.train_loss for h in a.history] != [h.train_loss for h in shuffled.history]


def _nan_after(model: torch.nn.Module, training_steps: int) -> torch.nn.Module:
    """``model`` whose training forward passes give NaN after the first ``training_steps``."""
    forward, seen = model.forward, {"steps": 0}

    def broken(x):
        out = forward(x)
        if model.training:
            seen["steps"] += 1
            if seen["steps"] > training_steps:
                return out * float("nan")
        return out

    model.forward = broken
    return model


def test_a_nan_loss_after_a_validated_epoch_stops_training_and_keeps_the_best_epoch():
    torch.manual_seed(0)
    model = _nan_after(timm.create_model("test_resnet", num_classes=2), training_steps=2)  # 64 images: 2 a epoch
    protocol = dataclasses.replace(
        QUICK, phases=(Phase("full", epochs=3, lr=3e-3, trainable=1.0), Phase("more", epochs=2, lr=1e-3, trainable=1.0))
    )
    result = fit(model, protocol, _split(64, 1), _split(32, 2), CLASSES, PIPE, seed=0)
    assert result.stopped == "loss became nan in phase 'full', epoch 2: training stopped, epoch 1 kept"
    assert [h.epoch for h in result.history] == [1] and result.best_epoch == 1  # no later phase ran
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the kept epoch's weights, not the NaN ones


def test_a_loss_that_explodes_is_named_and_training_goes_on():
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=2)
    forward = model.forward
    model.forward = lambda x: forward(x) * 100.0  # confident and often wrong: a loss far above ln 2
    result = fit(model, QUICK, _split(64, 1), _split(32, 2), CLASSES, PIPE, seed=0)
    assert result.loss_alarm.startswith("training loss exploded: ") and "in epoch 1" in result.loss_alarm
    assert len(result.history) == 3 and result.stopped is None


def test_selection_and_early_stopping_follow_select_on():
    """On validation balanced accuracy: the kept epoch is its best, and the phase stops at the first epoch (with
    patience 1) that does not beat the phase's best, whatever the loss did."""
    protocol = dataclasses.replace(
        QUICK,
        select_on="balanced_accuracy",
        early_stopping_patience=1,
        phases=(Phase("full", epochs=30, lr=3e-2, trainable=1.0),),
    )
    _, result = _fit(protocol)
    scores = [h.val.score("balanced_accuracy") for h in result.history]
    assert result.stopped_early == ["full"] and len(scores) < 30
    assert result.best_score == max(scores) and scores[result.best_epoch - 1] == max(scores)
    assert scores[-1] <= max(scores[:-1])  # the last epoch did not improve: that stopped the phase
    assert all(scores[i] > max(scores[:i]) for i in range(1, len(scores) - 1))  # every earlier one did


def test_gradients_are_clipped_to_the_protocols_norm():
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    split = _split(32, 1)

    def norm(clip: float | None) -> float:
        train_step(model, opt, sched, PIPE, split.images, split.labels, None, None, clip_norm=clip)
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()

    assert norm(None) > 1e-3 and norm(1e-3) == pytest.approx(1e-3, rel=1e-3)
