"""What reaches the reader: every name and figure whole when piped or at 80 columns, and --format for scripts."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from console import run_bench
from factories import make_record, write_run
from rich.console import Console
from rich.table import Table

from bench.cli.output import show, table_frame
from bench.evaluation.spread import format_mean_std
from bench.reports.leaderboard import leaderboard
from bench.reports.render import rich_table
from bench.table_columns import Keep, add_column

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # a terminal's styles, between the characters a reader sees
LONG_NAMES = ("tf_efficientnet_lite0", "inception_resnet_v2", "efficientnet_b0")


def bench(*args: str, columns: int = 80, **env: str) -> subprocess.CompletedProcess:
    """The console entry point with stdout a pipe, as in ``bench ... | grep``."""
    proc = subprocess.run(
        [sys.executable, "-c", "from bench.cli.commands import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": str(columns), **env},
    )
    assert proc.returncode == 0, f"bench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def results(tmp_path):
    """Stored records of three long-named backbones, two seeds each, on dataset ``d``."""
    for i, name in enumerate(LONG_NAMES):
        for seed in (0, 1):
            write_run(make_record(name, seed, acc=0.61 + 0.1 * i + 0.013 * seed, ms=1.5 + i), tmp_path / "results")
    return tmp_path / "results"


def _figures(csv_path) -> set[str]:
    """The seed means of every headline metric as the tables print them, from the numeric CSV written."""
    table = pd.read_csv(csv_path)
    means = [c for c in table.columns if c.endswith("_mean") and table[c].notna().any()]
    return {f"{v:.3f}" for c in means for v in table[c].dropna()} | set(table["backbone"])


def test_piped_leaderboard_holds_every_name_and_figure_whole(results):
    out = bench("leaderboard", "--results-dir", str(results)).stdout
    assert "…" not in out
    expected = _figures(results / "leaderboards" / "d.csv")
    assert set(LONG_NAMES) <= expected
    missing = {f for f in expected if not re.search(rf"(?<![\w.]){re.escape(f)}(?![\w])", out)}
    assert not missing, out


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_a_terminal_keeps_the_sort_metric_its_ci_latency_and_the_pareto_mark(results, columns):
    """A terminal (rich's TTY_COMPATIBLE) of 80 columns and up: what a reader asks the table (is it accurate,
    how sure, how fast, on the front) stays; descriptive columns are what is left out, and named."""
    out = ANSI.sub("", bench("leaderboard", "--results-dir", str(results), TTY_COMPATIBLE="1", columns=columns).stdout)
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= columns
    left_out = " ".join(out.split(f"not shown at {columns} columns:")[1:])
    for kept in ("balanced_accuracy (seeds", "95% CI", "latency b1"):
        assert kept not in left_out, left_out
    assert "written:" not in out  # stderr's
    table = pd.read_csv(results / "leaderboards" / "d.csv")
    for row in table[table["latency_ms"].notna()].itertuples():  # the majority baseline has no latency
        assert row.backbone in out and f"{row.latency_ms:.2f}" in out
        assert format_mean_std(row.balanced_accuracy_mean, row.balanced_accuracy_std) in out
        low, high = row.balanced_accuracy_ci95_low, row.balanced_accuracy_ci95_high
        assert ("n/a" if pd.isna(low) else f"[{low:.3f}, {high:.3f}]") in out
    assert "★" in out


@pytest.mark.parametrize("width", [40, 80, 120])
def test_a_narrow_terminal_never_cuts_a_cell(results, width):
    from bench.runs.record import load_records

    table = leaderboard(load_records(results), "d", "auc")
    console = Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)
    show(rich_table(table, "d"), out=console)
    text = console.file.getvalue()
    assert "…" not in text
    assert max((len(line) for line in text.splitlines() if "│" in line or "┃" in line), default=0) <= width
    for name, mean, std in zip(table["backbone"], table["auc_mean"], table["auc_std"], strict=True):
        assert name in text and format_mean_std(mean, std) in text  # the sort metric is among what is kept


def test_leaderboard_formats_for_scripts(results):
    as_json = bench("leaderboard", "--results-dir", str(results), "--format", "json")
    rows = json.loads(as_json.stdout)  # stdout holds the data alone; "written:" went to stderr
    assert "written:" in as_json.stderr and {r["backbone"] for r in rows} >= set(LONG_NAMES)
    as_csv = pd.read_csv(io.StringIO(bench("leaderboard", "--results-dir", str(results), "--format", "csv").stdout))
    assert as_csv.equals(pd.read_csv(results / "leaderboards" / "d.csv"))
    md = bench("leaderboard", "--results-dir", str(results), "--format", "md").stdout
    assert all(f"| {name}" in md for name in LONG_NAMES)


@pytest.fixture
def tiny_registry(project):
    """The project's registry: two of timm's test models (counted in well under a second), added to the shipped."""
    for path in (project / "backbones").glob("*.toml"):
        path.unlink()
    for name, title in (("test_resnet", "timm's test ResNet"), ("test_efficientnet", "timm's test EfficientNet")):
        (project / "backbones" / f"{name}.toml").write_text(f'name = "{name}"\ntitle = "{title}"\n')
    return project


@pytest.fixture(scope="module")
def figures_cache(tmp_path_factory) -> Path:
    """One cache for the module: the shipped backbones' figures are counted once (each entry's file is its own)."""
    return tmp_path_factory.mktemp("figures")


def test_piped_backbone_list_is_whole_and_its_figures_are_cached(tiny_registry, figures_cache):
    env = {"BENCH_HOME": str(tiny_registry), "BENCH_CACHE": str(figures_cache)}
    data = json.loads(bench("list", "backbones", "--resolution", "32", "--format", "json", **env).stdout)
    names = {row["name"] for row in data}
    assert {"test_resnet", "test_efficientnet", "resnet18", "vgg16"} <= names  # BENCH_HOME's and the shipped
    cached = {p.name.split("-32-")[0] for p in (figures_cache / "backbone-figures").glob("*-32-*.json")}
    assert cached >= names
    out = bench("list", "backbones", "--resolution", "32", **env).stdout
    for row in data:
        assert row["name"] in out and f"{row['params_m']:.2f}" in out and f"{row['gmacs']:.3f}" in out
    csv = pd.read_csv(io.StringIO(bench("list", "backbones", "--resolution", "32", "--format", "csv", **env).stdout))
    assert list(csv["name"]) == [row["name"] for row in data]


def test_an_edited_entry_is_counted_again(tiny_registry, figures_cache):
    env = {"BENCH_HOME": str(tiny_registry), "BENCH_CACHE": str(figures_cache)}
    listing = ("list", "backbones", "--resolution", "32", "--format", "json")
    first = {row["name"]: row for row in json.loads(bench(*listing, **env).stdout)}
    (tiny_registry / "backbones" / "test_resnet.toml").write_text('name = "test_resnet"\ntitle = "renamed"\n')
    again = {row["name"]: row for row in json.loads(bench(*listing, **env).stdout)}
    assert again["test_resnet"]["title"] == "renamed" and again["test_efficientnet"] == first["test_efficientnet"]
    assert len(list((figures_cache / "backbone-figures").glob("test_resnet-32-*.json"))) == 2


def test_piped_latency_holds_every_backbone_and_percentile(tiny_registry, tmp_path):
    args = ("latency", "--backbones", "test_resnet,test_efficientnet", "--resolution", "32", "--batch-sizes", "1")
    args += ("--budget", "0.2", "--device", "cpu", "--results-dir", str(tmp_path / "results"))
    env = {"BENCH_HOME": str(tiny_registry), "BENCH_CACHE": str(tmp_path / "cache")}
    out = bench(*args, **env).stdout
    assert "p99 ms/batch" in out and "…" not in out
    (written,) = (tmp_path / "results" / "latency").glob("*.json")
    for record in json.loads(written.read_text())["records"]:
        assert record["backbone"] in out
        for key in ("ms_per_batch_p50", "ms_per_batch_p99"):
            value = record[key]
            assert (f"{value:.3f}" if value < 1 else f"{value:.2f}") in out
    data = json.loads(bench(*args, "--format", "json", **env).stdout)
    assert {r["backbone"] for r in data} == {"test_resnet", "test_efficientnet"} and "fingerprint.cpu_model" in data[0]


def test_list_datasets_wraps_prose_at_words(project):
    out = ANSI.sub("", bench("list", "datasets", TTY_COMPATIBLE="1").stdout)
    assert "tiny" in out and "dark, bright" in out and "…" not in out


def test_vertical_layout_when_two_columns_do_not_fit():
    table = Table(title="t")
    table.add_column("backbone")
    table.add_column("score")
    table.add_row("tf_efficientnet_lite0", "0.8123")
    console = Console(file=io.StringIO(), force_terminal=True, width=25, color_system=None)  # 29 needed
    show(table, out=console)
    assert "- tf_efficientnet_lite0" in console.file.getvalue() and "score: 0.8123" in console.file.getvalue()


def test_version_and_help():
    assert re.fullmatch(r"backbone-bench \S+\n", bench("--version").stdout)
    assert "The ``bench`` command" not in bench("--help").stdout
    assert "[[published]]" in bench("reproduction", "--help", columns=200).stdout


def keep_table() -> Table:
    """A table of every kind of column: the row's name and its answer, a note of prose, figures, details."""
    table = Table(title="t", caption="c")
    add_column(table, "group", Keep.ANSWER, grouping=True)
    for header, keep in (("name", Keep.ANSWER), ("size", Keep.DETAIL), ("score", Keep.ANSWER)):
        add_column(table, header, keep)
    for header, keep in (("other_score", Keep.FIGURE), ("device", Keep.DETAIL), ("spread", Keep.FIGURE)):
        add_column(table, header, keep)
    add_column(table, "note", Keep.ANSWER, wraps=True)
    table.add_row("g1", "tf_efficientnet_lite0", "4.65", "0.8123", "0.7001", "AMD EPYC 7B13", "0.0123", "")
    table.add_row("g1", "resnet18", "11.69", "0.7999", "0.6502", "AMD EPYC 7B13", "0.0100", "noisy: CV 0.12 > 0.10")
    return table


CELLS = {  # each column's cell in the resnet18 row, to find the column by
    "name": "resnet18",
    "size": "11.69",
    "score": "0.7999",
    "other_score": "0.6502",
    "device": "AMD EPYC 7B13",
    "spread": "0.0100",
    "note": "noisy: CV",  # wrapped at words where narrow
}
# terminal width: the columns shown, in order (None: one block per row); the grouping column never in a terminal
KEPT = {
    120: list(CELLS),
    70: ["name", "score", "other_score", "spread", "note"],
    60: ["name", "score", "other_score", "note"],
    51: ["name", "score", "note"],
    50: None,
}


@pytest.mark.parametrize("width, shown", list(KEPT.items()), ids=[f"{w} columns" for w in KEPT])
def test_a_narrow_terminal_drops_details_then_figures_never_the_answer(width, shown):
    console = Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)
    show(keep_table(), out=console)
    text = console.file.getvalue()
    assert "…" not in text and "g1" not in text and max(len(line) for line in text.splitlines()) <= width
    if shown is None:
        assert "- tf_efficientnet_lite0" in text and "  note: noisy: CV 0.12 > 0.10" in text
        return
    (row,) = [line for line in text.splitlines() if "resnet18" in line]
    assert sorted((c for c in CELLS if CELLS[c] in row), key=lambda c: row.index(CELLS[c])) == shown
    left_out = [c for c in CELLS if c not in shown]
    assert (f"not shown at {width} columns: {', '.join(left_out)} (" in " ".join(text.split())) == bool(left_out)


def test_piped_and_csv_rows_carry_the_grouping():
    piped = Console(file=io.StringIO(), width=80)  # not a terminal: what a pipe gets
    show(keep_table(), out=piped)
    rows = [line for line in piped.file.getvalue().splitlines() if "resnet18" in line or "tf_eff" in line]
    assert len(rows) == 2 and all(line.startswith("│ g1 ") for line in rows)
    assert "noisy: CV 0.12 > 0.10" in rows[1]  # prose unwrapped: one line per row
    assert "group" in table_frame(keep_table()).columns


@pytest.mark.parametrize("fmt", ["table", "md", "csv", "json"])
def test_written_lines_go_to_stderr_in_every_format(monkeypatch, capsys, tmp_path, fmt):
    for dataset in ("d", "e"):
        for i, name in enumerate(LONG_NAMES):
            write_run(make_record(name, 0, acc=0.6 + 0.1 * i, dataset=dataset, ms=1.5 + i), tmp_path / "results")
    out = run_bench(monkeypatch, capsys, "leaderboard", "--results-dir", str(tmp_path / "results"), "--format", fmt)
    assert out.status == 0 and "written:" not in out.stdout
    assert [line.split(", ")[0] for line in out.stderr.splitlines()] == [
        f"written: {tmp_path / 'results' / 'leaderboards' / f'{d}.md'}" for d in ("d", "e")
    ]
    if fmt == "table":  # piped: every row says its dataset, as the csv and json rows do
        for line in out.stdout.splitlines():
            if any(f"│ {name} " in line for name in LONG_NAMES):
                assert line.startswith(("│ d ", "│ e ")), line
