"""The shared transfer-learning protocol: a typed config read from ``protocols/<name>.toml`` or any TOML file.

One protocol is a list of phases. Each phase says how much of the network trains (a fraction of timm's
layer groups, counted from the top; 0 means the classifier head alone; :mod:`bench.protocol.finetune`), for
how many epochs, at which learning rate, and whether BatchNorm stays frozen; optionally with the learning rate
decayed layer by layer below the top (``layer_decay``) and the layer groups unfrozen one per epoch
(``unfreeze = "gradual"``). The protocol also says how batches are drawn (``sampler``), the dropout before the
classifier (``drop_rate``), where a comparison needs one its own train/val/test split (``split``), the guards
against a training loss that explodes (``grad_clip_norm``, ``warmup_epochs``), and what to tune per backbone
before training (``[search]``: :mod:`bench.protocol.search`). ``select_on`` names the
validation metric that picks the kept epoch and drives early stopping. Every
field added after record schema 2 defaults to the behaviour before it (:mod:`bench.runs.spec`). The presets are
data, like the
backbone and dataset registries: adding one is adding a file ``protocols/<name>.toml``, whose ``name``
equals the file name. A file holds :class:`Protocol`'s fields, phases as ``[[phases]]`` tables and the
augmentation as an ``[augment]`` table; ``early_stopping_patience = false`` turns early stopping off (TOML
has no null).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.config import FieldError, check_identifier, from_mapping, load_toml, split_fractions
from bench.errors import ConfigError
from bench.evaluation.metrics import SELECTABLE_METRICS
from bench.paths import registry_files
from bench.protocol.search import Search


@dataclass(frozen=True)
class Phase:
    """One stage of training."""

    name: str
    epochs: int
    lr: float
    trainable: float  # fraction of layer groups trained, from the top; 0.0 = head only, 1.0 = all
    freeze_bn: bool = False  # keep BatchNorm statistics and affine terms fixed while fine-tuning
    # Each layer group below the top trains at this times the lr of the one above (timm's
    # param_groups_layer_decay: discriminative learning rates); 1.0 = one lr for the whole phase.
    layer_decay: float = 1.0
    # "gradual": epoch k of the phase trains the top k of its layer groups (and the head), one more per epoch.
    unfreeze: Literal["all", "gradual"] = "all"

    def __post_init__(self) -> None:
        if not 0.0 <= self.trainable <= 1.0:
            raise ConfigError(f"phase {self.name!r}: trainable must be in [0, 1], got {self.trainable}")
        if self.epochs < 0 or self.lr <= 0:
            raise ConfigError(f"phase {self.name!r}: needs epochs >= 0 and lr > 0")
        if not 0.0 < self.layer_decay <= 1.0:
            raise FieldError("layer_decay", f"is {self.layer_decay}; it must be in (0, 1] (1 = no decay)")


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
    # Epochs without a better validation select_on before a phase stops; the phases' epochs are then a maximum.
    early_stopping_patience: int | None = 5
    # What picks the kept epoch and drives early stopping: validation loss (lower is better) or a metric of
    # bench.evaluation.metrics.SELECTABLE_METRICS (higher is better).
    select_on: str = "loss"
    class_weighted_loss: bool = False
    augment: Augment = field(default_factory=Augment)
    # "balanced": each epoch draws as many images as the train split holds, with replacement, every class
    # equally likely (under the run seed); "shuffle": every image once, in a random order.
    sampler: Literal["shuffle", "balanced"] = "shuffle"
    drop_rate: float = 0.0  # dropout before the classifier (timm create_model's drop_rate)
    # "dataset": the dataset entry's split; "70/20/10": train/val/test percentages, stratified over all the
    # labelled images (a published split is pooled first), grouped when the data has groups (HAM10000's lesions).
    split: str = "dataset"
    # Gradients rescaled to at most this global L2 norm before each step (torch's clip_grad_norm_); None: never.
    grad_clip_norm: float | None = None
    # Each phase's learning rate ramps up linearly over its first warmup_epochs epochs, then follows the schedule.
    warmup_epochs: int = 0
    # Tune these settings per backbone x dataset on validation before training (bench.protocol.search).
    search: Search | None = None

    def __post_init__(self) -> None:
        if not self.phases or sum(phase.epochs for phase in self.phases) < 1:
            raise FieldError("phases", "train for 0 epochs in all: give at least one phase epochs >= 1")
        if not 0.0 <= self.drop_rate < 1.0:
            raise FieldError("drop_rate", f"is {self.drop_rate}; a dropout rate must be in [0, 1)")
        if self.split != "dataset":
            split_fractions(self.split)
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise FieldError("grad_clip_norm", f"is {self.grad_clip_norm}; a gradient norm limit must be > 0")
        if self.warmup_epochs < 0:
            raise FieldError("warmup_epochs", f"is {self.warmup_epochs}; it must be >= 0 (0: no warm-up)")
        if self.select_on != "loss" and self.select_on not in SELECTABLE_METRICS:
            raise FieldError("select_on", f"is '{self.select_on}'; choose loss, {', '.join(SELECTABLE_METRICS)}")

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

    def tuned(self, params: dict[str, float | int]) -> Protocol:
        """A copy with a search trial's (or the chosen) values in place (:mod:`bench.protocol.search`).

        ``lr`` is the first phase's learning rate, and every later phase keeps its ratio to it: a staged protocol's
        head-then-body schedule keeps its shape while its scale is searched.
        """
        changes: dict = {k: v for k, v in params.items() if k != "lr"}
        if "lr" in params:
            scale = params["lr"] / self.phases[0].lr
            changes["phases"] = tuple(dataclasses.replace(p, lr=p.lr * scale) for p in self.phases)
        if "warmup_epochs" in changes:
            changes["warmup_epochs"] = int(changes["warmup_epochs"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def list_protocols() -> list[str]:
    """The preset names: the files in ``protocols/`` (shipped and ``BENCH_HOME``'s), sorted."""
    return list(registry_files("protocols"))


def _is_preset(name_or_path: str) -> bool:
    return Path(name_or_path).name == name_or_path and name_or_path in registry_files("protocols")


def protocol_name(name_or_path: str) -> str:
    """What a run is recorded under: a preset's name, or a protocol file's stem (``my/fine.toml``: ``fine``).

    The name becomes part of a record's file name, so a path given on the command line never does.
    """
    if _is_preset(name_or_path):
        return name_or_path
    path = Path(name_or_path)
    if path.suffix == ".toml":
        return check_identifier(path.stem, "protocol file name", str(path))
    presets = ", ".join(list_protocols()) or "none in protocols/"
    raise ConfigError(f"unknown protocol {name_or_path!r}; presets: {presets} (or a path to a .toml file)")


def get_protocol(name_or_path: str) -> Protocol:
    """A preset by name (``protocols/<name>.toml``), or a protocol TOML file given by its path."""
    protocol_name(name_or_path)  # an unknown name, or a file stem that is not a name, fails here
    if _is_preset(name_or_path):
        preset = registry_files("protocols")[name_or_path]
        protocol = read_protocol(preset)
        if protocol.name != preset.stem:
            problem = f"is '{protocol.name}' but must equal the file name '{preset.stem}'"
            raise ConfigError(f"{preset}: field 'name' {problem}")
        return protocol
    return read_protocol(Path(name_or_path))


def read_protocol(path: Path) -> Protocol:
    """Read and validate one protocol TOML; every mistake is a ConfigError naming the file and field."""
    data = load_toml(path)
    if data.get("early_stopping_patience") is False:
        data["early_stopping_patience"] = None
    return from_mapping(Protocol, data, str(path))
