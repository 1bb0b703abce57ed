"""Hatch build hook: the wheel embeds the default sweep's datasets, decoded from data/ at the sweep's resolution.

Why a hook: the files are generated (scripts/embed_default_data.py, from this checkout's data/ by the
project's own loader) into the git-ignored build/embedded/, so they are never committed (27 MB of binary
that any data or decoder change would rewrite whole) and never stale in a wheel built from a checkout: each
wheel build brings them up to date first (a warm load per dataset when nothing changed) and packs them as
``bench/_registry/embedded/`` (:func:`bench.paths.embedded_folder`). An editable install reads data/ itself.

The script needs the project's dependencies (torch decodes nothing, but the loader imports it), which an
isolated build environment lacks (``pip install .``, plain ``python -m build``): there the files of an earlier
run are packed with a warning, and with none the wheel is built without them, with a warning that says how to
build one that has them. It never fails the install: such a wheel works as before the data was embedded
(``bench list datasets`` says "no local data" and how to point ``BENCH_HOME`` at a clone).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MISSING_DEPENDENCIES = 3  # scripts/embed_default_data.py's exit status when it cannot import the project


class EmbedDefaultData(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        root = Path(self.root)
        folder = root / "build" / "embedded"
        script = [sys.executable, str(root / "scripts" / "embed_default_data.py"), "--out", str(folder)]
        done = subprocess.run(script, cwd=root, capture_output=True, text=True)
        if done.returncode == MISSING_DEPENDENCIES and any(folder.glob("*.npz")):
            self.app.display_warning(
                f"embedding the default sweep's data: {done.stderr.strip()}; packing the files already in "
                f"{folder} (made by an earlier build or scripts/embed_default_data.py), not checked against data/"
            )
        elif done.returncode == MISSING_DEPENDENCIES:
            self.app.display_warning(
                f"this wheel ships no data: embedding the default sweep's data needs the project's dependencies "
                f"({done.stderr.strip()}); for a wheel that trains `bench run` out of the box, build with "
                "`python -m build --wheel --no-isolation` where `pip install -e '.[dev]'` ran, or run "
                "`python scripts/embed_default_data.py` there first"
            )
            return
        elif done.returncode != 0:
            raise RuntimeError(f"scripts/embed_default_data.py failed:\n{done.stdout}{done.stderr}")
        else:
            self.app.display_info(done.stdout.strip())
        build_data["force_include"][str(folder)] = "bench/_registry/embedded"
