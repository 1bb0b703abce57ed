"""glibc told to keep freed memory: a block freed and allocated again stops costing fresh pages, and a CPU run's
fingerprint says so. Each case runs in a fresh interpreter: the setting is process-wide and cannot be undone."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

GLIBC = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the knobs are glibc's"
)

# 10 rounds of 24 blocks of 8 MiB (each under the 32 MiB mmap threshold, over glibc's starting 128 KiB), allocated,
# touched and all freed, as a training step's activations are; the minor page faults of the loop are counted. By
# default glibc soon serves such blocks from its heap, but keeps trimming what is freed at its top back to the system,
# so later rounds fault pages in again.
ROUNDS = 10
ROUND_PAGES = 24 * 8 * 2**20 // 4096
CHURN = f"""
import json, resource, sys
import numpy as np
from bench.environment import allocator
held = allocator.hold_freed_memory() if sys.argv[1] == "hold" else False
again = allocator.hold_freed_memory() if sys.argv[1] == "hold" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({ROUNDS}):
    blocks = [np.ones(8 * 2**20, dtype=np.uint8) for _ in range(24)]  # every page touched
    del blocks
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({{"held": held, "again": again, "faults": faults, "state": allocator.state()}}))
"""


def _churn(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@GLIBC
def test_held_memory_is_reused_instead_of_faulted_in_again():
    default, held = _churn("default"), _churn("hold")
    assert held["faults"] < ROUND_PAGES, held  # the first round's memory serves the other nine
    assert default["faults"] > 5 * held["faults"], (default, held)  # measured: 123,000 against 12,000
    assert held["held"] and held["again"]  # a second call keeps it so
    assert default["state"] == "glibc default"
    assert held["state"] == "glibc, freed memory held (mmap threshold 32 MiB, trim 1024 MiB)"


@GLIBC
def test_a_cpu_run_holds_freed_memory_and_its_fingerprint_says_so(tmp_path):
    code = """
import json, sys, torch
from pathlib import Path
from bench.environment.device import device_fingerprint
from bench.runs.runner import run
from bench.runs.spec import RunSpec
before = device_fingerprint(torch.device("cpu"))["allocator"]
spec = RunSpec(backbone="test_resnet", dataset="pneumoniamnist", protocol="scratch", seed=0, epochs=1,
               resolution=16, train_fraction=0.05)
record = run(spec, Path(sys.argv[1]), torch.device("cpu"))
print(json.dumps({"before": before, "after": record.environment.device["allocator"], "status": record.status}))
"""
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {
        "before": "glibc default",
        "after": "glibc, freed memory held (mmap threshold 32 MiB, trim 1024 MiB)",
        "status": "ok",
    }


@GLIBC
@pytest.mark.parametrize("clock", ["CpuBackend()", "None"], ids=["profile --engines", "auto"])
def test_the_cpu_engine_is_measured_holding_freed_memory(clock):
    """``bench profile --engines`` passes the CPU's clock, planning's ``auto`` measurement none: both hold."""
    code = f"""
from bench.environment import allocator
from bench.timers.backends import CpuBackend
from bench.train.cpu_engine import measure_settings
before = allocator.state()
measure_settings({{"step": lambda: None}}, rounds=1, warmup=0, clock={clock})
print(before, "->", allocator.state())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == (
        "glibc default -> glibc, freed memory held (mmap threshold 32 MiB, trim 1024 MiB)"
    )
