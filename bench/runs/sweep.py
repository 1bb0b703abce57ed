"""Sweeps: a TOML file of run groups, expanded into independent runs keyed by their resolved config.

A group is a product: every backbone x dataset x protocol x seed in it becomes one :class:`RunSpec`.
Because each run's record is named by the hash of its resolved config, re-running a sweep skips
what is finished and redoes only what is not.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.config import (
    check_epochs,
    check_identifier,
    check_names,
    check_resolution,
    check_seeds,
    from_mapping,
    load_toml,
)
from bench.errors import ConfigError
from bench.paths import project_root
from bench.reports.reproduction import Published
from bench.runs.record import Precision, RunSpec


@dataclass(frozen=True)
class Group:
    backbones: tuple[str, ...]
    datasets: tuple[str, ...]
    protocols: tuple[str, ...] = ("scratch",)
    seeds: tuple[int, ...] = (0,)
    resolution: int = 28
    epochs: int | tuple[int, ...] | None = None
    resolution_policy: Literal["upsize", "refuse"] = "upsize"  # registry.ResolutionPolicy, without importing torch
    weights_file: str | None = None
    precision: Precision = "auto"  # of training and evaluation on CUDA; see bench.train.loop.engine_for

    def __post_init__(self) -> None:
        check_names(self.backbones, "backbones")  # they become folder names under the results folder
        check_names(self.datasets, "datasets")
        check_seeds(self.seeds)
        check_resolution(self.resolution)
        check_epochs(self.epochs)


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str = ""
    group: tuple[Group, ...] = field(default_factory=tuple)
    published: tuple[Published, ...] = ()  # a paper's figures this sweep reproduces (`bench reproduction`)

    def expand(self, data_root: str | None = None) -> list[RunSpec]:
        specs = [
            RunSpec(
                backbone=b,
                dataset=d,
                protocol=p,
                seed=s,
                resolution=g.resolution,
                epochs=g.epochs,
                resolution_policy=g.resolution_policy,
                data_root=data_root,
                weights_file=g.weights_file,
                precision=g.precision,
            )
            for g in self.group
            for d, b, p, s in itertools.product(g.datasets, g.backbones, g.protocols, g.seeds)
        ]
        return list(dict.fromkeys(specs))  # a run listed twice runs once


def default_sweep_path() -> Path:
    return project_root() / "sweeps" / "default.toml"


def load_sweep(path: Path | str) -> Sweep:
    path = Path(path)
    if not path.exists() and (project_root() / "sweeps" / f"{path}.toml").exists():
        path = project_root() / "sweeps" / f"{path}.toml"
    sweep = from_mapping(Sweep, load_toml(path), str(path))
    check_identifier(sweep.name, "sweep name", f"{path}: field 'name'")
    if not sweep.group:
        raise ConfigError(f"{path}: a sweep needs at least one [[group]]")
    return sweep


@dataclass(frozen=True)
class PlannedRun:
    """A run of a sweep with its key and record path; ``status`` is the finished record's, else None."""

    spec: RunSpec
    key: str
    path: Path
    status: str | None

    @property
    def label(self) -> str:
        return f"{self.spec.dataset}/{self.spec.backbone}/{self.spec.protocol}/s{self.spec.seed}"


def plan_runs(specs: list[RunSpec], results_dir: Path) -> list[PlannedRun]:
    """Resolve every spec up front (a typo fails before anything trains) and find what is finished."""
    from bench.data.dataset import get_dataset_entry
    from bench.runs.record import config_key
    from bench.runs.runner import record_path, resolve

    for name in dict.fromkeys(s.dataset for s in specs):
        get_dataset_entry(name)
    planned = []
    for spec in specs:
        key = config_key(resolve(spec))
        path = record_path(results_dir, spec, key)
        planned.append(PlannedRun(spec, key, path, _status(path)))
    return planned


def _status(record_file: Path) -> str | None:
    """``ok`` or ``failed`` for a finished run; None when its record is absent or unreadable."""
    try:
        status = json.loads(record_file.read_text()).get("status")
    except (OSError, ValueError):
        return None
    return status if status in ("ok", "failed") else None
