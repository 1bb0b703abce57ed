"""The shared transfer-learning protocol: typed config, presets, and layer freezing.

One protocol is a list of phases. Each phase says how much of the network trains (a fraction of
timm's layer groups, counted from the top; 0 means the classifier head alone), for how many epochs,
at which learning rate, and whether BatchNorm stays frozen. The layer groups come from each model's
own ``group_matcher``, so "unfreeze the top 30%" means the same thing for every architecture without
per-architecture code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from timm.models import group_parameters
from torch import nn

from bench.config import check_identifier, from_mapping, load_toml
from bench.errors import ConfigError


@dataclass(frozen=True)
class Phase:
    """One stage of training."""

    name: str
    epochs: int
    lr: float
    trainable: float  # fraction of layer groups trained, from the top; 0.0 = head only, 1.0 = all
    freeze_bn: bool = False  # keep BatchNorm statistics and affine terms fixed while fine-tuning

    def __post_init__(self) -> None:
        if not 0.0 <= self.trainable <= 1.0:
            raise ConfigError(f"phase {self.name!r}: trainable must be in [0, 1], got {self.trainable}")
        if self.epochs < 0 or self.lr <= 0:
            raise ConfigError(f"phase {self.name!r}: needs epochs >= 0 and lr > 0")


@dataclass(frozen=True)
class Augment:
    """Batched tensor augmentation; all off means none (the MedMNIST v2 setting)."""

    rotation: float = 0.0  # max degrees either way
    hflip: bool = False
    vflip: bool = False
    zoom: float = 0.0  # max relative zoom in or out, e.g. 0.1 = [0.9, 1.1]

    @property
    def enabled(self) -> bool:
        return bool(self.rotation or self.hflip or self.vflip or self.zoom)


@dataclass(frozen=True)
class Protocol:
    """Everything about how a backbone is trained, shared by every backbone of a comparison."""

    name: str
    pretrained: bool
    phases: tuple[Phase, ...]
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    batch_size: int = 128
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    milestones: tuple[int, ...] = ()  # epochs (within a phase) where a step schedule multiplies lr by gamma
    gamma: float = 0.1
    early_stopping_patience: int | None = 5  # epochs without a better val loss before a phase stops
    select_on: Literal["loss", "auc", "accuracy", "balanced_accuracy", "macro_f1"] = "loss"
    class_weighted_loss: bool = False
    augment: Augment = field(default_factory=Augment)

    def with_epochs(self, epochs: int | tuple[int, ...] | None) -> Protocol:
        """A copy with every phase's epochs replaced (one number for all phases, or one per phase)."""
        if epochs is None:
            return self
        per_phase = (epochs,) * len(self.phases) if isinstance(epochs, int) else tuple(epochs)
        if len(per_phase) != len(self.phases):
            raise ConfigError(
                f"protocol {self.name!r} has {len(self.phases)} phases, got {len(per_phase)} epoch counts"
            )
        phases = tuple(dataclasses.replace(p, epochs=e) for p, e in zip(self.phases, per_phase, strict=True))
        return dataclasses.replace(self, phases=phases)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_FLIP_ROT_ZOOM = Augment(rotation=15.0, hflip=True, vflip=True, zoom=0.1)

PRESETS: dict[str, Protocol] = {
    "scratch": Protocol(
        name="scratch",
        pretrained=False,
        phases=(Phase("full", epochs=20, lr=1e-3, trainable=1.0),),
        augment=_FLIP_ROT_ZOOM,
    ),
    "linear": Protocol(
        name="linear",
        pretrained=True,
        phases=(Phase("head", epochs=20, lr=1e-3, trainable=0.0),),
        augment=_FLIP_ROT_ZOOM,
    ),
    # S0: head only, then the top 30% of layer groups with BatchNorm frozen, then everything at a low lr.
    "staged": Protocol(
        name="staged",
        pretrained=True,
        optimizer="adamw",
        weight_decay=1e-4,
        phases=(
            Phase("head", epochs=5, lr=1e-3, trainable=0.0),
            Phase("top", epochs=5, lr=1e-4, trainable=0.3, freeze_bn=True),
            Phase("full", epochs=5, lr=1e-5, trainable=1.0, freeze_bn=True),
        ),
        augment=_FLIP_ROT_ZOOM,
    ),
    # S1: the longer variant, three quarters of the network unfrozen in the middle phase.
    "staged-s1": Protocol(
        name="staged-s1",
        pretrained=True,
        optimizer="adamw",
        weight_decay=1e-4,
        phases=(
            Phase("head", epochs=5, lr=1e-3, trainable=0.0),
            Phase("top", epochs=25, lr=1e-4, trainable=0.75, freeze_bn=True),
            Phase("full", epochs=5, lr=1e-5, trainable=1.0, freeze_bn=True),
        ),
        augment=_FLIP_ROT_ZOOM,
    ),
    # MedMNIST v2 (Yang et al. 2023): 100 epochs, Adam 1e-3 decayed x0.1 at 50 and 75, batch 128,
    # no augmentation, model chosen on validation AUC; no early stopping.
    "medmnist-v2": Protocol(
        name="medmnist-v2",
        pretrained=False,
        phases=(Phase("full", epochs=100, lr=1e-3, trainable=1.0),),
        schedule="step",
        milestones=(50, 75),
        early_stopping_patience=None,
        select_on="auc",
    ),
}


def protocol_name(name_or_path: str) -> str:
    """What a run is recorded under: a preset's name, or a protocol file's stem (``my/fine.toml``: ``fine``).

    The name becomes part of a record's file name, so a path given on the command line never does.
    """
    if name_or_path in PRESETS:
        return name_or_path
    path = Path(name_or_path)
    if path.suffix == ".toml":
        return check_identifier(path.stem, "protocol file name", str(path))
    raise ConfigError(f"unknown protocol {name_or_path!r}; presets: {', '.join(PRESETS)} (or a path to a .toml file)")


def get_protocol(name_or_path: str) -> Protocol:
    """A preset by name, or a protocol TOML file (same fields as :class:`Protocol`)."""
    name = protocol_name(name_or_path)  # an unknown name or a file stem that is not a name fails here
    if name_or_path in PRESETS:
        return PRESETS[name]
    return from_mapping(Protocol, load_toml(Path(name_or_path)), name_or_path)


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


def apply_phase(model: nn.Module, phase: Phase) -> list[str]:
    """Set ``requires_grad`` for ``phase``; returns the names of the parameters that train.

    The top ``ceil(trainable * n)`` body groups and the head train. With ``freeze_bn``, BatchNorm
    affine parameters stay fixed too (their running statistics are held by :func:`set_train_mode`).
    """
    groups = layer_groups(model)
    n_top = math.ceil(phase.trainable * len(groups))
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
