"""The README-numbers gate: do the numbers quoted in the README still follow from the records?

Generated blocks of the README (``<!-- generated: PATH -->`` ... ``<!-- end generated -->``) must hold
PATH's content verbatim, and PATH must be what the harness writes from the records today: leaderboards are
rebuilt with the ``bench leaderboard`` code path into a temporary folder and compared, and so are
``bench reproduction``'s comparison and ``bench latency``'s summaries.
"""

from __future__ import annotations

import itertools
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError, ConfigError, ResultsError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.files import atomic_write_bytes

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
    from bench.reports.latency_pass import load_latency_passes
    from bench.reports.leaderboard import LATENCY_AXES, leaderboard
    from bench.reports.render import write_leaderboard
    from bench.runs.record import load_records

    match = LEADERBOARD_FILE.fullmatch(path)
    if match is None:
        return None
    records = load_records(root / match["dir"])
    passes = load_latency_passes(root / match["dir"])
    if not any(r.spec.dataset == match["dataset"] for r in records):
        raise ResultsError(f"no run records of {match['dataset']} under {match['dir']}/runs")
    current = (root / path).read_text() if (root / path).is_file() else None
    metrics = ["balanced_accuracy", *(m for m in HEADLINE_METRICS if m != "balanced_accuracy")]
    first = None
    with tempfile.TemporaryDirectory(prefix="bench-docs-") as tmp:
        for i, (metric, latency) in enumerate(itertools.product(metrics, LATENCY_AXES)):
            table = leaderboard(records, match["dataset"], metric, latency, passes)
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
    if table.empty:
        raise ResultsError(f"no finished runs of sweep {command['sweep']} under {command['dir']}/runs")
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
