"""Which parameters train in a phase: layer freezing by timm's layer groups, and BatchNorm held still.

"Unfreeze the top 30%" means the same thing for every architecture without per-architecture code, because
the layer groups come from each model's own ``group_matcher``.
"""

from __future__ import annotations

import math

from timm.models import group_parameters
from torch import nn

from bench.protocol.spec import Phase


def layer_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names of the model's body, grouped bottom to top by timm's ``group_matcher``.

    The classifier (``get_classifier()``) is left out: it always trains.
    """
    head = {id(p) for p in model.get_classifier().parameters()}
    names = {id(p): n for n, p in model.named_parameters()}
    head_names = {names[i] for i in head}
    groups = group_parameters(model, model.group_matcher(coarse=False))
    body = [[n for n in names_ if n not in head_names] for _, names_ in sorted(groups.items())]
    return [g for g in body if g]


def apply_phase(model: nn.Module, phase: Phase, epoch: int | None = None) -> list[str]:
    """Set ``requires_grad`` for ``phase``; returns the names of the parameters that train.

    The top ``ceil(trainable * n)`` body groups and the head train. Under ``unfreeze = "gradual"``, epoch
    ``epoch`` (from 1) of the phase trains only the top ``epoch`` of those groups; ``epoch=None`` gives the
    whole phase's set, which its optimiser is built over (parameters without a gradient are skipped by the
    optimiser, so a group not yet unfrozen neither moves nor decays). With ``freeze_bn``, BatchNorm affine
    parameters stay fixed too (their running statistics are held by :func:`set_train_mode`).
    """
    groups = layer_groups(model)
    n_top = math.ceil(phase.trainable * len(groups))
    if phase.unfreeze == "gradual" and epoch is not None:
        n_top = min(n_top, epoch)
    trainable = {n for g in groups[len(groups) - n_top :] for n in g}
    trainable |= {n for n, p in model.named_parameters() if _is_head(model, p)}
    bn_params = {f"{m_name}.{p_name}" for m_name, m in _batchnorms(model) for p_name, _ in m.named_parameters()}
    if phase.freeze_bn:
        trainable -= bn_params
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
    return sorted(trainable)


def set_train_mode(model: nn.Module, phase: Phase) -> None:
    """``model.train()``, except BatchNorm layers that must keep their statistics (frozen or ``freeze_bn``)."""
    model.train()
    for _, module in _batchnorms(model):
        frozen = not any(p.requires_grad for p in module.parameters())
        if phase.freeze_bn or frozen:
            module.eval()


def _is_head(model: nn.Module, param: nn.Parameter) -> bool:
    return any(param is p for p in model.get_classifier().parameters())


def _batchnorms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
