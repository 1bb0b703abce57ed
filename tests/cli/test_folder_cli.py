"""``bench run --datasets ./folder``: a folder of class folders trains without an entry, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = ("--backbones", "test_resnet", "--device", "cpu", "--resolution", "16", "--epochs", "1")


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from bench.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "80"},
    )


def pets(root: Path, per_class: int = 8) -> Path:
    """``root/{cat,dog}/*.png``: 12x12 images told apart by brightness."""
    rng = np.random.default_rng(0)
    for i, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True)
        for j in range(per_class):
            pixels = rng.normal(70 + 110 * i, 25, (12, 12, 3)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{j}.png")
    return root


def printed_toml(stdout: str) -> dict:
    """The TOML block `bench run` prints after the line that introduces it."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "save it as datasets/" in line) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("seed = ")) + 1
    return tomllib.loads("\n".join(lines[start:end]))


def test_dry_run_prints_the_inferred_entry_as_toml(project, tmp_path):
    pets(tmp_path / "my pets")
    proc = bench("run", "--datasets", "./my pets", *TINY, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    entry = printed_toml(proc.stdout)
    assert (entry["name"], entry["classes"], entry["positive"]) == ("my_pets", ["cat", "dog"], "dog")
    assert entry["split"] == {"policy": "stratified", "train": 0.7, "val": 0.1, "test": 0.2, "seed": 0}
    assert "1 to do" in proc.stdout and "my_pets/test_resnet/scratch/s0" in proc.stdout


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: r.mkdir(), "no class subfolders"),
        (lambda r: pets(r, 1), "cat: 1 image; a class needs at least 3"),
        (lambda r: (pets(r), (r / "cat" / "list.csv").write_text("a,b")), "list.csv: not an image"),
    ],
    ids=["no-classes", "one-image", "not-an-image"],
)
def test_a_bad_folder_is_one_line_naming_it_and_exit_2(project, tmp_path, make, message):
    make(tmp_path / "bad")
    proc = bench("run", "--datasets", "./bad", *TINY, "--results-dir", "out")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "bad" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_folder_with_data_root_is_refused(project, tmp_path):
    pets(tmp_path / "pets")
    proc = bench("run", "--datasets", "./pets", *TINY, "--data-root", str(tmp_path))
    assert proc.returncode == 2 and "the folder ./pets is its own" in proc.stderr


def test_a_folder_trains_records_under_its_name_and_a_rerun_skips_it(project, tmp_path):
    pets(tmp_path / "pets")
    first = bench("run", "--datasets", "./pets", *TINY, "--results-dir", "out")
    assert first.returncode == 0, first.stdout + first.stderr
    (record_file,) = (tmp_path / "out" / "runs" / "pets" / "test_resnet").glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["status"] == "ok" and record["spec"]["dataset"] == "pets"
    assert record["spec"]["data_root"] == str(tmp_path / "pets")
    assert record["dataset"]["audit"]["split"].startswith("stratified 70%/10%/20% of all images (split seed 0")
    again = bench("run", "--datasets", str(tmp_path / "pets"), *TINY, "--results-dir", "out")  # the same folder
    assert again.returncode == 0 and "(0 to do)" in again.stdout
