"""A fresh clone's first ``bench run`` trains: the published records under results/ are not its results folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.paths import PUBLISHED_RESULTS, WORKING_RESULTS

REPO = Path(__file__).resolve().parents[2]


def dry_run(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "BENCH_HOME"}
    proc = subprocess.run(
        [sys.executable, "-c", "from bench.cli import main; main()", "run", "--dry-run", "--device", "cpu", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**env, "COLUMNS": "80"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_fresh_clone_plans_the_whole_default_sweep_beside_the_published_records(tmp_path):
    """The folder a clone's ``bench run`` starts in holds the committed results/ (here the repository's own)."""
    (tmp_path / PUBLISHED_RESULTS).symlink_to(REPO / PUBLISHED_RESULTS, target_is_directory=True)
    out = dry_run(tmp_path)
    first = out.splitlines()[0]
    assert first.startswith("default: 18 runs (18 to do) on ") and first.endswith(f"results in {WORKING_RESULTS}/"), out
    assert "skipped" not in first, out
    assert "18 runs: 0 done, 18 to do" in out and "nothing was trained" in out
    assert not list((tmp_path / WORKING_RESULTS).rglob("*"))  # checked writable, nothing written
