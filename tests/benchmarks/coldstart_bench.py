"""Cold against warm start of one ``bench run``: the first with an empty decode cache, then the same run again.

Not a pytest test (it prints figures and takes minutes): run it as a script, from the repository root::

    python tests/benchmarks/coldstart_bench.py                       # resnet18 on ISIC, 28 px, 1 epoch
    python tests/benchmarks/coldstart_bench.py --datasets ham10000   # the lesion-grouped split's dataset

Both runs are real ``bench`` processes, each into a fresh results folder, so each pays what a user pays:
imports, registry reads, planning (the data identity is part of every run key), the stages, the tables.
The first has an empty ``BENCH_CACHE`` (it decodes every image and computes the split), the second finds
both cached. Printed: wall time of each, the ratio (goal: under 3), and for each where the time went, from
the run's record: the stages (data, build, train, eval, latency) and the rest of the wall time, outside
any stage (imports, planning, printing).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.runs.record import load_records


def one_run(args: list[str], cache: Path, results: Path) -> tuple[float, dict[str, float]]:
    """Wall seconds of ``bench run ARGS`` and its record's stage timings."""
    env = {**os.environ, "BENCH_CACHE": str(cache), "COLUMNS": "120"}
    command = [sys.executable, "-c", "from bench.cli.commands import main; main()", "run", *args]
    start = time.perf_counter()
    proc = subprocess.run([*command, "--results-dir", str(results)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench run failed:\n{proc.stdout}\n{proc.stderr}")
    (record,) = load_records(results)
    return wall, record.timings_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="resnet18")
    parser.add_argument("--datasets", default="isic")
    parser.add_argument("--epochs", default="1")
    args = parser.parse_args()
    run_args = ["--backbones", args.backbones, "--datasets", args.datasets, "--epochs", args.epochs]
    run_args += ["--device", "cpu"]
    with tempfile.TemporaryDirectory(prefix="coldstart-") as scratch:
        cache = Path(scratch) / "cache"
        rows = [(name, *one_run(run_args, cache, Path(scratch) / name)) for name in ("cold", "warm")]
    stages = ["data", "build", "train", "eval", "latency"]
    print(f"bench run {' '.join(run_args)}")
    print(f"{'start':<6} {'wall s':>7} " + " ".join(f"{s:>8}" for s in stages) + f" {'outside':>8}")
    for name, wall, timings in rows:
        inside = sum(timings.get(s, 0.0) for s in stages)
        cells = " ".join(f"{timings.get(s, 0.0):>8.2f}" for s in stages)
        print(f"{name:<6} {wall:>7.1f} {cells} {wall - inside:>8.1f}")
    print(f"cold / warm wall time: {rows[0][1] / rows[1][1]:.2f}")


if __name__ == "__main__":
    main()
