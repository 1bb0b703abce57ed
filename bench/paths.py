"""Where the harness finds its registries, bundled data and results.

The shipped registries (``backbones/``, ``datasets/``, ``protocols/``, ``sweeps/``) are the repository's own
folders in a clone, and copies inside the package (``bench/_registry/``, see pyproject.toml) in an installed
wheel, so both work with no configuration. ``BENCH_HOME`` names a folder of the user's own with any of those
four folders: its entries are added to the shipped ones, and one with the name of a shipped entry replaces it
(:func:`replaced_entries` lists those, so the commands can say so).

Results: the records the README and the gates quote are *published* under ``results/`` and committed; a
command that writes or reads runs without ``--results-dir`` uses :data:`WORKING_RESULTS`, a git-ignored
folder, so a fresh clone's ``bench run`` trains instead of finding the published records finished.
"""

from __future__ import annotations

import os
from pathlib import Path

WORKING_RESULTS = Path("my-results")
"""The default ``--results-dir`` (relative to where ``bench`` runs): the user's own runs, git-ignored."""

PUBLISHED_RESULTS = Path("results")
"""The committed records behind the README's tables, plots and the regression gates."""

REGISTRIES = ("backbones", "datasets", "protocols", "sweeps")


def project_root() -> Path:
    """The folder holding the shipped registries: the repository, or ``bench/_registry`` in a wheel.

    In a clone it also holds the bundled ``data/``; a wheel ships none of it (74 MB), only the default sweep's
    datasets decoded at its resolution (:func:`embedded_folder`), see :func:`data_hint`.
    """
    repo = Path(__file__).resolve().parent.parent
    return repo if (repo / "pyproject.toml").is_file() and (repo / "backbones").is_dir() else shipped_copy()


def shipped_copy() -> Path:
    """Where a built wheel puts its copies of the registries (pyproject's force-include)."""
    return Path(__file__).resolve().parent / "_registry"


def user_home() -> Path | None:
    """``BENCH_HOME``, the user's own folder of registry entries (and data), if set."""
    env = os.environ.get("BENCH_HOME")
    return Path(env).expanduser().resolve() if env else None


def registry_folders(kind: str) -> list[Path]:
    """The folders ``kind`` (one of :data:`REGISTRIES`) is read from, lowest precedence first: shipped, then user."""
    folders = [project_root() / kind]
    home = user_home()
    if home is not None and (home / kind).resolve() != folders[0].resolve():
        folders.append(home / kind)
    return folders


def registry_files(kind: str) -> dict[str, Path]:
    """Every ``*.toml`` of ``kind`` by name, sorted; a user file replaces the shipped one of its name.

    The name is the path below the registry folder without ``.toml``, so a subfolder groups entries (the
    sweeps of the source projects are ``seeds/s0-...``).
    """
    files: dict[str, Path] = {}
    for folder in registry_folders(kind):
        files.update(
            {path.relative_to(folder).with_suffix("").as_posix(): path for path in sorted(folder.rglob("*.toml"))}
        )
    return dict(sorted(files.items()))


def replaced_entries(kind: str) -> list[str]:
    """The shipped ``kind`` entries a ``BENCH_HOME`` file of the same name replaces (a line each, to print)."""
    shipped, *user = registry_folders(kind)
    if not user:
        return []
    return [
        f"{kind}: {path} replaces the shipped {path.relative_to(user[0]).with_suffix('').as_posix()}"
        for path in sorted(user[0].rglob("*.toml"))
        if (shipped / path.relative_to(user[0])).is_file()
    ]


def is_shipped(file: Path) -> bool:
    """Whether a registry file is one the harness ships (not the user's, from ``BENCH_HOME``)."""
    return file.resolve().is_relative_to(project_root())


def embedded_folder() -> Path:
    """Where a wheel keeps the default sweep's datasets, decoded at the sweep's resolution (``<name>-<R>px.npz``).

    So ``bench run`` from a wheel trains the default sweep with no clone (:mod:`bench.data.embed` writes the
    files, hatch_build.py puts them here); in a clone this folder does not exist and ``data/`` is read.
    """
    return shipped_copy() / "embedded"


def embedded_data() -> dict[str, list[int]]:
    """The resolutions each dataset is embedded at in this installation, by name (empty in a clone)."""
    found: dict[str, list[int]] = {}
    for file in sorted(embedded_folder().glob("*px.npz")):
        name, _, pixels = file.name.removesuffix("px.npz").rpartition("-")
        if name and pixels.isdigit():
            found.setdefault(name, []).append(int(pixels))
    return {name: sorted(sizes) for name, sizes in sorted(found.items())}


def describe_embedded() -> str:
    """The embedded data in words, ``chest_xray, ham10000, isic at 28 px``, or "" where none is."""
    by_sizes: dict[str, list[str]] = {}
    for name, sizes in embedded_data().items():
        by_sizes.setdefault(" and ".join(map(str, sizes)), []).append(name)
    return "; ".join(f"{', '.join(names)} at {sizes} px" for sizes, names in by_sizes.items())


def data_hint() -> str:
    """How to get the bundled data where it is not (an installed wheel ships the registries and the default
    sweep's data decoded at its resolution, not ``data/``)."""
    if project_root() != shipped_copy():
        return "the bundled data is in the repository's data/ folder: restore it with `git checkout -- data`"
    embedded = describe_embedded()
    shipped = f"the wheel ships only the default sweep's data ({embedded})" if embedded else "the wheel ships no data"
    return (
        f"{shipped}: set BENCH_HOME to a clone of the backbone-bench repository (its datasets/ "
        "and data/), or pass --data-root to a download"
    )


def cache_dir() -> Path:
    """Decoded-image cache; ``BENCH_CACHE`` overrides (CI keeps it inside the clone)."""
    env = os.environ.get("BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "backbone-bench"
