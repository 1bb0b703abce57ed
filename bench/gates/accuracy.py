"""The accuracy gate for CI: is a change less accurate than the committed reference?

``results/reference/`` holds the records of ``sweeps/reference.toml``, a small seeded
sweep on the bundled data trained on the CPU. A rerun of that sweep is compared with them, run by run and
metric by metric. On the CPU a seeded run repeats bit for bit given the same code, library versions, CPU
model and thread count, so where all of those match the comparison is *exact*: any difference means the
change altered training or evaluation, and it fails whether the number went up or down, because a
reference that no longer describes the code would hide the next regression. Where they cannot match
(another torch or timm, another CPU, another thread count) the floating-point rounding differs, training
trajectories drift apart, and only a drop larger than the *tolerance* fails. The report says which case
applied to each run and why.

A reference run and its rerun are paired by run key, else by experiment identity and seed
(:func:`bench.runs.resolve.experiment_identity`: same experiment, other versions), else by what a table shows
of them (dataset, backbone, protocol, resolution, seed), in which case the config differences are listed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.table import Table

from bench.config import from_mapping, load_toml
from bench.environment.cores import usable_cores
from bench.errors import ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.runs.experiments import flatten
from bench.runs.record import RunRecord
from bench.table_columns import Keep, add_column

REFERENCE_DIR = Path("results/reference")
REFERENCE_COMMAND = (
    "BENCH_CPU_ENGINE=fp32-nchw bench run --sweep reference --results-dir results/reference --device cpu"
)
"""Remakes the reference in the engine ``bench check`` reruns it in: fp32 NCHW, the CPU's standing engine (planning
would otherwise measure, and may pick bf16 on a CPU that has it: :mod:`bench.train.cpu_engine`)."""

TOLERANCE_FILE = "tolerance.toml"  # beside the reference records: the measured tolerances


@dataclass(frozen=True)
class Tolerance:
    """Largest drop of a headline test metric accepted where a run cannot be compared exactly, per dataset.

    Platform differences change rounding, and a short training run amplifies rounding into a different
    trajectory, by at most about as much as another seed would. So the reference's tolerances are its
    measured seed spread (``results/reference/tolerance.toml``): a drop beyond it is not platform noise.
    A finer regression can only be caught by the exact comparison, on the reference's platform.
    """

    default: float = 0.1
    datasets: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in {"default": self.default, **self.datasets}.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"tolerance for {name} must be a number >= 0, got {value!r}")

    def of(self, dataset: str) -> float:
        return float(self.datasets.get(dataset, self.default))


def load_tolerance(reference_dir: Path) -> Tolerance:
    """The reference's measured tolerances, or the default where it has none."""
    path = reference_dir / TOLERANCE_FILE
    return from_mapping(Tolerance, load_toml(path), str(path)) if path.exists() else Tolerance()


# What a seeded CPU run's numbers depend on besides the code and its config; equal => compare exactly.
EXACT_VERSIONS = ("torch", "timm", "numpy", "scikit-learn", "python")
EXACT_DEVICE = ("device_kind", "cpu_model", "torch_version", "torch_threads", "parallel_backend", "mkldnn")


def _shown(value: object) -> object:
    """Hashes shortened to 12 characters, so a difference fits on a line."""
    return value[:12] if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{40,64}", value) else value


def _diff(before: dict, after: dict) -> list[str]:
    """``field old -> new`` for every (nested, dotted) field that differs."""
    a, b = flatten(before), flatten(after)
    return [
        f"{k} {_shown(a.get(k))} -> {_shown(b.get(k))}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)
    ]


def environment_differences(reference: RunRecord, current: RunRecord) -> list[str]:
    """Versions and device properties that differ: any of them rules out an exact comparison."""
    ra, ca = reference.environment, current.environment
    versions = _diff(*({k: env.versions.get(k) for k in EXACT_VERSIONS} for env in (ra, ca)))
    return versions + _diff(*({k: env.device.get(k) for k in EXACT_DEVICE} for env in (ra, ca)))


def config_differences(reference: RunRecord, current: RunRecord) -> list[str]:
    """Experiment identity (config and data) and training engine fields that differ, as the records store them."""
    stored = (
        {"identity": r.identity.to_dict(), "engine": r.engine and r.engine.to_dict()} for r in (reference, current)
    )
    return _diff(*stored)


@dataclass(frozen=True)
class Pairing:
    """A reference run, its rerun (None when there is no finished one) and how they are compared."""

    label: str
    reference: RunRecord
    current: RunRecord | None
    matched: str  # "run key", "experiment identity" or "label" (see the module docstring)
    tolerance: float  # used only where the comparison cannot be exact
    environment: tuple[str, ...] = ()  # differences that rule out exactness
    config: tuple[str, ...] = ()  # differences in what was run

    @property
    def exact(self) -> bool:
        return not self.environment

    def basis(self) -> str:
        """One line: how the runs were matched and compared, and why."""
        if self.current is None:
            return "no finished rerun"
        matched = {
            "run key": "run key",
            "experiment identity": "experiment identity and seed (run key differs: other versions)",
            "label": "dataset/backbone/protocol/resolution/seed (experiment differs)",
        }[self.matched]
        config = f"; config differs: {', '.join(self.config)}" if self.config else ""
        if self.exact:
            device = self.reference.environment.device
            same = f"same versions, {device.get('cpu_model')}, {device.get('torch_threads')} torch threads"
            return f"matched by {matched}; exact ({same}){config}"
        return f"matched by {matched}; tolerance {self.tolerance} ({', '.join(self.environment)}){config}"


def pair_runs(
    reference: list[RunRecord], current: list[RunRecord], tolerance: Tolerance
) -> tuple[list[Pairing], list[RunRecord]]:
    """Each reference run with its rerun (by run key, else experiment and seed, else label); and the reruns left."""
    newest_last = sorted(current, key=lambda r: (r.created, r.key))
    by_key = {r.key: r for r in newest_last}
    by_experiment = {(r.experiment, r.spec.seed): r for r in newest_last}
    by_label = {r.label: r for r in newest_last}
    pairings, used = [], set()
    for ref in sorted(reference, key=lambda r: r.label):
        tol = tolerance.of(ref.spec.dataset)
        found = [
            ("run key", by_key.get(ref.key)),
            ("experiment identity", by_experiment.get((ref.experiment, ref.spec.seed))),
            ("label", by_label.get(ref.label)),
        ]
        matched, cur = next(((how, r) for how, r in found if r is not None and r.key not in used), ("", None))
        if cur is None:
            pairings.append(Pairing(ref.label, ref, None, "", tol))
            continue
        used.add(cur.key)
        env = () if not cur.ok else tuple(environment_differences(ref, cur))
        config = tuple(config_differences(ref, cur))
        pairings.append(Pairing(ref.label, ref, cur, matched, tol, env, config))
    return pairings, [r for r in current if r.key not in used]


def _scalar_metrics(record: RunRecord) -> dict[str, float | None]:
    """Test metrics that are numbers, and the argmax ties they rest on (None for NaN, as JSON stores it); the
    confusion matrix and per-class scores are not compared."""
    if record.test is None:
        return {}
    numbers: dict[str, float | None] = {k: None if math.isnan(v) else v for k, v in record.test.values.items()}
    if record.test.argmax_ties is not None:
        numbers["argmax_ties"] = record.test.argmax_ties
    return dict(sorted(numbers.items()))


@dataclass(frozen=True)
class MetricCheck:
    run: str
    metric: str
    reference: float | None
    now: float | None
    exact: bool
    tolerance: float
    gated: bool  # exact: every metric; tolerance: the headline metrics (sensitivity/specificity trade off)

    @property
    def delta(self) -> float | None:
        if self.reference is None or self.now is None:
            return None
        return self.now - self.reference

    @property
    def verdict(self) -> str:
        if _same(self.reference, self.now):
            return "equal"
        if self.delta is None:
            return "undefined now" if self.now is None else "defined now"
        if self.exact:
            return "lower" if self.delta < 0 else "higher"
        if -self.delta > self.tolerance:
            return "lower"
        return "higher" if self.delta > 0 else "within tolerance"

    @property
    def failed(self) -> bool:
        if not self.gated:
            return False
        return self.verdict != "equal" if self.exact else self.verdict in ("lower", "undefined now")

    def describe(self) -> str:
        delta = "" if self.delta is None else f" ({self.delta:+.4g})"
        mode = "exact comparison" if self.exact else f"tolerance {self.tolerance}"
        return f"{self.run} {self.metric}: {_fmt(self.reference)} -> {_fmt(self.now)}{delta}, {self.verdict} ({mode})"


def _same(a: float | None, b: float | None) -> bool:
    return a == b or (a is None and b is None) or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def _fmt(value: float | None) -> str:
    return "NaN" if value is None else f"{value:.4f}"


@dataclass
class CheckReport:
    pairings: list[Pairing]
    checks: list[MetricCheck]
    unreferenced: list[str]  # reruns with no reference run: the reference is stale

    @property
    def problems(self) -> list[str]:
        """One line per reason to fail, runs first, in run order."""
        out = []
        for p in self.pairings:
            if p.current is None:
                out.append(f"{p.label}: no finished rerun to compare with the reference")
            elif not p.current.ok:
                out.append(f"{p.label}: rerun {p.current.status}: {p.current.error or 'no error recorded'}")
        out += [c.describe() for c in self.checks if c.failed]
        stale = f"rerun has no reference record (regenerate: {REFERENCE_COMMAND})"
        out += [f"{label}: {stale}" for label in self.unreferenced]
        return out

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """The one line CI shows."""
        problems = self.problems
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return f"accuracy regression: {problems[0]}{more}"
        exact = sum(p.exact for p in self.pairings)
        return (
            f"accuracy gate passed: {len(self.pairings)} runs, {len(self.checks)} metrics; "
            f"{exact} run(s) compared exactly, {len(self.pairings) - exact} within their tolerance"
        )


def compare_records(
    reference: list[RunRecord], current: list[RunRecord], tolerance: Tolerance | None = None
) -> CheckReport:
    """Compare every test metric of every reference run with its rerun."""
    if not reference:
        raise ConfigError(f"no reference records to compare with: create them with `{REFERENCE_COMMAND}`")
    pairings, leftover = pair_runs(reference, current, tolerance or Tolerance())
    checks = []
    for p in pairings:
        if p.current is None or not p.current.ok:
            continue
        ref, now = _scalar_metrics(p.reference), _scalar_metrics(p.current)
        for metric in ref.keys() | now.keys():
            gated = p.exact or metric in HEADLINE_METRICS
            checks.append(MetricCheck(p.label, metric, ref.get(metric), now.get(metric), p.exact, p.tolerance, gated))
    checks.sort(key=lambda c: (c.run, c.metric not in HEADLINE_METRICS, c.metric))
    return CheckReport(pairings, checks, sorted(r.label for r in leftover))


def reference_threads(reference: list[RunRecord]) -> int | None:
    """The torch thread count of the reference runs, when they agree and this machine has the cores.

    Running the check with it makes a machine with the same CPU model but more cores comparable exactly.
    """
    threads = {r.environment.device.get("torch_threads") for r in reference}
    if len(threads) != 1:
        return None
    (n,) = threads
    usable = usable_cores()
    return n if isinstance(n, int) and usable and n <= usable else None


def report_frame(report: CheckReport) -> pd.DataFrame:
    """The gate table's rows as numbers, for scripts (``bench check --format csv|json``): NaN where undefined."""
    return pd.DataFrame(
        [
            {
                "run": c.run,
                "metric": c.metric,
                "reference": c.reference,
                "now": c.now,
                "delta": c.delta,
                "exact": c.exact,
                "tolerance": c.tolerance,
                "gated": c.gated,
                "verdict": c.verdict,
                "failed": c.failed,
            }
            for c in report.checks
        ],
        columns=["run", "metric", "reference", "now", "delta", "exact", "tolerance", "gated", "verdict", "failed"],
    )


def report_table(report: CheckReport) -> Table:
    table = Table(title="accuracy gate: reference vs now (test split)", header_style="bold")
    for col in ("run", "metric", "reference", "now", "delta", "verdict"):  # a narrow terminal keeps the verdict
        keep = Keep.ANSWER if col in ("run", "metric", "verdict") else Keep.FIGURE
        add_column(table, col, keep, justify="left" if col in ("run", "metric", "verdict") else "right")
    for c in report.checks:
        delta = "" if c.delta is None else f"{c.delta:+.4g}"
        verdict = c.verdict + ("" if c.gated else " (not gated)")
        style = "red" if c.failed else ("green" if c.verdict == "equal" else "")
        table.add_row(c.run, c.metric, _fmt(c.reference), _fmt(c.now), delta, verdict, style=style)
    return table
