"""What holding freed memory buys a CPU training step: each backbone's harness step in its auto engine, in fresh
processes (:mod:`bench.train.peer_child`) with glibc as it is and with freed memory held
(:mod:`bench.environment.allocator`), interleaved round by round; prints ms a step, minor page faults a step, the
process's peak resident memory and the speed-up (median of the per-round ratios).

    python scripts/allocator_gain.py --backbones resnet18,densenet121,efficientnet_b0 --rounds 4
"""

from __future__ import annotations

import argparse
import statistics

from bench.train.peers import run_child


def child(name: str, side: int, batch: int, steps: int, setting: str, default: bool) -> dict:
    return run_child([name, side, batch, steps, 1, setting, *(["--default-allocator"] if default else [])], threads=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="resnet18,densenet121,efficientnet_b0")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    print("| backbone | engine | ms: default | held | faults/step: default | held | peak MiB: default | held | x |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.backbones.split(","):
        setting, runs = "auto", {True: [], False: []}
        for r in range(args.rounds):
            for default in (r % 2 == 0, r % 2 == 1):  # which goes first alternates
                reply = child(name, args.resolution, args.batch_size, args.steps, setting, default)
                setting = reply["setting"]
                ms = statistics.median(ms for ms, _ in reply["steps"])
                runs[default].append((ms, reply["faults"], reply["peak_mib"]))
        ratio = statistics.median(d[0] / h[0] for d, h in zip(runs[True], runs[False], strict=True))
        cells = [statistics.median(x[i] for x in runs[k]) for i in range(3) for k in (True, False)]
        pairs = " | ".join(f"{cells[i]:,.0f} | {cells[i + 1]:,.0f}" for i in (0, 2, 4))
        print(f"| {name} | {setting} | {pairs} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
