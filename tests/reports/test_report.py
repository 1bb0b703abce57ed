"""``bench report``: one self-contained HTML page, read as HTML and rendered by headless Chromium."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_plots import SWEEP, make_record, save_probs, store

from bench.cli.commands import main
from bench.reports.html import median_runs
from bench.reports.leaderboard import leaderboard
from bench.reports.render import ci_column, table_notes
from bench.runs.record import RunRecord, load_records

XRAY = [make_record("tiny_net", 0, acc=0.6, ms=0.5, dataset="xray"), make_record("big_net", 0, acc=0.7, dataset="xray")]
OK_ROWS = {"derm": 4, "xray": 2}  # backbone rows with a finished run: one median run's two figures each


class Page(HTMLParser):
    """The parts of the page the tests look at: tables (rows of cell texts), images, headings, tags."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[dict[str, str]] = []
        self.headings: list[str] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None
        self._heading = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs))
        self._heading = tag == "h2"

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._heading:
            self.headings.append(data.strip())
            self._heading = False


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """`bench report`, in-process, over two datasets' stored records (one failed run among them).

    Module-scoped: drawing the figures is the slow part, and the tests only read what it wrote.
    """
    results = tmp_path_factory.mktemp("report") / "results"
    save_probs(store(results, [*SWEEP, *XRAY]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["bench", "report", "--results-dir", str(results)])
        main()
    return results / "report.html"


def test_report_writes_page_tables_and_plots(report):
    results = report.parent
    for dataset in OK_ROWS:
        for suffix in ("md", "csv", "tex"):
            assert (results / "leaderboards" / f"{dataset}.{suffix}").stat().st_size > 100
        for suffix in ("png", "svg"):
            assert (results / "plots" / f"{dataset}-tradeoff.{suffix}").stat().st_size > 10_000
    assert len(list((results / "plots" / "runs").rglob("*.png"))) == 2 * 8  # every finished run, not only medians


def test_report_is_self_contained(report):
    """Nothing to fetch: no script, stylesheet link or remote URL; every image is an embedded, valid PNG."""
    text = report.read_text()
    page = Page(text)
    assert not {"script", "link", "iframe", "object"} & page.tags
    assert not re.search(r"(src|href)\s*=|url\(", re.sub(r'<img [^>]*src="data:image/png;base64,[^"]*"', "", text))
    assert len(page.images) == 2 + 2 * sum(OK_ROWS.values())  # trade-off per dataset + per-run figures
    for img in page.images:
        assert img["alt"]
        png = base64.b64decode(img["src"].removeprefix("data:image/png;base64,"), validate=True)
        with Image.open(io.BytesIO(png)) as decoded:
            assert decoded.format == "PNG" and min(decoded.size) > 200


def test_report_shows_every_leaderboard_and_provenance(report):
    page = Page(report.read_text())
    assert page.headings == ["Provenance", "derm", "xray"]
    provenance, derm, xray = page.tables
    assert dict(provenance)["runs"] == "9 (1 failed)" and dict(provenance)["devices that ran them"] == "cpu-x"
    assert "commit" in " ".join(row[0] for row in provenance)
    header, *rows = derm
    assert header[:2] == ["rank", "backbone"]
    by_backbone = {row[1]: row for row in rows}
    assert set(by_backbone) == {"big_net", "small_net", "tiny_net", "clunky_net", "broken_net", "majority"}
    assert by_backbone["small_net"][0].endswith("★") and not by_backbone["clunky_net"][0].endswith("★")
    assert by_backbone["broken_net"][header.index("n")] == "0 (+1 failed)"
    assert {row[1] for row in xray[1:]} == {"tiny_net", "big_net", "majority"}
    assert "DivergedError: loss became nan" in report.read_text()  # the failed run's reason is shown
    assert "not comparable" not in report.read_text()  # one device


def test_report_shows_the_test_image_ci_and_the_ties_of_the_leaderboard_files(report):
    """The page's table carries the same CI cells, ≈ marks and notes as the Markdown/CSV leaderboards."""
    page = Page(report.read_text())
    header, *rows = page.tables[1]  # derm
    ci = header.index(ci_column("balanced_accuracy"))
    csv = pd.read_csv(report.parent / "leaderboards" / "derm.csv").set_index("backbone")
    for row in rows:
        expected = csv.loc[row[1]]
        assert ("≈" in row[0]) == expected["tied"], row
        if np.isnan(expected["balanced_accuracy_ci95_low"]):
            assert row[ci] == "n/a"
        else:
            assert (
                row[ci]
                == f"[{expected['balanced_accuracy_ci95_low']:.3f}, {expected['balanced_accuracy_ci95_high']:.3f}]"
            )
    assert csv["tied"].any() and not csv["tied"].all()  # the case shows both
    table = leaderboard(load_records(report.parent), "derm")
    for note in table_notes(table):
        assert html.escape(note) in report.read_text()


def test_report_warns_about_mixed_latency_devices(tmp_path, monkeypatch):
    store(tmp_path / "results", [make_record("a"), make_record("b", device="H100")])
    monkeypatch.setattr(sys, "argv", ["bench", "report", "--results-dir", str(tmp_path / "results")])
    main()
    assert "Latencies come from different devices (H100 / cpu-x): they are not comparable." in (
        (tmp_path / "results" / "report.html").read_text()
    )


def _run(backbone: str, seed: int, acc: float | None) -> RunRecord:
    rec = make_record(backbone, seed)
    rec.test["accuracy"] = acc  # None: stored NaN
    return rec


@pytest.mark.parametrize(
    "scores, expected_seed",
    [
        ([0.9], 0),
        ([0.9, 0.5, 0.7], 2),  # the middle score, not the best
        ([0.6, 0.8], 0),  # even count: the lower middle
        ([0.9, 0.8, 0.7, 0.6], 2),
        ([None, 0.5, 0.7], 2),  # NaN sorts last: 0.5, 0.7, NaN
    ],
)
def test_median_run_per_row(scores, expected_seed):
    records = [_run("net", seed, acc) for seed, acc in enumerate(scores)]
    (chosen,) = median_runs(records, leaderboard(records, "derm", "accuracy"), "accuracy")
    assert chosen.spec.seed == expected_seed


def test_median_runs_follow_the_leaderboard_order_and_skip_failures():
    records = [_run("low", 0, 0.5), _run("high", 0, 0.9), make_record("broken", status="failed")]
    chosen = median_runs(records, leaderboard(records, "derm", "accuracy"), "accuracy")
    assert [r.spec.backbone for r in chosen] == ["high", "low"]


def test_plot_and_report_refuse_bad_options_in_one_line(tmp_path, monkeypatch, capsys):
    store(tmp_path / "results", XRAY)
    for args, message in [
        (("plot", "--metric", "f1"), "unknown metric 'f1'"),
        (("report", "--latency", "p90"), "unknown latency measure 'p90'; choose one of p50, throughput"),
        (("report", "--results-dir", "empty"), "no run records under empty/runs"),
    ]:
        monkeypatch.setattr(sys, "argv", ["bench", *args, *(() if "empty" in args else ("--results-dir", "results"))])
        monkeypatch.chdir(tmp_path)
        with pytest.raises(SystemExit) as exit_info:
            main()
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results" / "plots").exists()  # refused before drawing anything


CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
NO_CHROMIUM = "no Chromium on PATH (chromium, chromium-browser or google-chrome: apt-get install -y chromium)"
# Measures in the browser, after layout, each table against the box it sits in, and the page against the window;
# appended to a copy of the page (the report itself holds no script), and read back from the dumped DOM.
MEASURE = """<script>
const tables = [...document.querySelectorAll("table")].map((t) => ({
  id: t.className, scroll: t.scrollWidth, box: t.parentElement.clientWidth,
  box_scroll: t.parentElement.scrollWidth,
}));
const page = {scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth};
const out = document.createElement("pre");
out.id = "measured";
out.textContent = JSON.stringify({tables, page, window: window.innerWidth});
document.body.appendChild(out);
</script>"""


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a file URL, offline: no network, no updates, no first-run UI."""
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def saturated_pixels(png: Path) -> int:
    """Pixels with a clear colour: the plots have them, the page's own grey/black text and tables do not."""
    with Image.open(png) as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    return int(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 60).sum())


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_report_renders_in_headless_chromium(report, tmp_path):
    """The browser's DOM holds the tables and images, and its screenshot shows the plot (vs a control without it)."""
    dom = Page(chromium(report, tmp_path / "profile", "--dump-dom").stdout)
    assert len(dom.tables) == 3 and len(dom.images) == 2 + 2 * sum(OK_ROWS.values())
    assert any(row[1:2] == ["small_net"] for row in dom.tables[1])

    shots = {}
    control = tmp_path / "no-images.html"
    control.write_text(re.sub(r"<img [^>]*>", "", report.read_text()))
    for name, page in (("report", report), ("control", control)):
        shots[name] = tmp_path / f"{name}.png"
        chromium(page, tmp_path / "profile", "--window-size=1280,1800", f"--screenshot={shots[name]}")
    with Image.open(shots["report"]) as shot:
        assert shot.size == (1280, 1800)
    assert saturated_pixels(shots["report"]) > 2000  # the trade-off plot's coloured markers and front
    assert saturated_pixels(shots["control"]) < 50  # the page alone is grey: the colour came from the image


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_every_table_is_whole_in_a_1400px_window(report, tmp_path):
    """At 1400x900 no table is wider than its box (nothing behind a horizontal scroll), nor the page than the window.

    The screenshot is kept under the test's tmp folder, to look at when this fails.
    """
    measured = tmp_path / "measured.html"
    measured.write_text(report.read_text().replace("</body>", f"{MEASURE}</body>"))
    dom = chromium(measured, tmp_path / "profile", "--window-size=1400,900", "--dump-dom").stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run"
    sizes = json.loads(html.unescape(found[1]))
    assert sizes["window"] == 1400
    assert [t["id"] for t in sizes["tables"]] == ["provenance", "dataframe leaderboard", "dataframe leaderboard"]
    for table in sizes["tables"]:
        assert table["scroll"] <= table["box"] and table["box_scroll"] <= table["box"], table
    assert sizes["page"]["scroll"] <= sizes["page"]["client"], sizes["page"]
    shot = tmp_path / "report-1400.png"
    chromium(report, tmp_path / "profile", "--window-size=1400,900", f"--screenshot={shot}")
    with Image.open(shot) as image:
        assert image.size == (1400, 900)
