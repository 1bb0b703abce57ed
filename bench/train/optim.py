"""A phase's optimiser and learning-rate schedule, and the parameter groups they work on.

With ``layer_decay`` below 1 a phase trains at discriminative learning rates: the head at the phase's lr and
each layer group below it at ``layer_decay`` times the lr of the group above, by timm's
``param_groups_layer_decay`` over the model's own ``group_matcher`` (the same groups
:func:`bench.protocol.finetune.layer_groups` freezes by). Only what the phase trains is in a group; the
protocol's weight decay applies to every trained parameter either way, so ``layer_decay`` changes the
learning rates and nothing else.
"""

from __future__ import annotations

import math

import torch
from timm.optim import param_groups_layer_decay
from torch import nn

from bench.protocol.spec import Phase, Protocol


def param_groups(model: nn.Module, protocol: Protocol, phase: Phase) -> list[nn.Parameter] | list[dict]:
    """The parameters that train now (``requires_grad``), as one group or as timm's layer-decayed groups.

    Call after :func:`bench.protocol.finetune.apply_phase`. Each decayed group carries its own ``lr``
    (``phase.lr`` times timm's ``lr_scale``), which the torch schedulers then scale like any group's.
    """
    if phase.layer_decay == 1.0:
        return [p for p in model.parameters() if p.requires_grad]
    groups = param_groups_layer_decay(
        model, weight_decay=protocol.weight_decay, weight_decay_exclude_1d=False, layer_decay=phase.layer_decay
    )
    return [{"params": g["params"], "weight_decay": g["weight_decay"], "lr": phase.lr * g["lr_scale"]} for g in groups]


def optimizer_for(
    protocol: Protocol, params: list[nn.Parameter] | list[dict], lr: float, fused: bool = False
) -> torch.optim.Optimizer:
    """The protocol's optimiser over ``params`` (a phase's trainable parameters, or :func:`param_groups`) at ``lr``.

    A group's own ``lr`` (layer decay) overrides ``lr``."""
    cls = torch.optim.AdamW if protocol.optimizer == "adamw" else torch.optim.Adam
    # fused=None keeps torch's default (for-loop on the CPU), which CPU results were recorded with
    return cls(params, lr=lr, weight_decay=protocol.weight_decay, fused=fused or None)


def scheduler_for(opt: torch.optim.Optimizer, protocol: Protocol, phase: Phase, steps_per_epoch: int):
    """The protocol's learning-rate schedule over one phase, stepped once per optimisation step.

    With ``warmup_epochs``, the phase's first ``warmup_epochs`` epochs (at most all of it) ramp every group's lr
    linearly up to its own, step by step, and the schedule runs over the steps after them
    (:func:`warmed_factor`). Without, the torch schedulers below, which every record before warm-up existed ran.
    """
    if protocol.warmup_epochs:
        total = phase.epochs * steps_per_epoch
        warm = min(protocol.warmup_epochs, phase.epochs) * steps_per_epoch
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmed_factor(protocol, step, warm, total, steps_per_epoch)
        )
    if protocol.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, phase.epochs * steps_per_epoch))
    if protocol.schedule == "step":
        milestones = [m * steps_per_epoch for m in protocol.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=protocol.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def warmed_factor(protocol: Protocol, step: int, warm: int, total: int, steps_per_epoch: int) -> float:
    """The lr multiplier at ``step`` of a phase of ``total`` steps whose first ``warm`` warm up: ``(step + 1) / warm``
    during warm-up, then the protocol's schedule counted from the end of warm-up (cosine to 0 over the rest, x
    ``gamma`` at each milestone epoch, or constant)."""
    if step < warm:
        return (step + 1) / warm
    after = step - warm
    if protocol.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(after, total - warm) / max(1, total - warm)))
    if protocol.schedule == "step":
        return protocol.gamma ** sum(after >= m * steps_per_epoch for m in protocol.milestones)
    return 1.0


def top_lr(opt: torch.optim.Optimizer) -> float:
    """The highest learning rate of ``opt``'s groups now: the head's, what an epoch's log reports."""
    return max(group["lr"] for group in opt.param_groups)
