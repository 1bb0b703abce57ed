"""The speed gate: each benchmark's fastest round against the baseline's, in units of the machine's speed.

    python tests/benchmarks/speed_gate.py BASELINE.json CURRENT.json [--limit 1.6]

Both files are pytest-benchmark JSON whose benchmarks carry ``extra_info["reference_s"]`` (the fixed plain-torch
step timed beside each benchmark, tests/benchmarks/conftest.py). A benchmark's *normalised* ratio is

    (now min / baseline min) / (now reference / baseline reference)

so a machine running everything 1.6x slower than when the baseline was saved reads 1.0, and a harness change
that makes one benchmark 1.6x dearer reads 1.6 however fast the machine is today. Raw absolute ratios are
shown beside it, never gated: the same VM has run the same commit 1.5-1.7x apart from one hour to the next.

Exit 0 when every benchmark is within the limit, 1 when one is over it or a baseline benchmark did not run
(a gate must not pass because its benchmark stopped running), 2 for a file that is missing or not such JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

LIMIT = 1.6
"""Fail a benchmark whose fastest round, in units of the machine's speed, costs more than 1.6x the baseline's.

Absolute times do not compare even on one machine: this project's shared 2-core VMs (AMD EPYC) have run the
same commit 1.5-1.7x slower from one hour to the next, every benchmark alike (baseline commit b51b7492 and
today's code, interleaved: data pipeline 524-531 vs 527-905 us, train step 153-163 vs 149-181 ms, while the
baseline of 2026-11-25 says 362 us and 106 ms). So beside every benchmark a fixed plain-torch step is timed
(tests/benchmarks/conftest.py), and this gate divides by it: the machine cancels and
the harness stays. CPU time (a wait is no CPU work: waiting regressions are caught by the in-run ratio of
tests/benchmarks/test_overhead_bench.py, timed on the wall clock), the fastest round only (medians move more),
and 60%: over 6 runs, idle and beside a 2-worker sweep, every normalised ratio was within 0.73-1.12, while a
planted second augmentation pass read 1.97 on the data pipeline.
"""


class GateInputError(ValueError):
    """A benchmark file the gate cannot read: the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class Figure:
    """One benchmark's fastest round and the reference step timed beside it (seconds)."""

    min_s: float
    reference_s: float


@dataclass(frozen=True)
class Comparison:
    name: str
    baseline: Figure
    now: Figure

    @property
    def raw(self) -> float:
        return self.now.min_s / self.baseline.min_s

    @property
    def machine(self) -> float:
        """How much slower the machine is than when the baseline was saved (the reference step's ratio)."""
        return self.now.reference_s / self.baseline.reference_s

    @property
    def normalised(self) -> float:
        return self.raw / self.machine


def load(path: Path) -> dict[str, Figure]:
    """Benchmark fullname -> Figure, from a pytest-benchmark JSON file."""
    try:
        data = json.loads(path.read_text())
        benchmarks = data["benchmarks"]
    except FileNotFoundError:
        raise GateInputError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GateInputError(f"{path}: not pytest-benchmark JSON ({exc})") from None
    figures = {}
    for b in benchmarks:
        reference = b.get("extra_info", {}).get("reference_s")
        if not reference:
            raise GateInputError(
                f"{path}: benchmark {b.get('fullname')!r} has no extra_info.reference_s "
                "(saved before the machine-speed reference existed: re-baseline, see noxfile.bench)"
            )
        figures[b["fullname"]] = Figure(min_s=b["stats"]["min"], reference_s=reference)
    return figures


def compare(baseline: dict[str, Figure], now: dict[str, Figure]) -> tuple[list[Comparison], list[str]]:
    """The benchmarks both ran, compared; and the baseline's benchmarks that did not run now."""
    both = [Comparison(name, baseline[name], now[name]) for name in baseline if name in now]
    return both, sorted(set(baseline) - set(now))


def report(rows: list[Comparison], missing: list[str], limit: float) -> tuple[str, bool]:
    """The table the gate prints, and whether it passes."""
    width = max([len(_short(r.name)) for r in rows] + [len("benchmark")])
    lines = [f"{'benchmark':<{width}}  {'raw':>6}  {'machine':>7}  {'normalised':>10}"]
    for r in rows:
        verdict = "  over the limit" if r.normalised > limit else ""
        lines.append(f"{_short(r.name):<{width}}  {r.raw:6.2f}  {r.machine:7.2f}  {r.normalised:10.2f}{verdict}")
    lines.append(f"raw: fastest round now / baseline; machine: the reference step's ratio; gate: normalised <= {limit}")
    for name in missing:
        lines.append(f"did not run (skipped or renamed): {name}")
    if not rows:
        lines.append("no benchmark in common with the baseline")
    ok = bool(rows) and not missing and all(r.normalised <= limit for r in rows)
    return "\n".join(lines), ok


def _short(fullname: str) -> str:
    return fullname.rsplit("::", 1)[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("current", type=Path)
    parser.add_argument("--limit", type=float, default=LIMIT)
    args = parser.parse_args(argv)
    try:
        rows, missing = compare(load(args.baseline), load(args.current))
    except GateInputError as exc:
        print(f"speed gate: {exc}", file=sys.stderr)
        return 2
    text, ok = report(rows, missing, args.limit)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
