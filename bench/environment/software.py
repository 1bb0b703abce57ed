"""The software a number was made with: package versions and the harness commit.

Apart from the device facts (:mod:`bench.environment.device`), so that an HTML report can name the commit
without importing torch, training or data code.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess

from bench.paths import project_root


def versions() -> dict[str, str]:
    """Versions of what changes a number: part of every record and of the run key."""
    names = ["backbone-bench", "torch", "timm", "numpy", "scikit-learn"]
    return {n: installed_version(n) for n in names} | {"python": platform.python_version()}


def installed_version(distribution: str) -> str:
    """The installed version; a source checkout on ``PYTHONPATH`` has no metadata and still runs."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str | None:
    """The checkout's commit (``-dirty`` when it has changes), or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(project_root()), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
