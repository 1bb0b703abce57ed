"""The results folder under failure: failed runs are listed and exit 1, the environment's failures never stick,
two sweeps on one folder train each run once, and a killed process leaves no claim or temp file that sticks."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from console import as_from_a_terminal

from bench.cli.commands import main
from bench.paths import WORKING_RESULTS
from bench.runs.claims import Claims, lock_path
from bench.runs.planned import plan_runs
from bench.runs.record import load_records
from bench.runs.spec import RunSpec

ENTRY = "from bench.cli.commands import main; main()"
ADHOC = ("run", "--backbones", "test_resnet", "--datasets", "tiny", "--epochs", "1", "--device", "cpu")
# A sweep with a run that fails by itself (pretrained weights, offline) beside one that is fine.
MIXED = """name = "mixed"
[[group]]
backbones = ["test_resnet"]
datasets = ["tiny"]
epochs = 1

[[group]]
backbones = ["test_resnet"]
datasets = ["tiny"]
protocols = ["linear"]
epochs = 1
"""


def bench(*args: str, columns: int = 80, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": str(columns), **env},
    )


def test_a_failed_run_is_listed_whole_with_the_retry_command_and_exit_1(project, tmp_path):
    (tmp_path / "mixed.toml").write_text(MIXED)
    offline = {"HF_HUB_OFFLINE": "1"}
    proc = bench("run", "--sweep", "mixed.toml", "--device", "cpu", **offline)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    statuses = {r.spec.protocol: r.status for r in load_records(tmp_path / WORKING_RESULTS)}
    assert statuses == {"scratch": "ok", "linear": "failed"}  # the other run finished
    (failed,) = [r for r in load_records(tmp_path / WORKING_RESULTS) if not r.ok]
    *_, reason_line, retry_line = proc.stdout.strip().splitlines()
    assert reason_line == f"failed: {failed.label}: {failed.error}"  # whole, on one line of an 80-column terminal
    assert len(reason_line) > 80 and failed.error.startswith("WeightsError: ")
    assert retry_line == "retry: bench run --sweep mixed.toml --device cpu --retry-failed"

    again = bench("run", "--sweep", "mixed.toml", "--device", "cpu", **offline)
    assert again.returncode == 1, again.stdout + again.stderr
    lines = again.stdout.strip().splitlines()
    assert lines[0].endswith("; 1 failed before, skipped (add --retry-failed)")
    assert lines[-2:] == [reason_line, retry_line]  # still listed: the sweep is not all ok


@pytest.mark.parametrize(
    "where, fault, reason",
    [
        ("bench.files.os.fsync", OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        ("bench.runs.runner.fit", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "2.00 GiB"),
        ("bench.runs.runner.fit", MemoryError(), "MemoryError: no message"),
    ],
    ids=["disk-full", "cuda-oom", "memory-error"],
)
def test_environment_failures_are_reported_not_recorded(where, fault, reason, project, tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise fault

    monkeypatch.setattr(sys, "argv", ["bench", *ADHOC])
    with monkeypatch.context() as patch, pytest.raises(SystemExit) as exit_info:
        patch.setattr(where, broken)
        main()
    assert exit_info.value.code == 1
    *_, unfinished, retry = capsys.readouterr().out.strip().splitlines()
    assert unfinished.startswith("unfinished: tiny/test_resnet/scratch/r28/s0: ") and reason in unfinished
    assert retry == f"retry: bench {' '.join(ADHOC)}"  # no --retry-failed needed: nothing was recorded
    assert not list((tmp_path / WORKING_RESULTS).rglob("*.json"))
    results = tmp_path / WORKING_RESULTS
    assert plan_runs([RunSpec("test_resnet", "tiny", "scratch", epochs=1)], results)[0].status is None

    main()  # the disk has room again: the same command runs it, no flag
    assert "1 run(s) done (0 failed), 0 already finished" in capsys.readouterr().out
    assert [r.status for r in load_records(tmp_path / WORKING_RESULTS)] == ["ok"]


def test_the_results_folder_is_checked_writable_before_anything_trains(project, tmp_path):
    (tmp_path / "taken").write_text("a file where the results folder should be")
    proc = bench("run", *ADHOC[1:], "--results-dir", "taken/results")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == "error: taken/results/: cannot write there (Not a directory)"
    assert not proc.stdout.strip()  # planned, then refused: not one epoch trained


LOGGED = (
    """
import os
import bench.runs.runner as runner

real = runner.run

def run(planned, *args, **kwargs):  # what the executor resolved
    with open(os.environ["TRAINED_LOG"], "a") as log:
        log.write(f"{os.getpid()} {planned.spec.seed}\\n")
    return real(planned, *args, **kwargs)

runner.run = run
"""
    + ENTRY
)


def test_two_sweeps_on_one_results_folder_train_each_run_once(project, tmp_path):
    """Both processes plan the same three runs at about the same time; each run is trained by one of them."""
    log = tmp_path / "trained.log"
    args = ("run", "--backbones", "test_resnet", "--datasets", "tiny", "--seeds", "0,1,2", "--epochs", "2")
    env = {**os.environ, "COLUMNS": "200", "TRAINED_LOG": str(log)}
    # --workers 1: the log is written by this process's runner.run (a worker process would not have the patch);
    # claims are taken by the driver either way
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-c", LOGGED, *args, "--device", "cpu", "--workers", "1"], stdout=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0].decode() for p in sweeps]
    assert [p.returncode for p in sweeps] == [0, 0], outputs
    trained = [line.split() for line in log.read_text().splitlines()]
    assert sorted(seed for _, seed in trained) == ["0", "1", "2"], (trained, outputs)  # once each, no more
    assert sorted(r.spec.seed for r in load_records(tmp_path / WORKING_RESULTS) if r.ok) == [0, 1, 2]
    runs = tmp_path / WORKING_RESULTS / "runs"
    assert not list(runs.rglob("*.lock")) and not list(runs.rglob("*.tmp")) and not list(runs.rglob("*.ckpt"))


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"pid {os.getpid()} on here since now".encode())
print("held", flush=True)
time.sleep(600)
"""


def test_a_live_claim_is_respected_and_a_dead_ones_taken_over(project, tmp_path):
    (item,) = plan_runs([RunSpec("test_resnet", "tiny", "scratch", epochs=1)], tmp_path / WORKING_RESULTS)
    lock = lock_path(item.path)
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with Claims() as claims:
            assert claims.take(item) == f"claimed by pid {holder.pid} on here since now"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
    stale = item.path.parent / f".{item.path.stem}.ckpt.x1y2z3.tmp"  # a checkpoint write the kill cut short
    stale.write_bytes(b"half a checkpoint")
    other = item.path.parent / f".{item.path.stem}-0.json.a1b2c3.tmp"  # not this run's
    other.write_bytes(b"{")
    with Claims() as claims:
        assert claims.take(item) is None  # the killed holder's lock is gone with it
        assert not stale.exists() and other.exists()
        assert lock.read_text().startswith(f"pid {os.getpid()} on ")
    assert not lock.exists()  # released: nothing left beside the records


def test_a_run_finished_by_another_sweep_meanwhile_is_not_run_again(project, tmp_path):
    (item,) = plan_runs([RunSpec("test_resnet", "tiny", "scratch", epochs=1)], tmp_path / WORKING_RESULTS)
    item.path.parent.mkdir(parents=True)
    item.path.write_text('{"status": "ok"}')  # what another sweep wrote after this one planned the run as to do
    with Claims() as claims:
        assert claims.take(item) == f"finished by another process meanwhile ({item.path.name})"
    assert not lock_path(item.path).exists()


def _ctrl_c(pid: int) -> None:
    os.killpg(pid, signal.SIGINT)  # a terminal signals the whole foreground group


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)  # `kill PID`, a scheduler's or `docker stop`'s stop: the driver alone


@pytest.mark.parametrize("stop", [_ctrl_c, _kill], ids=["ctrl-c to the group", "SIGTERM to the driver"])
def test_ctrl_c_stops_every_worker_and_the_runs_resume(project, tmp_path, stop):
    """``--workers 2``: Ctrl-C (SIGINT to the whole group), or SIGTERM to the driver alone, stops the driver and
    both workers.

    The driver says what was saved in one line, exit 130, no traceback from any process, no process left,
    each run's last epoch checkpoint kept (test_resume.py shows a checkpoint resumes) and no claim held.
    SIGTERM reaches the driver only: without its handler the driver died at once and left both workers
    training as orphans.
    """
    args = ("run", "--backbones", "test_resnet", "--datasets", "tiny", "--seeds", "0,1", "--device", "cpu")
    long = (*args, "--epochs", "200", "--workers", "2")
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, *long],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )
    runs = tmp_path / WORKING_RESULTS / "runs"
    deadline = time.monotonic() + 240
    while len(list(runs.rglob("*.ckpt"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep ended before both runs had a checkpoint"
    stop(proc.pid)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"interrupted: 0 run(s) finished now and 0 before are saved in {WORKING_RESULTS}/runs")
    assert not _live_in_group(proc.pid), "no worker outlived the driver"
    assert len(list(runs.rglob("*.ckpt"))) == 2 and not list(runs.rglob("*.json"))
    assert not list(runs.rglob("*.lock"))


def _live_in_group(pgid: int, wait_s: float = 10.0) -> list[int]:
    """Processes of group ``pgid`` still running (zombies aside) after up to ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        live = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                live.append(int(stat.parent.name))
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.2)
