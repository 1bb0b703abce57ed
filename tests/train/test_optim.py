"""A phase's parameter groups: which parameters train, at which learning rate, under layer decay."""

from __future__ import annotations

import pytest
import timm
import torch

from bench.models.registry import list_backbones
from bench.protocol.finetune import apply_phase, layer_groups
from bench.protocol.spec import Phase, Protocol
from bench.train.optim import optimizer_for, param_groups, top_lr

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
