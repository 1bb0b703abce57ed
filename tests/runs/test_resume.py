"""A sweep killed with SIGKILL mid-run resumes to exactly the leaderboard of an uninterrupted sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd

from bench.runs.record import load_records

SWEEP = (
    "run",
    "--backbones",
    "test_resnet,test_efficientnet",
    "--datasets",
    "tiny",
    "--seeds",
    "0",
    "--epochs",
    "12",
    "--device",
    "cpu",
)
# measured, not trained (the note says when a latency figure was noisy)
TIMING_COLUMNS = ["latency_ms", "throughput", "pareto", "train_s", "latency_device", "note"]
TIMING_COLUMNS += ["latency_ms_std", "latency_ms_min", "latency_ms_max", "latency_noisy"]


def _bench(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from bench.cli.commands import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _leaderboard(results: str) -> pd.DataFrame:
    return pd.read_csv(f"{results}/leaderboards/tiny.csv").drop(columns=TIMING_COLUMNS)


def test_sigkill_mid_run_then_resume(project, tmp_path):
    straight = _bench(*SWEEP, "--results-dir", "straight")
    assert straight.wait(timeout=600) == 0, straight.stdout.read()

    killed = _bench(*SWEEP, "--results-dir", "killed", start_new_session=True)
    runs = tmp_path / "killed" / "runs"
    deadline = time.monotonic() + 300
    while not list(runs.rglob("*.ckpt")):  # the first epoch boundary of the first run
        assert killed.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert list(runs.rglob("*.ckpt")) and not list(runs.rglob("*.json")), "killed mid-run: a checkpoint, no record"

    resumed = _bench(*SWEEP, "--results-dir", "killed")
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out
    records = load_records(tmp_path / "killed")
    assert len(records) == 2 and len({r.key for r in records}) == 2  # no duplicates
    assert any(r.resumed_at_epoch for r in records)  # really resumed, not retrained from scratch
    assert not list(runs.rglob("*.ckpt")) and not list(runs.rglob("*.tmp"))  # nothing half-written left
    pd.testing.assert_frame_equal(_leaderboard("killed"), _leaderboard("straight"))
