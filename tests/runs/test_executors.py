"""Executors: a sweep through Ray gives the records of a local run; a lost worker is retried or left to do.

Ray runs on one local cluster (2 CPUs) for the module; every process it started is gone when it ends.
CPU results depend on the torch thread count, so every executor here runs its runs on one thread.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli.commands import main
from bench.evaluation.scores import TestScores
from bench.files import jsonable
from bench.runs.executors.local import LocalExecutor
from bench.runs.executors.ray import RayExecutor
from bench.runs.planned import plan_runs
from bench.runs.record import RunRecord, load_records
from bench.runs.spec import RunSpec
from bench.train.events import EpochEnded
from bench.train.history import EpochLog

SWEEP = """name = "four"
[[group]]
backbones = ["test_resnet"]
datasets = ["tiny"]
seeds = [0, 1]
epochs = 1

[[group]]  # a requested precision travels with its spec (a worker that lost it would resolve another key)
backbones = ["test_efficientnet"]
datasets = ["tiny"]
seeds = [0, 1]
epochs = 1
precision = "fp32"
"""
VOLATILE = ("created", "timings_s", "latency", "environment")  # where and how fast, not what
TIMING_COLUMNS = ["latency_ms", "throughput", "train_s", "latency_device", "pareto", "note"]  # and what they decide
TIMING_COLUMNS += ["latency_ms_std", "latency_ms_min", "latency_ms_max", "latency_noisy"]


def _processes_under(root: int) -> dict[int, str]:
    """pid -> command line of every live descendant of ``root`` (from /proc: Ray renames its workers)."""
    parent, command = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if fields[0] != "Z":
            parent[int(stat.parent.name)] = int(fields[1])
    found, frontier = {}, {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier and pid not in found}
        found |= {pid: command[pid] for pid in frontier}
    return found


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"}


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray with 2 CPUs for the module; afterwards none of the processes it started is left."""
    ray = pytest.importorskip("ray")
    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=100 * 2**20,  # runs return a few MB; Ray's default reserves 30% of the RAM
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        started = {pid for pid, cmd in _processes_under(os.getpid()).items() if "ray" in cmd}
        ray.shutdown()
        deadline = time.monotonic() + 60
        while _alive(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _alive(started)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"Ray left processes behind: {left}"


@pytest.fixture
def one_thread(monkeypatch):
    """This process and the worker processes it spawns compute on one torch thread, as a 1-CPU Ray task does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def _comparable(record: RunRecord) -> dict:
    out = {k: v for k, v in record.to_json().items() if k not in VOLATILE}
    out["history"] = [
        {k: v for k, v in jsonable(h.to_dict()).items() if k not in EpochLog.TIMINGS} for h in record.history
    ]
    return out


def _bench_in_process(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    main()


def test_ray_gives_the_records_and_leaderboard_of_a_local_run(project, tmp_path, ray_address, one_thread, monkeypatch):
    (tmp_path / "four.toml").write_text(SWEEP)
    _bench_in_process(monkeypatch, "run", "--sweep", "four.toml", "--device", "cpu", "--results-dir", "local")

    ray_args = ("--executor", "ray", "--ray-address", ray_address, "--device", "cpu", "--cpus-per-task", "1")
    proc = subprocess.run(
        [sys.executable, "-c", "from bench.cli.commands import main; main()", "run", "--sweep", "four.toml", *ray_args]
        + ["--results-dir", "ray"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"on Ray at {ray_address}" in proc.stdout and "4 run(s) done (0 failed)" in proc.stdout
    assert "4 done, 0 running, 0 failed, 0 queued" in proc.stdout  # the driver's progress across all runs

    reference = {r.key: r for r in load_records(tmp_path / "local")}
    assert len(reference) == 4 and {r.status for r in reference.values()} == {"ok"}
    records = {r.key: r for r in load_records(tmp_path / "ray")}
    assert records.keys() == reference.keys()
    assert sorted(r.spec.precision for r in records.values()) == ["auto", "auto", "fp32", "fp32"]
    for key, record in records.items():
        assert _comparable(record) == _comparable(reference[key]), record.spec
        scores = TestScores.load(record.probs_path())
        expected = TestScores.load(reference[key].probs_path())
        for name in ("ids", "labels", "probs", "logits"):
            np.testing.assert_array_equal(getattr(scores, name), getattr(expected, name))
        # which node measured the latency, holding what
        executor, device = record.environment.executor, record.environment.device
        assert executor["name"] == "ray" and executor["attempt"] == 1 and executor["node_id"]
        assert executor["hostname"] == socket.gethostname() and executor["gpu_ids"] == []
        assert executor["resources"] == {"CPU": 1.0} and executor["node_resources"] == {"CPU": 2.0}
        assert device["torch_threads"] == 1 and reference[key].environment.executor["name"] == "local"
    splits = {p.name: p.read_bytes() for p in (tmp_path / "ray" / "splits").iterdir()}
    assert splits and splits == {p.name: p.read_bytes() for p in (tmp_path / "local" / "splits").iterdir()}

    # The leaderboard, from the records the Ray driver wrote, is the sequential run's.
    def board(results: str) -> pd.DataFrame:
        return pd.read_csv(tmp_path / results / "leaderboards" / "tiny.csv").drop(
            columns=TIMING_COLUMNS, errors="ignore"
        )

    pd.testing.assert_frame_equal(board("ray"), board("local"))


def test_cpu_workers_give_the_records_of_a_serial_run(project, tmp_path, one_thread, monkeypatch, capsys):
    """``--workers 2``: two runs at once in worker processes, the records and probabilities of a serial run."""
    (tmp_path / "four.toml").write_text(SWEEP)
    for workers, results in (("1", "serial"), ("2", "parallel")):
        args = ("--sweep", "four.toml", "--device", "cpu", "--workers", workers, "--results-dir", results)
        _bench_in_process(monkeypatch, "run", *args)
    out = " ".join(capsys.readouterr().out.split())
    assert "4 runs (4 to do) on cpu, results in serial/" in out
    assert "4 runs (4 to do) on 2 worker processes on cpu (OMP_NUM_THREADS=1), results in parallel/" in out
    # several at once: each finished run is one line (for a log or grep), not a bar kept to the end
    assert len(re.findall(r"ok: tiny/test_\w+/scratch(@fp32)?/r28/s[01] in \d+ s", out)) == 4, out

    reference = {r.key: r for r in load_records(tmp_path / "serial")}
    records = {r.key: r for r in load_records(tmp_path / "parallel")}
    assert len(reference) == 4 and records.keys() == reference.keys()
    assert {r.status for r in records.values()} == {"ok"}
    pids = set()
    for key, record in records.items():
        assert _comparable(record) == _comparable(reference[key]), record.spec
        for name in ("probs", "logits"):  # byte for byte
            got, expected = TestScores.load(record.probs_path()), TestScores.load(reference[key].probs_path())
            assert getattr(got, name).tobytes() == getattr(expected, name).tobytes()
        assert record.environment.executor["name"] == "local" and record.environment.device["torch_threads"] == 1
        pids.add(record.environment.executor["pid"])
    assert len(pids) == 2  # two worker processes shared the four runs


def _kill_workers(kind: str) -> set[int]:
    """SIGKILL this test's busy workers: Ray's run tasks, or the spawned processes of local pools."""
    marker = "ray::_ray_task" if kind == "ray" else "multiprocessing.spawn import spawn_main"
    pids = {pid for pid, cmd in _processes_under(os.getpid()).items() if cmd.startswith(marker) or marker in cmd}
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


@pytest.mark.parametrize(
    "kind, retries, status",
    [
        ("ray", 1, "ok"),  # re-queued, resumed from its last epoch checkpoint on the same node
        ("local", 0, "unfinished"),  # worker processes (one per GPU), the driver code Ray's shares: not recorded
    ],
)
def test_a_killed_worker_is_retried_or_left_to_do(kind, retries, status, project, tmp_path, one_thread, request):
    """A long run's worker is killed after its first checkpoint; on Ray, once a short run beside it is done.

    Locally the long run is alone: an idle pool process cannot be told from a busy one by its command line.
    """
    long = RunSpec("test_resnet", "tiny", "scratch", epochs=16)
    short = RunSpec("test_efficientnet", "tiny", "scratch", epochs=1)
    planned = plan_runs([long, short] if kind == "ray" else [long], tmp_path / "results")
    if kind == "ray":
        request.getfixturevalue("ray_address")
        executor = RayExecutor(device="cpu", cpus_per_task=1, retries=retries)
    else:
        executor = LocalExecutor([torch.device("cpu")] * 2, retries=retries)
    records, killed = [], set()

    def progress(item):
        def on_event(event: dict) -> None:
            # after epoch 2 the checkpoint of epoch 1 is on disk; with the short run finished, only the long
            # run's worker is busy
            alone = len(records) == len(planned) - 1
            if item is planned[0] and alone and not killed and isinstance(event, EpochEnded) and event.log.epoch >= 2:
                killed.update(_kill_workers(kind))

        return on_event

    for record in executor.run(planned, tmp_path / "results", progress):
        records.append(record)
    assert len(killed) == 1, "exactly the long run's worker was killed"
    by_key = {r.key: r for r in records}
    assert by_key.keys() == {item.key for item in planned}  # the sweep finished, the short run included
    assert all(by_key[item.key].status == "ok" for item in planned[1:])
    record = by_key[planned[0].key]
    assert record.status == status
    if status == "ok":
        assert record.resumed_at_epoch >= 1 and len(record.history) == 16
        assert record.environment.executor["attempt"] == 2
    else:
        assert record.environment.executor["attempts"] == 1
        assert ("WorkerCrashedError" if kind == "ray" else "BrokenProcessPool") in record.error
    stored = {key: r.status for key, r in by_key.items() if r.status != "unfinished"}  # a lost worker is not a result
    assert {r.key: r.status for r in load_records(tmp_path / "results")} == stored
    assert plan_runs([long], tmp_path / "results")[0].status == (None if status == "unfinished" else "ok")


def test_a_requested_precision_reaches_a_worker_process(project, tmp_path, one_thread):
    """Specs are pickled to the spawned workers of a multi-device run; the record is under the driver's key."""
    planned = plan_runs([RunSpec("test_resnet", "tiny", "scratch", epochs=1, precision="fp32")], tmp_path / "results")
    executor = LocalExecutor([torch.device("cpu")] * 2, retries=0)
    (record,) = executor.run(planned, tmp_path / "results", lambda item: None)
    assert record.status == "ok", record.error
    assert record.key == planned[0].key and record.spec.precision == "fp32"
    assert record.environment.executor["name"] == "local" and planned[0].path.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--executor", "spark"), "--executor takes local or ray, got 'spark'"),
        (("--ray-address", "auto"), "--ray-address auto needs --executor ray"),
        (("--executor", "ray", "--device", "cuda:1"), "--device cuda:1: with --executor ray use auto, cpu or cuda"),
        (("--executor", "ray", "--retries", "-1"), "--retries takes a count of 0 or more, got -1"),
        (("--executor", "ray", "--cpus-per-task", "0"), "--cpus-per-task takes 1 or more, got 0"),
        (("--workers", "0"), "--workers takes 1 or more, got 0"),
        (("--executor", "ray", "--workers", "2"), "--workers 2 needs --executor local (Ray: --cpus-per-task)"),
    ],
)
def test_executor_options_are_checked_before_anything_runs(project, tmp_path, args, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench", "run", "--backbones", "test_resnet", "--datasets", "tiny", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results").exists()
