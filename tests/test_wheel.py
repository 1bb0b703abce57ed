"""The built wheel works outside the repository: registries and sweeps ship inside it, the data does not.

Built with the `build` front end (no isolation: the dev extras hold the backend), installed with `--no-deps`
into a fresh venv that sees this environment's site-packages (torch is not downloaded again; the wheel is
installed with --ignore-installed, or pip would take the editable install of this checkout, the same version,
as already satisfied), then run as a
user would from a folder of their own: one tiny run reads a BENCH_HOME dataset entry, another a bare folder of
class subfolders (``--datasets ./photos``, no entry at all).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # a build, a venv, seven commands: 33 s on the idle 2 cores, 1077 s at load average 20

REPO = Path(__file__).resolve().parents[1]
REGISTRIES = ("backbones", "datasets", "protocols", "sweeps")
FOLDER_ENTRY = """name = "spots"
title = "Bright or dark spots (a folder of class subfolders)"
layout = "class_folders"
path = "data/spots"
classes = ["dark", "bright"]
task = "binary"
color = "grayscale"
licence = "CC0"
citation = "synthetic"
[split]
policy = "stratified"
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv outside the repository with the wheel built from this checkout installed in it."""
    root = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(root / "dist"), str(REPO)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = (root / "dist").glob("backbone_bench-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root / "venv")], check=True)
    pip = [
        str(root / "venv" / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        "--ignore-installed",
    ]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=300)
    return root / "venv"


def bench(venv: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The installed ``bench`` script, with none of this checkout on its path."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_HOME")}
    return subprocess.run(
        [str(venv / "bin" / "bench"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**clean, "COLUMNS": "80", **env},
    )


def test_installed_outside_the_repository(venv, tmp_path):
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bench, bench.paths as p; print(bench.__file__, p.project_root())"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout.split()  # fmt: skip
    assert Path(site[0]).is_relative_to(venv) and Path(site[1]) == Path(site[0]).parent / "_registry"
    shipped = Path(site[1])
    for kind in REGISTRIES:
        assert sorted(p.name for p in (shipped / kind).glob("*.toml")) == sorted(
            p.name for p in (REPO / kind).glob("*.toml")
        ), kind
    assert not (shipped / "data").exists()

    listed = bench(venv, tmp_path, "list", "backbones")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for entry in (REPO / "backbones").glob("*.toml"):
        assert f" {entry.stem} " in listed.stdout, entry.stem  # piped: every name whole

    datasets = bench(venv, tmp_path, "list", "datasets")
    assert datasets.returncode == 0, datasets.stdout + datasets.stderr
    (hint,) = [line for line in datasets.stdout.splitlines() if line.startswith("no local data for ")]
    shipped_names = ", ".join(sorted(p.stem for p in (REPO / "datasets").glob("*.toml")))
    assert shipped_names in hint and "BENCH_HOME" in hint

    refused = bench(venv, tmp_path, "run", "--dry-run")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stdout + refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "the wheel ships no data" in refused.stderr

    planned = bench(venv, tmp_path, "run", "--dry-run", "--device", "cpu", BENCH_HOME=str(REPO))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    first = planned.stdout.splitlines()[0]
    assert first.startswith("default: 18 runs (18 to do) on ") and first.endswith("results in my-results/"), first


def spots(folder: Path, per_class: int) -> None:
    """``folder/dark/`` and ``folder/bright/``: tiny grayscale PNGs a model tells apart in one epoch."""
    rng = np.random.default_rng(0)
    for label, level in (("dark", 40), ("bright", 200)):
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(level, 20, (16, 16)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{label}-{i}.png")


def test_a_tiny_run_on_a_user_entry(venv, tmp_path):
    home = tmp_path / "home"
    spots(home / "data" / "spots", 10)
    (home / "datasets").mkdir()
    (home / "datasets" / "spots.toml").write_text(FOLDER_ENTRY)
    args = ("run", "--backbones", "test_resnet", "--datasets", "spots", "--epochs", "1", "--device", "cpu")
    done = bench(venv, tmp_path, *args, "--no-keep-weights", BENCH_HOME=str(home))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 run(s) done (0 failed)" in done.stdout and "spots" in done.stdout
    (record,) = (tmp_path / "my-results" / "runs" / "spots" / "test_resnet").glob("*.json")
    assert zipfile.is_zipfile(record.with_suffix(".probs.npz"))  # the scores every metric is recomputed from


def test_a_tiny_run_on_a_bare_folder(venv, tmp_path):
    spots(tmp_path / "photos", 15)
    args = ("run", "--backbones", "test_resnet", "--datasets", "./photos", "--epochs", "1", "--device", "cpu")
    done = bench(venv, tmp_path, *args, "--no-keep-weights")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "datasets/photos.toml" in done.stdout and 'layout = "class_folders"' in done.stdout  # the inferred entry
    (record,) = (tmp_path / "my-results" / "runs" / "photos" / "test_resnet").glob("*.json")
    assert zipfile.is_zipfile(record.with_suffix(".probs.npz"))
