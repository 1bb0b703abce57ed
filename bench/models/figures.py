"""The figures ``bench list backbones`` shows (parameters, GMACs, input sizes), cached per registry entry.

Counting FLOPs builds each model and runs a forward pass, and importing timm alone takes seconds, while the
figures change only with the entry, the resolution or the timm/torch versions. So each entry's row is kept
in the cache folder under a key of its TOML file's bytes, the resolution and those versions (read from the
package metadata, without importing them): a warm listing imports neither torch nor timm, and an edited
entry or an upgrade recounts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from bench.config import load_toml
from bench.environment.software import installed_version
from bench.files import write_json
from bench.paths import cache_dir, registry_files


@dataclass(frozen=True)
class BackboneFigures:
    """One registered backbone at a requested resolution, with a 1000-class head."""

    name: str
    title: str
    params: int
    gmacs: float
    min_input: int
    runs_at: int  # the resolution it runs at: the requested one, upsized to its minimum


def registry_figures(resolution: int) -> list[BackboneFigures]:
    """Every registered backbone's figures at ``resolution``, counted only where the cache has none."""
    files = list(registry_files("backbones").values())  # the registry's files (models.registry)
    cached = {path: _read(_cache_path(path, resolution)) for path in files}
    missing = [path for path, figures in cached.items() if figures is None]
    if missing:
        for path, figures in zip(missing, _count(missing, resolution), strict=True):
            write_json(_cache_path(path, resolution), dataclasses.asdict(figures))
            cached[path] = figures
    return sorted((f for f in cached.values() if f is not None), key=lambda f: f.name)


def _cache_path(entry_file: Path, resolution: int) -> Path:
    key = [entry_file.read_bytes().hex(), resolution, installed_version("timm"), installed_version("torch")]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    return cache_dir() / "backbone-figures" / f"{entry_file.stem}-{resolution}-{digest}.json"


def _read(path: Path) -> BackboneFigures | None:
    try:
        return BackboneFigures(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):  # not counted yet, or a torn or foreign file: count again
        return None


def _count(entry_files: list[Path], resolution: int) -> list[BackboneFigures]:
    """Build and run each entry's model (timm and torch are imported here, on a cache miss only)."""
    from bench.models.registry import create_backbone, get_backbone, min_input_size, model_stats, resolve_resolution

    out = []
    for path in entry_files:
        entry = get_backbone(str(load_toml(path)["name"]))  # the registry has checked every entry
        effective = resolve_resolution(entry, resolution, "upsize")
        stats = model_stats(create_backbone(entry.name, num_classes=1000)[0], effective)
        out.append(
            BackboneFigures(
                name=entry.name,
                title=entry.title,
                params=int(stats["params"]),
                gmacs=float(stats["gmacs"]),
                min_input=min_input_size(entry),
                runs_at=effective,
            )
        )
    return out
