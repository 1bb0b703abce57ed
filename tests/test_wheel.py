"""The built wheel works outside the repository: registries and sweeps ship inside it, and of the data only the
default sweep's datasets, decoded at its resolution, so `bench run` trains the default sweep from a wheel.

Built with the `build` front end (no isolation: the dev extras hold the backend, and hatch_build.py's embedding of
the default sweep's data needs the project's dependencies), installed with `--no-deps` into a fresh venv that sees
this environment's site-packages (torch is not downloaded again; the wheel is installed with --ignore-installed,
or pip would take the editable install of this checkout, the same version, as already satisfied), then run as a
user would from a folder of their own: one tiny run reads a BENCH_HOME dataset entry, another a bare folder of
class subfolders (``--datasets ./photos``, no entry at all), and a slice of the default sweep on the embedded data
gives the records a run of the same slice in this checkout gives.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # a build, a venv, seven commands: 33 s on the idle 2 cores, 1077 s at load average 20

REPO = Path(__file__).resolve().parents[1]
REGISTRIES = ("backbones", "datasets", "protocols", "sweeps")
DEFAULT_GROUPS = tomllib.loads((REPO / "sweeps" / "default.toml").read_text())["group"]
DEFAULT_DATA = sorted({(d, g["resolution"]) for g in DEFAULT_GROUPS for d in g["datasets"]})
"""(dataset, resolution) of the default sweep: what the wheel embeds (its backbones run at the asked 28 px)."""
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
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    see_this_environment(root / "venv")
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


def see_this_environment(venv: Path) -> None:
    """Put this environment's site-packages on the venv's path with a ``.pth`` file.

    Not ``venv --system-site-packages``: run from a venv (as CI and users do), that exposes the *base*
    interpreter's packages, not this environment's. Plain directory lines add the folders without running
    their own ``.pth`` files, so the editable install of this checkout stays out.
    """
    folders = dict.fromkeys(
        [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    )
    (site_packages,) = venv.glob("lib/python*/site-packages")
    lines = [folder for folder in folders if Path(folder).is_dir()]
    (site_packages / "parent-environment.pth").write_text("\n".join(lines) + "\n")


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
    assert sorted(p.name for p in (shipped / "embedded").iterdir()) == [f"{d}-{r}px.npz" for d, r in DEFAULT_DATA]
    assert sum(p.stat().st_size for p in (shipped / "embedded").iterdir()) < 30e6  # the wheel stays light

    listed = bench(venv, tmp_path, "list", "backbones")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for entry in (REPO / "backbones").glob("*.toml"):
        assert f" {entry.stem} " in listed.stdout, entry.stem  # piped: every name whole

    datasets = bench(venv, tmp_path, "list", "datasets", "--format", "json", COLUMNS="300")
    assert datasets.returncode == 0, datasets.stdout + datasets.stderr
    embedded_names = sorted({d for d, _ in DEFAULT_DATA})
    (hint,) = [line for line in datasets.stderr.splitlines() if line.startswith("no local data for ")]
    not_embedded = sorted({p.stem for p in (REPO / "datasets").glob("*.toml")} - set(embedded_names))
    assert f"no local data for {', '.join(not_embedded)}: the wheel ships only the default sweep's data" in hint
    assert f"({', '.join(embedded_names)} at 28 px)" in hint and "BENCH_HOME" in hint
    (embedded,) = [line for line in datasets.stderr.splitlines() if line.startswith("embedded in the wheel")]
    assert f"{', '.join(embedded_names)} at 28 px" in embedded
    sizes = {row["name"]: row for row in json.loads(datasets.stdout)}
    assert all(sizes[d]["test"].isdigit() for d in embedded_names), sizes  # split sizes from the embedded tables

    planned = bench(venv, tmp_path, "run", "--dry-run", "--device", "cpu")  # the embedded data: no BENCH_HOME
    assert planned.returncode == 0, planned.stdout + planned.stderr
    first = planned.stdout.splitlines()[0]
    assert first.startswith("default: 18 runs (18 to do) on ") and first.endswith("results in my-results/"), first

    for args, says in (
        (("--datasets", not_embedded[0]), "the wheel ships only the default sweep's data"),
        (("--datasets", embedded_names[0], "--resolution", "32"), "decoded at 28 px only, not 32 px"),
    ):
        refused = bench(venv, tmp_path, "run", "--dry-run", "--device", "cpu", "--backbones", "resnet18", *args)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stdout + refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and says in refused.stderr, refused.stderr
        assert "BENCH_HOME" in refused.stderr

    planned = bench(venv, tmp_path, "run", "--dry-run", "--device", "cpu", BENCH_HOME=str(REPO))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert planned.stdout.splitlines()[0] == first  # a clone's data gives the same plan


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


IDENTITY = """
import json, sys
from bench.data.identity import data_identity
from bench.runs.identity import canonical
out = {}
for pair in sys.argv[1:]:
    name, resolution = pair.split(":")
    data = data_identity(name, int(resolution))
    out[pair] = [canonical(data.entry), data.fingerprint, data.pixels_sha256]
print(json.dumps(out))
"""


def identities(python: Path, cwd: Path, **env: str) -> dict:
    """The data identity of each default-sweep dataset at its resolution, as ``python`` loads it."""
    pairs = [f"{d}:{r}" for d, r in DEFAULT_DATA]
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_HOME")}
    done = subprocess.run(
        [str(python), "-c", IDENTITY, *pairs], capture_output=True, text=True, cwd=cwd, env={**clean, **env}
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_embedded_data_is_what_a_clone_loads(venv, tmp_path):
    """Entry, split fingerprint (id, split, label of every image) and pixels sha256: shipped arrays cannot drift."""
    wheel = identities(venv / "bin" / "python", tmp_path, BENCH_CACHE=str(tmp_path / "wheel-cache"))
    clone = identities(Path(sys.executable), REPO, BENCH_CACHE=str(tmp_path / "clone-cache"))
    assert wheel == clone


def test_a_slice_of_the_embedded_default_trains_as_in_a_clone(venv, tmp_path):
    """One run of the default sweep (ISIC, ResNet-18 from scratch, seed 0, its 2 epochs) from the wheel and from
    this checkout: the same key, identity and test metrics."""
    args = ("run", "--backbones", "resnet18", "--datasets", "isic", "--protocol", "scratch", "--seeds", "0")
    args += ("--epochs", "2", "--resolution", "28", "--device", "cpu", "--no-keep-weights")
    done = bench(venv, tmp_path, *args, BENCH_CACHE=str(tmp_path / "wheel-cache"))
    assert done.returncode == 0, done.stdout + done.stderr
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_HOME")}
    in_clone = subprocess.run(
        [sys.executable, "-c", "from bench.cli import main; main()", *args, "--results-dir", str(tmp_path / "clone")],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**clean, "COLUMNS": "80", "BENCH_CACHE": str(tmp_path / "clone-cache")},
    )  # fmt: skip
    assert in_clone.returncode == 0, in_clone.stdout + in_clone.stderr
    records = [
        json.loads(next((folder / "runs" / "isic" / "resnet18").glob("*.json")).read_text())
        for folder in (tmp_path / "my-results", tmp_path / "clone")
    ]
    wheel, clone = records
    assert wheel["status"] == clone["status"] == "ok"
    assert wheel["key"] == clone["key"] and wheel["identity"] == clone["identity"]
    assert wheel["test"] == clone["test"] and wheel["val"] == clone["val"]
