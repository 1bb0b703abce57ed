"""Regression gates for CI: is a change less accurate than the committed reference, and do the numbers
quoted in the README still follow from the records?

**Accuracy gate.** ``results/reference/`` holds the records of ``sweeps/reference.toml``, a small seeded
sweep on the bundled data trained on the CPU. A rerun of that sweep is compared with them, run by run and
metric by metric. On the CPU a seeded run repeats bit for bit given the same code, library versions, CPU
model and thread count, so where all of those match the comparison is *exact*: any difference means the
change altered training or evaluation, and it fails whether the number went up or down, because a
reference that no longer describes the code would hide the next regression. Where they cannot match
(another torch or timm, another CPU, another thread count) the floating-point rounding differs, training
trajectories drift apart, and only a drop larger than the *tolerance* fails. The report says which case
applied to each run and why.

**README numbers.** Generated blocks of the README (``<!-- generated: PATH -->`` ... ``<!-- end generated
-->``) must hold PATH's content verbatim, and PATH must be what the harness writes from the records today:
leaderboards are rebuilt with the ``bench leaderboard`` code path into a temporary folder and compared.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from bench.config import from_mapping, load_toml
from bench.errors import BenchError, ConfigError, ResultsError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.runs.record import atomic_write_bytes

REFERENCE_DIR = Path("results/reference")
REFERENCE_COMMAND = "bench run --sweep reference --results-dir results/reference --device cpu"

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
# The resolved config (what the run key hashes besides versions) and the data the run saw.
CONFIG_FIELDS = ("spec", "arch", "protocol", "effective_resolution")
IDENTITY = ("dataset", "backbone", "protocol", "resolution", "seed")


def identity(spec: dict) -> tuple:
    """What a run *is* across versions: its key changes with torch or timm, this does not."""
    return (*(spec[k] for k in IDENTITY), spec.get("precision", "auto"))


def run_label(spec: dict) -> str:
    return f"{spec['dataset']}/{spec['backbone']}/{spec['protocol']}/r{spec['resolution']}/s{spec['seed']}"


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: value}


def _diff(before: dict, after: dict) -> list[str]:
    """``field old -> new`` for every (nested, dotted) field that differs."""
    a, b = _flatten(before), _flatten(after)
    return [f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def environment_differences(reference: dict, current: dict) -> list[str]:
    """Versions and device properties that differ: any of them rules out an exact comparison."""
    ra, ca = reference["environment"], current["environment"]
    versions = _diff(*({k: env["versions"].get(k) for k in EXACT_VERSIONS} for env in (ra, ca)))
    return versions + _diff(*({k: env["device"].get(k) for k in EXACT_DEVICE} for env in (ra, ca)))


def config_differences(reference: dict, current: dict) -> list[str]:
    """Config fields, data and training engine that differ (the spec's data_root is where, not what: left out)."""

    def inputs(record: dict) -> dict:
        config = {k: record.get(k) for k in CONFIG_FIELDS}
        config["spec"] = {k: v for k, v in config["spec"].items() if k != "data_root"}
        data = (record.get("dataset") or {}).get("fingerprint")
        return config | {"data": data and data[:12], "engine": record.get("engine")}

    return _diff(inputs(reference), inputs(current))


@dataclass(frozen=True)
class Pairing:
    """A reference run, its rerun (None when there is no finished one) and how they are compared."""

    label: str
    reference: dict
    current: dict | None
    by_key: bool
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
        matched = "config key" if self.by_key else "dataset/backbone/protocol/resolution/seed (config key differs)"
        config = f"; config differs: {', '.join(self.config)}" if self.config else ""
        if self.exact:
            device = self.reference["environment"]["device"]
            same = f"same versions, {device.get('cpu_model')}, {device.get('torch_threads')} torch threads"
            return f"matched by {matched}; exact ({same}){config}"
        return f"matched by {matched}; tolerance {self.tolerance} ({', '.join(self.environment)}){config}"


def pair_runs(reference: list[dict], current: list[dict], tolerance: Tolerance) -> tuple[list[Pairing], list[dict]]:
    """Each reference run with its rerun: by config key, else by identity; also the reruns left over."""
    by_key = {r["key"]: r for r in current}
    by_identity = {identity(r["spec"]): r for r in current}
    pairings, used = [], set()
    for ref in sorted(reference, key=lambda r: run_label(r["spec"])):
        cur = by_key.get(ref["key"]) or by_identity.get(identity(ref["spec"]))
        label, tol = run_label(ref["spec"]), tolerance.of(ref["spec"]["dataset"])
        if cur is None:
            pairings.append(Pairing(label, ref, None, False, tol))
            continue
        used.add(cur["key"])
        env = () if cur["status"] != "ok" else tuple(environment_differences(ref, cur))
        config = tuple(config_differences(ref, cur))
        pairings.append(Pairing(label, ref, cur, cur["key"] == ref["key"], tol, env, config))
    return pairings, [r for r in current if r["key"] not in used]


def _scalar_metrics(record: dict) -> dict[str, float | None]:
    """Test metrics that are numbers (None is a NaN in JSON): the confusion matrix and per-class are not."""
    return {k: v for k, v in sorted(record.get("test", {}).items()) if v is None or isinstance(v, int | float)}


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
            elif p.current["status"] != "ok":
                out.append(f"{p.label}: rerun {p.current['status']}: {p.current.get('error', 'no error recorded')}")
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


def compare_records(reference: list[dict], current: list[dict], tolerance: Tolerance | None = None) -> CheckReport:
    """Compare every test metric of every reference run with its rerun."""
    if not reference:
        raise ConfigError(f"no reference records to compare with: create them with `{REFERENCE_COMMAND}`")
    pairings, leftover = pair_runs(reference, current, tolerance or Tolerance())
    checks = []
    for p in pairings:
        if p.current is None or p.current["status"] != "ok":
            continue
        ref, now = _scalar_metrics(p.reference), _scalar_metrics(p.current)
        for metric in ref.keys() | now.keys():
            gated = p.exact or metric in HEADLINE_METRICS
            checks.append(MetricCheck(p.label, metric, ref.get(metric), now.get(metric), p.exact, p.tolerance, gated))
    checks.sort(key=lambda c: (c.run, c.metric not in HEADLINE_METRICS, c.metric))
    return CheckReport(pairings, checks, sorted(run_label(r["spec"]) for r in leftover))


def sweep_records(records: list[dict], identities: set[tuple]) -> list[dict]:
    """The records that belong to a sweep (a results folder may hold other runs too)."""
    return [r for r in records if identity(r["spec"]) in identities]


def reference_threads(reference: list[dict]) -> int | None:
    """The torch thread count of the reference runs, when they agree and this machine has the cores.

    Running the check with it makes a machine with the same CPU model but more cores comparable exactly.
    """
    threads = {r["environment"]["device"].get("torch_threads") for r in reference}
    if len(threads) != 1:
        return None
    (n,) = threads
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return n if isinstance(n, int) and usable and n <= usable else None


def report_table(report: CheckReport) -> Table:
    table = Table(title="accuracy gate: reference vs now (test split)", header_style="bold")
    for col in ("run", "metric", "reference", "now", "delta", "verdict"):
        table.add_column(col, justify="left" if col in ("run", "metric", "verdict") else "right")
    for c in report.checks:
        delta = "" if c.delta is None else f"{c.delta:+.4g}"
        verdict = c.verdict + ("" if c.gated else " (not gated)")
        style = "red" if c.failed else ("green" if c.verdict == "equal" else "")
        table.add_row(c.run, c.metric, _fmt(c.reference), _fmt(c.now), delta, verdict, style=style)
    return table


# --- README numbers ------------------------------------------------------------------------------------

BLOCK = re.compile(r"^<!-- generated: (?P<path>\S+) -->\n(?P<body>.*?)^<!-- end generated -->", re.M | re.S)
START = re.compile(r"^<!-- generated:", re.M)
LEADERBOARD_FILE = re.compile(r"(?P<dir>.+)/leaderboards/(?P<dataset>[^/]+)\.(?P<ext>\w+)")


@dataclass(frozen=True)
class GeneratedBlock:
    path: str
    body: str
    line: int


def generated_blocks(text: str) -> list[GeneratedBlock]:
    return [GeneratedBlock(m["path"], m["body"], text.count("\n", 0, m.start()) + 1) for m in BLOCK.finditer(text)]


def regenerate_leaderboard(path: str, root: Path) -> str | None:
    """What ``bench leaderboard`` writes at ``path`` from today's records, or None if it is not a leaderboard.

    A leaderboard's rows depend on the options it was written with (sort metric, latency axis of the Pareto
    mark), so every combination is tried, the defaults first, and the one that reproduces the file wins;
    when none does, the defaults' output is returned for the report.
    """
    from bench.reports.leaderboard import LATENCY_AXES, leaderboard, write_leaderboard
    from bench.runs.record import load_records

    match = LEADERBOARD_FILE.fullmatch(path)
    if match is None:
        return None
    records = load_records(root / match["dir"])
    if not any(r["spec"]["dataset"] == match["dataset"] for r in records):
        raise ResultsError(f"no run records of {match['dataset']} under {match['dir']}/runs")
    current = (root / path).read_text() if (root / path).is_file() else None
    metrics = ["balanced_accuracy", *(m for m in HEADLINE_METRICS if m != "balanced_accuracy")]
    first = None
    with tempfile.TemporaryDirectory(prefix="bench-docs-") as tmp:
        for i, (metric, latency) in enumerate(itertools.product(metrics, LATENCY_AXES)):
            table = leaderboard(records, match["dataset"], metric, latency)
            written = {p.name: p for p in write_leaderboard(table, Path(tmp) / str(i), match["dataset"])}
            if Path(path).name not in written:
                return None
            text = written[Path(path).name].read_text()
            first = text if first is None else first
            if text == current:
                return text
    return first


LATENCY_FILE = re.compile(r"(?P<dir>.+/latency)/(?P<stem>latency-[^/]+)\.md")
COMPARISON_FILE = re.compile(r"(?P<dir>.+)/comparison\.md")
COMMAND_LINE = re.compile(r"^Command: `bench reproduction --sweep (?P<sweep>\S+) --results-dir (?P<dir>\S+)`$", re.M)


def regenerate_latency(path: str, root: Path) -> str | None:
    """The Markdown summary of a ``bench latency`` record, from the JSON beside it."""
    from bench.latency.report import latency_markdown

    match = LATENCY_FILE.fullmatch(path)
    if match is None:
        return None
    source = root / match["dir"] / f"{match['stem']}.json"
    try:
        return latency_markdown(json.loads(source.read_text())["records"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ResultsError(f"{source}: no readable latency records ({type(err).__name__})") from None


def regenerate_comparison(path: str, root: Path) -> str | None:
    """``bench reproduction``'s published-vs-measured table, rebuilt with the command its last line names."""
    from bench.reports.reproduction import COMMAND, reproduction_markdown, sweep_table
    from bench.runs.record import load_records
    from bench.runs.sweep import load_sweep

    match = COMPARISON_FILE.fullmatch(path)
    if match is None:
        return None
    command = COMMAND_LINE.search((root / path).read_text()) if (root / path).is_file() else None
    if command is None:
        raise ResultsError(f"{path}: no `Command: bench reproduction ...` line to rebuild it with")
    table = sweep_table(load_records(root / command["dir"]), load_sweep(command["sweep"]))
    return reproduction_markdown(table, COMMAND.format(sweep=command["sweep"], results_dir=command["dir"]))


REGENERATORS: tuple[Callable[[str, Path], str | None], ...] = (
    regenerate_leaderboard,
    regenerate_latency,
    regenerate_comparison,
)
"""Functions that rebuild a file under results/ from the records (None: not theirs to rebuild)."""


@dataclass
class DocsReport:
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"README numbers drifted: {self.problems[0]}{more}"
        return f"README numbers match results/: {len(self.checked)} generated block(s) re-derived"


def _first_difference(expected: str, actual: str) -> str:
    """Where two texts first differ, short enough for one line: line number and the differing stretch."""
    a, b = expected.splitlines(), actual.splitlines()
    for i, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if x != y:
            col = next((j for j, (u, v) in enumerate(zip(x, y, strict=False)) if u != v), min(len(x), len(y)))
            start = max(0, col - 10)
            return f"line {i}, column {col + 1}: {y[start : col + 20]!r}, expected {x[start : col + 20]!r}"
    return f"{len(b)} lines, expected {len(a)}"


def refresh_readme(readme: Path, root: Path) -> list[str]:
    """Copy each generated block's file into the block (the file itself comes from its bench command).

    Returns the paths whose block changed. A block whose file is missing is left alone; the check reports it.
    """
    text = readme.read_text()
    changed = []

    def fill(match: re.Match) -> str:
        target = root / match["path"]
        if not target.is_file():
            return match[0]
        body = target.read_text().strip("\n") + "\n"
        if body.strip("\n") != match["body"].strip("\n"):
            changed.append(match["path"])
        return f"<!-- generated: {match['path']} -->\n{body}<!-- end generated -->"

    updated = BLOCK.sub(fill, text)
    if changed:
        atomic_write_bytes(readme, updated.encode())
    return changed


def check_readme(readme: Path, root: Path) -> DocsReport:
    """Every generated block of ``readme`` equals its file, and every file equals its regeneration."""
    try:
        text = readme.read_text()
    except OSError as err:
        raise ConfigError(f"{readme}: cannot read: {err.strerror}") from None
    report = DocsReport()
    blocks = generated_blocks(text)
    if len(START.findall(text)) != len(blocks):
        report.problems.append(f"{readme}: a `<!-- generated: PATH -->` marker has no `<!-- end generated -->`")
    for block in blocks:
        where = f"{readme}:{block.line}"
        report.checked.append(block.path)
        target = root / block.path
        if Path(block.path).is_absolute() or Path(block.path).parts[0] != "results":
            report.problems.append(f"{where}: {block.path} is not a file under results/")
            continue
        if not target.is_file():
            report.problems.append(f"{where}: {block.path} does not exist")
            continue
        content = target.read_text()
        if block.body.strip("\n") != content.strip("\n"):
            diff = _first_difference(content.strip("\n"), block.body.strip("\n"))
            report.problems.append(f"{where}: block differs from {block.path} at {diff}")
        try:
            fresh = next((t for t in (fn(block.path, root) for fn in REGENERATORS) if t is not None), None)
        except BenchError as err:
            report.problems.append(f"{where}: cannot re-derive {block.path}: {err}")
            continue
        if fresh is None:
            report.problems.append(f"{where}: no generator re-derives {block.path} from records")
        elif fresh != content:
            diff = _first_difference(fresh, content)
            report.problems.append(f"{block.path}: differs from what the records give today at {diff}")
    return report
