"""Where the harness finds its registries, bundled data and results.

The registries (``backbones/``, ``datasets/``, ``protocols/``) and the embedded data live beside the package in the
repository, so a clone works with no configuration. ``BENCH_HOME`` points elsewhere (for example an
installed copy used against a project folder of the user's own).
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The folder holding ``backbones/``, ``datasets/``, ``protocols/`` and ``data/`` (``BENCH_HOME`` or the repo)."""
    env = os.environ.get("BENCH_HOME")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Decoded-image cache; ``BENCH_CACHE`` overrides (CI keeps it inside the clone)."""
    env = os.environ.get("BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "backbone-bench"
