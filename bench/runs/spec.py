"""What to run: the :class:`RunSpec`, and the names a run is shown and filed under.

A spec names a backbone, a dataset and a protocol with one seed, plus what the user asked of the engine and the
data. What the names resolve to, and so which experiment the run is, is :mod:`bench.runs.identity`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.config import FieldError, ResolutionPolicy, check_identifier, check_seeds, check_train_fractions
from bench.data.eval_sets import EvalSetSpec
from bench.errors import ConfigError
from bench.precision import MEMORY_FORMATS, PRECISIONS, AmpDtype, MemoryFormat, Precision

FractionBudget = Literal["epochs", "steps"]
FRACTION_BUDGETS: tuple[FractionBudget, ...] = ("epochs", "steps")
"""What a share of the training split below 1 keeps (:meth:`bench.runs.sweep.Group.epochs_at`)."""


@dataclass(frozen=True)
class RunSpec:
    """What to run: a backbone on a dataset under a protocol, with one seed.

    ``precision`` is what the user asked of the engine (:func:`bench.train.engine.engine_for`): ``auto`` picks by
    device, the others are kept to or refused. On a CPU, planning measures which precision and ``memory_format``
    train this backbone fastest (:mod:`bench.runs.engines`) and writes what differs from the CPU's standing
    fp32 NCHW into the spec: ``auto_precision = "bf16"`` (it changes the numbers, so it enters the identity in
    place of ``auto``: :func:`identity_precision`) and ``memory_format = "nhwc"`` (speed only: not in the
    identity), so every worker runs what the driver planned and keyed. ``data_root`` says where the data is, not
    what it is: the data enters the identity by its fingerprint and pixels. ``keep_weights`` says whether the
    selected model is kept beside the record; like ``data_root`` it changes no number, so it is in neither the
    identity nor the key. A ``weights_file`` of the form ``run:<dataset>/<backbone>/<protocol>[/s<seed>]`` names
    another run as the source of the initial weights; planning resolves it (:func:`bench.runs.source.resolve_sources`)
    and sets ``source_experiment`` and ``source_key``, so identity and key follow from the spec alone, on any worker.
    ``allow_overlap`` lets such a run train although the leakage check (:mod:`bench.data.leakage`) found images
    of its val/test split in the source's training split; the overlap count is recorded either way. ``eval_sets``
    are what the trained model is also scored on (:mod:`bench.data.eval_sets`, the dataset entry's joining them
    when it runs): they change nothing trained, so they are in neither the identity nor the key. Nor is
    ``search_storage``, the database of a protocol's search study (default: an SQLite file in the results folder):
    where the search is kept, not what it tries. ``train_fraction`` trains on that stratified, nested share of the
    training split (:mod:`bench.data.fractions`; validation and test are whole): it changes what is learnt, so it
    enters the identity and the key, but only when not 1.0, so every run made before it existed keeps its key.
    ``fraction_budget = "steps"`` says a sweep scaled ``epochs`` by ``1 / train_fraction`` (a share below 1 of a
    group with ``fraction_budget = "steps"``: :meth:`bench.runs.sweep.Group.epochs_at`), so a data-efficiency row
    (:func:`bench.reports.data_efficiency.without_fraction`) joins it to the whole split's run; the epochs it
    trains are in the identity, so it is in neither the identity nor the key. ``fused_optimizer`` asks a CPU for
    torch's fused AdamW kernel instead of its per-tensor loop (a GPU always fuses): faster where the optimiser step
    is a large share of a small model's step, and deterministic, but not bit-equal to the loop, so it enters the
    identity and key when on (and only then: every earlier run keeps its key), as a precision does. ``compile``
    trains through ``torch.compile`` (:func:`bench.train.loop.fit`): TorchInductor fuses the forward and backward
    passes into kernels of its own, which round otherwise than eager PyTorch, so it too is keyed when on. The
    test split and the eval sets are scored by the eager model (the kept weights, as a user reloads them).
    """

    backbone: str
    dataset: str
    protocol: str
    seed: int = 0
    resolution: int = 28
    epochs: int | tuple[int, ...] | None = None  # overrides the protocol's per-phase epochs
    resolution_policy: ResolutionPolicy = "upsize"
    data_root: str | None = None
    weights_file: str | None = None
    precision: Precision = "auto"
    keep_weights: bool = True
    source_experiment: str | None = None  # the experiment id a ``weights = "run:..."`` source resolved to
    source_key: str | None = None  # and the run key (bench.runs.source.resolve_sources)
    allow_overlap: bool = False  # train even where the leakage check finds target images in the source's training
    memory_format: MemoryFormat = "auto"  # nchw or nhwc (channels_last); not in the identity or key
    auto_precision: AmpDtype | None = None  # what planning measured ``auto`` fastest as on a CPU, when not fp32
    eval_sets: tuple[EvalSetSpec, ...] = ()  # scored after training (bench.data.eval_sets); not in the identity or key
    search_storage: str | None = None  # where a protocol's search keeps its study (bench.runs.search); not in the key
    train_fraction: float = 1.0  # the share of the training split trained on (bench.data.fractions); keyed when < 1
    fraction_budget: FractionBudget = "epochs"  # "steps": epochs scaled by 1/train_fraction; not keyed
    fused_optimizer: bool = False  # one fused AdamW kernel on the CPU too (CUDA always fuses); keyed when on
    compile: bool = False  # train through torch.compile (TorchInductor); keyed when on

    def __post_init__(self) -> None:
        # Names become folders and file names under the results folder: never a path that leaves it.
        check_identifier(self.backbone, "backbone name")
        check_identifier(self.dataset, "dataset name")
        check_identifier(Path(self.protocol).stem, "protocol name", self.protocol)
        check_seeds([self.seed], "seed")
        try:
            check_train_fractions([self.train_fraction], "train_fraction")
        except FieldError as err:
            raise ConfigError(f"train_fraction {err.problem.removeprefix('holds ')}") from None
        object.__setattr__(self, "train_fraction", float(self.train_fraction))  # 1 from a file is 1.0: one key
        if self.fraction_budget not in FRACTION_BUDGETS:
            raise ConfigError(f"fraction_budget {self.fraction_budget!r} is not one of {', '.join(FRACTION_BUDGETS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"memory format {self.memory_format!r} is not one of {', '.join(MEMORY_FORMATS)}")
        if self.auto_precision is not None and (self.precision != "auto" or self.auto_precision != "bf16"):
            raise ConfigError(
                f"auto_precision {self.auto_precision!r} with precision {self.precision!r}: only an auto precision "
                "is resolved, and only to bf16 (fp32 is what auto always meant on a CPU)"
            )

    def to_dict(self) -> dict:
        """The spec as records store it: ``precision`` and ``keep_weights`` only when not at their defaults (so
        records written before they existed read the same)."""
        spec = dataclasses.asdict(self)
        if self.precision == "auto":
            del spec["precision"]
        later = (
            "keep_weights", "source_experiment", "source_key", "allow_overlap", "memory_format", "auto_precision",
            "search_storage", "train_fraction", "fraction_budget", "fused_optimizer",
            "compile",
        )  # fmt: skip
        for name in later:
            if spec[name] == RunSpec.__dataclass_fields__[name].default:
                del spec[name]
        spec["eval_sets"] = [s.to_dict() for s in self.eval_sets]
        if not spec["eval_sets"]:
            del spec["eval_sets"]
        return spec

    @classmethod
    def from_dict(cls, spec: dict) -> RunSpec:
        """The spec of a record (a record made before ``precision`` existed ran ``auto``)."""
        epochs = spec.get("epochs")
        sets = tuple(EvalSetSpec.from_dict(s) for s in spec.get("eval_sets", ()))
        return cls(**{**spec, "epochs": tuple(epochs) if isinstance(epochs, list) else epochs, "eval_sets": sets})

    def stem(self, key: str) -> str:
        """File stem of the run's record: readable first, unique by the key's prefix."""
        precision = identity_precision(self)
        precision = "" if precision == "auto" else f"-{precision}"
        fused = ("-fused" if self.fused_optimizer else "") + ("-compile" if self.compile else "")
        fraction = self.fraction_tag("-")
        return f"{Path(self.protocol).stem}-r{self.resolution}-s{self.seed}{precision}{fused}{fraction}-{key[:12]}"

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.backbone}/{self.protocol}{self.fraction_tag('/')}/s{self.seed}"

    def fraction_tag(self, sep: str) -> str:
        """``<sep>f0.25`` for a run on a share of the training split; "" for the whole (names stay as they were)."""
        return "" if self.train_fraction == 1.0 else f"{sep}f{self.train_fraction:g}"


def identity_precision(spec: RunSpec) -> str:
    """The precision as the identity, the key, file names and tables name it: what the numbers were made in.

    ``auto`` stays ``auto`` where it means what it always has, the device's standing precision (fp32 on a CPU,
    bf16 or fp16 autocast on CUDA), so every record made before the CPU's choice was measured keeps its key. A
    CPU's measured bf16 (``spec.auto_precision``) is ``bf16``: another experiment, the same one as asking for bf16.
    """
    return spec.auto_precision or spec.precision


def protocol_label(protocol: str, precision: str, fused_optimizer: bool = False, compiled: bool = False) -> str:
    """The protocol as tables name it: with the precision when one was asked for (``scratch@fp32``), the fused
    optimiser and ``torch.compile`` when asked for (``scratch@bf16+fused``, ``scratch+compile``): each makes
    another experiment."""
    label = protocol if precision == "auto" else f"{protocol}@{precision}"
    return label + ("+fused" if fused_optimizer else "") + ("+compile" if compiled else "")
