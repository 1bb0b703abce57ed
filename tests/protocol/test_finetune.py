"""Which parameters train in which phase, for a spread of architectures."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from torch import nn

from bench.protocol.finetune import apply_phase, layer_groups, set_train_mode
from bench.protocol.spec import Phase

ARCHS = ["resnet18", "tf_efficientnet_lite0", "densenet121", "convnext_tiny", "vgg16"]


@pytest.fixture(scope="module", params=ARCHS)
def model(request) -> nn.Module:
    return timm.create_model(request.param, num_classes=3)


def _head_names(model: nn.Module) -> set[str]:
    head = {id(p) for p in model.get_classifier().parameters()}
    return {n for n, p in model.named_parameters() if id(p) in head}


def _trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_head_only_trains_exactly_the_classifier(model):
    apply_phase(model, Phase("head", epochs=1, lr=1e-3, trainable=0.0))
    assert _trainable(model) == _head_names(model)


def test_full_phase_trains_everything(model):
    apply_phase(model, Phase("full", epochs=1, lr=1e-3, trainable=1.0))
    assert _trainable(model) == {n for n, _ in model.named_parameters()}


@pytest.mark.parametrize("fraction", [0.3, 0.75])
def test_top_fraction_is_the_top_groups(model, fraction):
    groups = layer_groups(model)
    apply_phase(model, Phase("top", epochs=1, lr=1e-3, trainable=fraction))
    n_top = math.ceil(fraction * len(groups))
    expected = {n for g in groups[-n_top:] for n in g} | _head_names(model)
    assert _trainable(model) == expected
    bottom = {n for g in groups[: len(groups) - n_top] for n in g}
    assert not bottom & _trainable(model), "a lower group trains"


def test_freeze_bn_holds_statistics_and_affine(model):
    phase = Phase("top", epochs=1, lr=1e-3, trainable=1.0, freeze_bn=True)
    apply_phase(model, phase)
    set_train_mode(model, phase)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        assert not bn.training
        assert not any(p.requires_grad for p in bn.parameters())
    if bns:  # running stats must not move in a training forward pass
        before = bns[0].running_mean.clone()
        model(torch.randn(2, 3, 32, 32))
        assert torch.equal(before, bns[0].running_mean)


def test_frozen_bottom_batchnorm_is_in_eval_mode():
    model = timm.create_model("resnet18", num_classes=2)
    phase = Phase("top", epochs=1, lr=1e-3, trainable=0.3, freeze_bn=False)
    apply_phase(model, phase)
    set_train_mode(model, phase)
    assert not model.bn1.training  # stem: frozen
    assert model.layer4[1].bn2.training  # top group: trains with live statistics


def test_gradual_unfreezing_adds_one_group_from_the_top_per_epoch(model):
    groups = layer_groups(model)
    phase = Phase("gradual", epochs=3, lr=1e-3, trainable=1.0, unfreeze="gradual")
    for epoch in (1, 2, 3):
        apply_phase(model, phase, epoch)
        assert _trainable(model) == {n for g in groups[-epoch:] for n in g} | _head_names(model), epoch
    assert set(apply_phase(model, phase)) == {n for n, _ in model.named_parameters()}  # what the optimiser holds


def test_gradual_unfreezing_stops_at_the_phase_fraction():
    model = timm.create_model("resnet18", num_classes=2)
    groups = layer_groups(model)
    phase = Phase("gradual", epochs=9, lr=1e-3, trainable=0.3, unfreeze="gradual")
    n_top = math.ceil(0.3 * len(groups))
    apply_phase(model, phase, epoch=9)
    assert _trainable(model) == {n for g in groups[-n_top:] for n in g} | _head_names(model)
