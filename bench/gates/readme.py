"""The docs-numbers gate: do the numbers quoted in the README and the docs pages still follow from the records?

Generated blocks (``<!-- generated: PATH -->`` ... ``<!-- end generated -->``) of the README and of every page
of the docs site (``docs/**/*.md`` beside it, MkDocs' docs_dir) must hold PATH's content verbatim, and PATH must
be what the harness writes from the records today: leaderboards are rebuilt with the ``bench leaderboard`` code
path into a temporary folder and compared, and so are ``bench reproduction``'s comparison and ``bench
latency``'s summaries. The README's relative links (to the docs pages, plots and assets) must name files that
exist; the docs pages' links are ``mkdocs build --strict``'s to check.

Why every page under ``docs/`` rather than the pages the README links: ``bench check-readme README.md`` (the
command, and the ``docs-numbers`` nox session) checks them all with no list to keep, a page reached only from
the site's nav (or added later) included, and paths in blocks stay relative to the repository root, as in the
README.
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
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
DOCS_DIR = "docs"
"""The docs site's pages (``docs_dir`` of mkdocs.yml), whose generated blocks are checked with the README's."""
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
    pages: list[str] = field(default_factory=list)
    """The docs pages checked besides the README (paths relative to the root)."""

    def summary(self) -> str:
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"README numbers drifted: {self.problems[0]}{more}"
        where = f" (the README and {len(self.pages)} docs page(s))" if self.pages else ""
        return f"README numbers match results/: {len(self.checked)} generated block(s) re-derived{where}"


def docs_pages(root: Path) -> list[Path]:
    """Every Markdown page of the docs site under ``root/docs``, in path order (none without the folder)."""
    folder = root / DOCS_DIR
    return sorted(folder.rglob("*.md")) if folder.is_dir() else []


def _shown(page: Path, root: Path) -> str:
    """A docs page as problems name it: its path from the root where it lies under it."""
    try:
        return page.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(page)


def _others(readme: Path, pages: list[Path] | None, root: Path) -> list[Path]:
    """The pages checked with ``readme``: ``pages``, or every docs page; the README itself never twice."""
    found = docs_pages(root) if pages is None else list(pages)
    return [p for p in found if p.resolve() != readme.resolve()]


def _first_difference(expected: str, actual: str) -> str:
    """Where two texts first differ, short enough for one line: line number and the differing stretch."""
    a, b = expected.splitlines(), actual.splitlines()
    for i, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if x != y:
            col = next((j for j, (u, v) in enumerate(zip(x, y, strict=False)) if u != v), min(len(x), len(y)))
            start = max(0, col - 10)
            return f"line {i}, column {col + 1}: {y[start : col + 20]!r}, expected {x[start : col + 20]!r}"
    return f"{len(b)} lines, expected {len(a)}"


def refresh_readme(readme: Path, root: Path, pages: list[Path] | None = None) -> list[str]:
    """Copy each generated block's file into the block, in the README and the docs pages (``pages``, by default
    every page under ``root/docs``); the file itself comes from its bench command.

    Returns the paths whose block changed (a docs page's as ``PATH (in docs/page.md)``). A block whose file is
    missing is left alone; the check reports it.
    """
    changed = _refresh_page(readme, root)
    for page in _others(readme, pages, root):
        changed += [f"{path} (in {_shown(page, root)})" for path in _refresh_page(page, root)]
    return changed


def _refresh_page(readme: Path, root: Path) -> list[str]:
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


def check_readme(readme: Path, root: Path, pages: list[Path] | None = None) -> DocsReport:
    """Every generated block of ``readme`` and of the docs pages equals its file, and every file its regeneration.

    ``pages``: the docs pages to check besides the README (default: every ``*.md`` under ``root/docs``). A file
    quoted in several places is re-derived once. The README's relative links must name existing files.
    """
    report = DocsReport()
    fresh: dict[str, str | None | BenchError] = {}
    text = _read(readme)
    for link, line in _relative_links(text):
        if not (readme.resolve().parent / link).exists():
            report.problems.append(f"{readme}:{line}: links to {link}, which does not exist")
    _check_page(text, str(readme), None, root, report, fresh)
    for page in _others(readme, pages, root):
        shown = _shown(page, root)
        report.pages.append(shown)
        _check_page(_read(page), shown, shown, root, report, fresh)
    return report


def _read(page: Path) -> str:
    try:
        return page.read_text()
    except OSError as err:
        raise ConfigError(f"{page}: cannot read: {err.strerror}") from None


def _relative_links(text: str) -> list[tuple[str, int]]:
    """(target without its #anchor, line) of each relative Markdown link or image outside code."""
    blank = FENCE.sub(lambda m: "\n" * m[0].count("\n"), text)
    blank = CODE_SPAN.sub(lambda m: " " * len(m[0]), blank)
    links = []
    for match in LINK.finditer(blank):
        target = match["target"].split("#", 1)[0]
        if target and not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("/"):
            links.append((target, blank.count("\n", 0, match.start()) + 1))
    return links


def _regenerate(path: str, root: Path, fresh: dict) -> str | None:
    """The file at ``path`` as the records give it today (None: no generator), computed once per path."""
    if path not in fresh:
        try:
            fresh[path] = next((t for t in (fn(path, root) for fn in REGENERATORS) if t is not None), None)
        except BenchError as err:
            fresh[path] = err
    if isinstance(fresh[path], BenchError):
        raise fresh[path]
    return fresh[path]


def _check_page(text: str, name: str, page: str | None, root: Path, report: DocsReport, fresh: dict) -> None:
    """One page's blocks into ``report``; ``page`` labels its checked paths (None: the README's, bare)."""
    blocks = generated_blocks(text)
    if len(START.findall(text)) != len(blocks):
        report.problems.append(f"{name}: a `<!-- generated: PATH -->` marker has no `<!-- end generated -->`")
    for block in blocks:
        where = f"{name}:{block.line}"
        report.checked.append(block.path if page is None else f"{block.path} (in {page})")
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
            regenerated = _regenerate(block.path, root, fresh)
        except BenchError as err:
            report.problems.append(f"{where}: cannot re-derive {block.path}: {err}")
            continue
        if regenerated is None:
            report.problems.append(f"{where}: no generator re-derives {block.path} from records")
        elif regenerated != content:
            diff = _first_difference(regenerated, content)
            problem = f"{block.path}: differs from what the records give today at {diff}"
            if problem not in report.problems:
                report.problems.append(problem)
