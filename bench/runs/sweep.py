"""Sweeps: a TOML file of run groups, expanded into independent runs keyed by their resolved config.

A group is a product: every backbone x dataset x protocol x training fraction x seed in it becomes one
:class:`RunSpec` (``train_fractions``: the shares of the training split to train on, :mod:`bench.data.fractions`;
default the whole split). ``fraction_budget`` says what a smaller share keeps: ``"epochs"`` (the default) trains
every share the group's epochs, so a 10% run takes a tenth of the optimiser steps; ``"steps"`` trains a share ``f``
the group's epochs times ``1/f`` (:meth:`Group.epochs_at`), so every share takes about as many steps as the whole
split. The run's epochs are in its identity, so a "steps" run is its own experiment, and its 100% run is the
"epochs" one.
Because each run's record is named by its run key (:func:`bench.runs.identity.run_key`: the experiment
identity, data included, the seed and the versions), re-running a sweep skips what is finished and
redoes only what is not, or what changed: an edited dataset entry or data file is a new run.

The sweep file's schema lives here, the ``[[published]]`` figures a sweep reproduces included; finding which runs
are finished is :mod:`bench.runs.planned`'s, and checking a whole request before it runs :mod:`bench.runs.plan`'s.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import (
    FieldError,
    ResolutionPolicy,
    check_epochs,
    check_identifier,
    check_names,
    check_resolution,
    check_seeds,
    check_train_fractions,
    from_mapping,
    is_folder_ref,
    load_toml,
)
from bench.data.eval_sets import EvalSetSpec, declared
from bench.errors import ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.paths import registry_files
from bench.precision import MemoryFormat, Precision
from bench.runs.identity import RUN_SOURCE
from bench.runs.spec import FRACTION_BUDGETS, FractionBudget, RunSpec


@dataclass(frozen=True)
class Published:
    """One published result: ``model`` on ``dataset``, test-split figures, and the tolerance a reproduction needs."""

    dataset: str
    model: str
    source: str
    figures: dict[str, float] = field(default_factory=dict)  # by name in bench.evaluation.metrics.HEADLINE_METRICS
    tolerance: float = 0.02  # largest |measured mean - published| that counts as reproduced

    def __post_init__(self) -> None:
        for name, value in self.figures.items():
            if name not in HEADLINE_METRICS:
                raise FieldError("figures", f"names {name!r}, not one of {', '.join(HEADLINE_METRICS)}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FieldError("figures", f"gives {name} = {value!r}; a figure is a number")

    def values(self) -> dict[str, float]:
        """The published figures in the table's order."""
        return {m: float(self.figures[m]) for m in HEADLINE_METRICS if m in self.figures}


def _scaled(epochs: int, fraction: float) -> int:
    return math.ceil(round(epochs / fraction, 6))


def check_fraction_budget(budget: str, epochs: int | tuple[int, ...] | None, fractions: tuple[float, ...]) -> None:
    """A known budget; "steps" needs explicit epochs to scale and a share below 1 to scale them for (a FieldError)."""
    field = "fraction_budget"
    if budget not in FRACTION_BUDGETS:
        raise FieldError(field, f"is {budget!r}; expected one of {', '.join(map(repr, FRACTION_BUDGETS))}")
    if budget != "steps":
        return
    if epochs is None:
        raise FieldError(field, "is 'steps' but no epochs are given: it scales explicit epochs by 1/fraction")
    if all(f == 1.0 for f in fractions):
        raise FieldError(field, "is 'steps' but train_fractions has no share below 1: nothing to scale")


@dataclass(frozen=True)
class Group:
    backbones: tuple[str, ...]
    datasets: tuple[str, ...]
    protocols: tuple[str, ...] = ("scratch",)
    seeds: tuple[int, ...] = (0,)
    resolution: int = 28
    epochs: int | tuple[int, ...] | None = None
    resolution_policy: ResolutionPolicy = "upsize"
    weights_file: str | None = None
    precision: Precision = "auto"  # of training and evaluation; see bench.train.engine.engine_for
    memory_format: MemoryFormat = "auto"  # nchw or nhwc (channels_last); auto: NHWC on CUDA, measured on a CPU
    keep_weights: bool = True  # keep each run's selected model as safetensors beside its record (not in the key)
    allow_overlap: bool = False  # train from a run: source although it saw target val/test images (bench.data.leakage)
    eval_sets: tuple[EvalSetSpec | str, ...] = ()  # also scored after training (bench.data.eval_sets); not in the key
    train_fractions: tuple[float, ...] = (1.0,)  # shares of the training split, one run each (bench.data.fractions)
    fraction_budget: FractionBudget = "epochs"  # what a share below 1 keeps: the epochs, or the steps (epochs_at)
    fused_optimizer: bool = False  # the fused AdamW kernel on the CPU too (RunSpec.fused_optimizer); in the key
    compile: bool = False  # train through torch.compile (RunSpec.compile); in the key

    def __post_init__(self) -> None:
        object.__setattr__(self, "eval_sets", declared(self.eval_sets))
        check_names(self.backbones, "backbones")  # they become folder names under the results folder
        check_names([d for d in self.datasets if not is_folder_ref(d)], "datasets")  # a folder names itself
        check_seeds(self.seeds)
        check_resolution(self.resolution)
        check_epochs(self.epochs)
        check_train_fractions(self.train_fractions)
        check_fraction_budget(self.fraction_budget, self.epochs, self.train_fractions)

    def epochs_at(self, fraction: float) -> int | tuple[int, ...] | None:
        """The epochs a run on ``fraction`` of the training split trains.

        ``fraction_budget = "epochs"``: the group's ``epochs`` at every share. ``"steps"``: each count (one for all
        phases, or each phase's) divided by ``fraction`` and rounded up, ``ceil(round(e / f, 6))`` (the quotient is
        rounded to 6 decimals first, so 3 epochs at 0.1 are 30, not float noise's 31): 2 epochs give 20, 8, 4 and 2
        at 0.1, 0.25, 0.5 and 1, so a share takes about the whole split's optimiser steps (its images are about
        ``f`` of the split's, :mod:`bench.data.fractions` rounding per class; rounding up adds a few where ``e / f``
        is not whole). At 1 the epochs are the group's either way. A protocol's epoch-counted settings (early
        stopping's patience, warm-up, step milestones) are not scaled.
        """
        if self.fraction_budget == "epochs" or self.epochs is None or fraction == 1.0:
            return self.epochs
        if isinstance(self.epochs, int):
            return _scaled(self.epochs, fraction)
        return tuple(_scaled(e, fraction) for e in self.epochs)


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str = ""
    group: tuple[Group, ...] = field(default_factory=tuple)
    published: tuple[Published, ...] = ()  # a paper's figures this sweep reproduces (`bench reproduction`)

    def expand(self, data_root: str | None = None) -> list[RunSpec]:
        """Every run of the sweep; a dataset folder (``./my_photos``) runs as its inferred name, read from it."""
        datasets = _resolve_datasets([d for g in self.group for d in g.datasets], data_root)
        specs = [
            RunSpec(
                backbone=b,
                dataset=datasets[d][0],
                protocol=p,
                seed=s,
                resolution=g.resolution,
                epochs=g.epochs_at(f),
                resolution_policy=g.resolution_policy,
                data_root=datasets[d][1] or data_root,
                weights_file=g.weights_file,
                precision=g.precision,
                memory_format=g.memory_format,
                keep_weights=g.keep_weights,
                allow_overlap=g.allow_overlap,
                eval_sets=g.eval_sets,  # type: ignore[arg-type]  (read as EvalSetSpec by __post_init__)
                train_fraction=f,
                fraction_budget="steps" if g.fraction_budget == "steps" and f < 1 else "epochs",
                fused_optimizer=g.fused_optimizer,
                compile=g.compile,
            )
            for g in self.group
            for d, b, p, f, s in itertools.product(g.datasets, g.backbones, g.protocols, g.train_fractions, g.seeds)
        ]
        return list(dict.fromkeys(specs))  # a run listed twice runs once


def _resolve_datasets(values: list[str], data_root: str | None) -> dict[str, tuple[str, str | None]]:
    """Each dataset value as (name, folder or None): :func:`bench.data.folder.resolve_dataset`, checked together."""
    if not any(is_folder_ref(v) for v in values):
        return {value: (value, None) for value in values}  # names only: no need to load the folder reader
    from bench.data.folder import resolve_dataset

    resolved = {value: resolve_dataset(value) for value in dict.fromkeys(values)}
    folders: dict[str, str] = {}  # name -> folder
    for value, (name, folder) in resolved.items():
        if folder is None:
            continue
        if data_root is not None:
            raise ConfigError(f"--data-root points registered datasets at another copy; the folder {value} is its own")
        if folders.setdefault(name, folder) != folder:
            raise ConfigError(f"the folders {folders[name]} and {folder} are both named '{name}': rename one")
    return resolved


def default_sweep_path() -> Path:
    return registry_files("sweeps")["default"]


def load_sweep(path: Path | str) -> Sweep:
    """A sweep file, or a sweep by name (``sweeps/<name>.toml``, shipped or ``BENCH_HOME``'s)."""
    path = Path(path)
    if not path.exists():
        named = registry_files("sweeps")
        if str(path) not in named:
            close = difflib.get_close_matches(str(path), list(named), n=1)
            hint = f"did you mean {close[0]}?" if close else f"the sweeps: {', '.join(named)}"
            raise ConfigError(f"--sweep {path}: no such file, and no sweep of that name ({hint})")
        path = named[str(path)]
    sweep = from_mapping(Sweep, load_toml(path), str(path))
    check_identifier(sweep.name, "sweep name", f"{path}: field 'name'")
    if not sweep.group:
        raise ConfigError(f"{path}: a sweep needs at least one [[group]]")
    return dataclasses.replace(sweep, group=tuple(_paths_from(path.parent, g) for g in sweep.group))


def _paths_from(folder: Path, group: Group) -> Group:
    """The group with its relative paths (dataset folders, a ``weights_file``) read from the sweep file's folder.

    As in a pyproject.toml or a compose file: a sweep that names ``./photos`` beside it runs the same from any
    working directory. Neither path is in a run's identity or key (the data and the weights are known by
    their contents), so where a path is read from changes no result.
    """

    def here(value: str) -> str:
        return value if value.startswith("~") or Path(value).is_absolute() else str(folder / value)

    datasets = tuple(here(d) if is_folder_ref(d) else d for d in group.datasets)
    weights = group.weights_file
    if weights is not None and not weights.startswith(RUN_SOURCE):
        weights = here(weights)
    return dataclasses.replace(group, datasets=datasets, weights_file=weights)
