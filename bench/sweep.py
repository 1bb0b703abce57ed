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

from bench.config import from_mapping, load_toml
from bench.errors import ConfigError
from bench.paths import project_root
from bench.results import RunSpec


@dataclass(frozen=True)
class Group:
    backbones: tuple[str, ...]
    datasets: tuple[str, ...]
    protocols: tuple[str, ...] = ("scratch",)
    seeds: tuple[int, ...] = (0,)
    resolution: int = 28
    epochs: int | tuple[int, ...] | None = None
    resolution_policy: str = "upsize"
    weights_file: str | None = None


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str = ""
    group: tuple[Group, ...] = field(default_factory=tuple)

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
    if not sweep.group:
        raise ConfigError(f"{path}: a sweep needs at least one [[group]]")
    return sweep


def finished(record_file: Path) -> bool:
    """A run is finished when its record exists, parses, and says so (ok or failed)."""
    try:
        return json.loads(record_file.read_text()).get("status") in ("ok", "failed")
    except (OSError, ValueError):
        return False
