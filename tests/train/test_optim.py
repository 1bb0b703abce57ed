"""A phase's parameter groups: which parameters train, at which learning rate, under layer decay; its schedule
with warm-up."""

from __future__ import annotations

import math

import pytest
import timm
import torch

from bench.models.registry import list_backbones
from bench.protocol.finetune import apply_phase, layer_groups
from bench.protocol.spec import Phase, Protocol
from bench.train.optim import optimizer_for, param_groups, scheduler_for, top_lr

LR = 1e-3


def _protocol(phase: Phase) -> Protocol:
    return Protocol(name="p", pretrained=False, optimizer="adamw", weight_decay=1e-4, phases=(phase,))


def _lr_by_name(model: torch.nn.Module, phase: Phase) -> dict[str, float]:
    apply_phase(model, phase)
    opt = optimizer_for(_protocol(phase), param_groups(model, _protocol(phase), phase), phase.lr)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}


def test_without_layer_decay_every_trained_parameter_has_the_phase_lr():
    model = timm.create_model("resnet18", num_classes=2)
    lrs = _lr_by_name(model, Phase("top", epochs=1, lr=LR, trainable=0.3))
    assert set(lrs.values()) == {LR}
    assert set(lrs) == {n for n, p in model.named_parameters() if p.requires_grad}


def test_layer_decay_gives_each_group_below_the_top_a_lower_lr():
    """resnet18's 9 body groups: the head trains at lr, group k from the top at lr * 0.5**k (timm's rule)."""
    model = timm.create_model("resnet18", num_classes=2)
    lrs = _lr_by_name(model, Phase("full", epochs=1, lr=LR, trainable=1.0, layer_decay=0.5))
    groups = layer_groups(model)
    assert lrs["fc.weight"] == pytest.approx(LR)
    for k, group in enumerate(reversed(groups), start=1):
        assert [lrs[n] for n in group] == pytest.approx([LR * 0.5**k] * len(group)), k
    assert set(lrs) == {n for n, _ in model.named_parameters()}


def test_layer_decay_leaves_frozen_parameters_out_and_keeps_weight_decay():
    model = timm.create_model("resnet18", num_classes=2)
    phase = Phase("top", epochs=1, lr=LR, trainable=0.3, freeze_bn=True, layer_decay=0.75)
    lrs = _lr_by_name(model, phase)
    assert set(lrs) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert "conv1.weight" not in lrs and not any(".bn" in n for n in lrs)
    groups = param_groups(model, _protocol(phase), phase)
    assert {g["weight_decay"] for g in groups} == {1e-4}  # biases too: layer decay changes lrs only


@pytest.mark.parametrize("entry", list_backbones(), ids=lambda e: e.name)
def test_layer_decay_works_for_every_registered_backbone(entry):
    model = timm.create_model(entry.arch, num_classes=2)
    lrs = _lr_by_name(model, Phase("full", epochs=1, lr=LR, trainable=1.0, layer_decay=0.8))
    head = {n for n, p in model.named_parameters() if any(p is q for q in model.get_classifier().parameters())}
    assert [lrs[n] for n in head] == pytest.approx([LR] * len(head))
    assert min(lrs.values()) < LR * 0.8 ** (len(layer_groups(model)) - 2)  # the decay reaches the bottom


def test_an_epoch_logs_the_top_lr():
    model = timm.create_model("resnet18", num_classes=2)
    phase = Phase("full", epochs=1, lr=LR, trainable=1.0, layer_decay=0.5)
    apply_phase(model, phase)
    opt = optimizer_for(_protocol(phase), param_groups(model, _protocol(phase), phase), phase.lr)
    assert top_lr(opt) == pytest.approx(LR) and opt.param_groups[0]["lr"] < LR


def _lrs(protocol: Protocol, steps_per_epoch: int) -> list[float]:
    """The lr of every step of the protocol's one phase, as the scheduler sets it before each step."""
    phase = protocol.phases[0]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=phase.lr)
    sched = scheduler_for(opt, protocol, phase, steps_per_epoch)
    lrs = []
    for _ in range(phase.epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_warmup_ramps_up_over_its_epochs_then_the_cosine_runs_over_the_rest():
    phase = Phase("full", epochs=3, lr=1.0, trainable=1.0)
    lrs = _lrs(Protocol(name="p", pretrained=False, phases=(phase,), warmup_epochs=1), steps_per_epoch=4)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    after = [0.5 * (1 + math.cos(math.pi * t / 8)) for t in range(8)]
    assert lrs[4:] == pytest.approx(after)


def test_warmup_before_a_step_schedule_counts_its_milestones_from_the_end_of_warmup():
    phase = Phase("full", epochs=3, lr=1.0, trainable=1.0)
    protocol = Protocol(name="p", pretrained=False, phases=(phase,), warmup_epochs=1, schedule="step", milestones=(1,))
    assert _lrs(protocol, steps_per_epoch=2) == pytest.approx([0.5, 1.0, 1.0, 1.0, 0.1, 0.1])


def test_without_warmup_the_schedule_is_the_torch_one_every_record_ran():
    phase = Phase("full", epochs=2, lr=1.0, trainable=1.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert isinstance(scheduler_for(opt, _protocol(phase), phase, 3), torch.optim.lr_scheduler.CosineAnnealingLR)
