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
from factories import make_record, write_run
from rich.console import Console
from rich.table import Table

from bench.cli.output import show
from bench.evaluation.spread import format_mean_std
from bench.reports.leaderboard import leaderboard
from bench.reports.render import rich_table

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


def test_leaderboard_in_an_80_column_terminal_shows_whole_numbers(results):
    """A terminal (rich's TTY_COMPATIBLE) of 80 columns: columns left out and named, none cut."""
    out = ANSI.sub("", bench("leaderboard", "--results-dir", str(results), TTY_COMPATIBLE="1").stdout)
    assert "…" not in out and "not shown at 80 columns" in out
    assert max(len(line) for line in out.splitlines() if "│" in line or "┃" in line) <= 80
    table = pd.read_csv(results / "leaderboards" / "d.csv")
    for row in table.itertuples():
        assert row.backbone in out
        assert format_mean_std(row.balanced_accuracy_mean, row.balanced_accuracy_std) in out


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
    console = Console(file=io.StringIO(), force_terminal=True, width=30, color_system=None)
    show(table, out=console)
    assert "- tf_efficientnet_lite0" in console.file.getvalue() and "score: 0.8123" in console.file.getvalue()


def test_version_and_help():
    assert re.fullmatch(r"backbone-bench \S+\n", bench("--version").stdout)
    assert "The ``bench`` command" not in bench("--help").stdout
    assert "[[published]]" in bench("reproduction", "--help", columns=200).stdout
