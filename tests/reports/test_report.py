"""``bench report``: one self-contained HTML page, read as HTML and rendered by headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text
from PIL import Image
from test_plots import SWEEP, make_record, save_probs, store

from bench.cli.commands import main
from bench.reports.html import median_runs
from bench.reports.html_blocks import FIGURE_TEXT_PT, READABLE_PX, png_size, readable_width
from bench.reports.leaderboard import dataset_experiments, leaderboard
from bench.reports.plots import confusion_figure, curves_figure
from bench.reports.ranking import compare
from bench.reports.ranking_files import draw
from bench.reports.reliability import reliability_figure
from bench.reports.render import ci_column, table_notes
from bench.runs.record import RunRecord, load_records

XRAY = [make_record("tiny_net", 0, acc=0.6, ms=0.5, dataset="xray"), make_record("big_net", 0, acc=0.7, dataset="xray")]
OK_ROWS = {"derm": 4, "xray": 2}  # backbone rows with a finished run: one median run's two figures each
# a trade-off plot and a reliability diagram (the runs saved their test probabilities) per dataset, per-run figures
IMAGES = 2 * len(OK_ROWS) + 2 * sum(OK_ROWS.values())


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
    """Nothing to fetch: no script, stylesheet link or remote URL (links go to the page's own sections only); every
    image is an embedded, valid PNG."""
    text = report.read_text()
    page = Page(text)
    assert not {"script", "link", "iframe", "object"} & page.tags
    own = re.sub(r'<img [^>]*src="data:image/png;base64,[^"]*"|href="#[\w-]+"', "", text)
    assert not re.search(r"(src|href)\s*=|url\(", own)
    ids = set(re.findall(r' id="([^"]+)"', text))
    assert set(re.findall(r'href="#([^"]+)"', text)) <= ids  # every section link lands
    assert len(page.images) == IMAGES
    for img in page.images:
        assert img["alt"]
        png = base64.b64decode(img["src"].removeprefix("data:image/png;base64,"), validate=True)
        with Image.open(io.BytesIO(png)) as decoded:
            assert decoded.format == "PNG" and min(decoded.size) > 200


def test_report_opens_with_the_answer_and_ends_with_provenance(report):
    """The answer first (no ranking across two datasets that share two rows: the reason instead), then each
    dataset, calibration (the runs saved test probabilities; no subgroup metadata, no eval sets), provenance."""
    text = report.read_text()
    page = Page(text)
    assert page.headings == ["The answer", "derm", "xray", "Calibration", "Provenance"]
    answer = text[text.index('<section id="answer">') : text.index('<h2 id="dataset-derm">')]
    assert re.sub(r"<[^>]+>", "", answer).count(" leads with balanced_accuracy ") == 2
    assert "No ranking across datasets: only 2 rows have balanced_accuracy on every dataset" in answer
    assert text.index('<h2 id="provenance">') > text.index('<h2 id="calibration">')


def test_report_shows_every_leaderboard_and_provenance(report):
    page = Page(report.read_text())
    derm, xray, *calibration, provenance = page.tables
    assert len(calibration) == 2  # one per dataset
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
    header, *rows = page.tables[0]  # derm
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
    accuracy = math.nan if acc is None else acc  # None: stored NaN
    rec.test = dataclasses.replace(rec.test, values={**rec.test.values, "accuracy": accuracy})
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
    assert len(dom.tables) == 5 and len(dom.images) == IMAGES
    assert any(row[1:2] == ["small_net"] for row in dom.tables[0])

    shots = {}
    control = tmp_path / "no-images.html"
    control.write_text(re.sub(r"<img [^>]*>|</?a\b[^>]*>", "", report.read_text()))  # links are blue: out too
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
    assert [t["id"] for t in sizes["tables"]] == [
        *["leaderboard"] * 2,
        *["section calibration"] * 2,
        "provenance",
    ]
    for table in sizes["tables"]:
        assert table["scroll"] <= table["box"] and table["box_scroll"] <= table["box"], table
    assert sizes["page"]["scroll"] <= sizes["page"]["client"], sizes["page"]
    shot = tmp_path / "report-1400.png"
    chromium(report, tmp_path / "profile", "--window-size=1400,900", f"--screenshot={shot}")
    with Image.open(shot) as image:
        assert image.size == (1400, 900)


# Opens every <details>, scrolls each table's box to its end and reads where its last header cell lands, reads each
# figure's shown width against its pixels, and the computed font size of every piece of text on the page.
NARROW = """<script>
document.querySelectorAll("details").forEach((d) => { d.open = true; });
const boxes = [...document.querySelectorAll("table")].map((t) => {
  const box = t.parentElement, head = t.rows[0].cells, last = head[head.length - 1];
  const out = {id: t.className, scroll: box.scrollWidth, client: box.clientWidth,
    overflow: getComputedStyle(box).overflowX};
  box.scrollLeft = box.scrollWidth;
  const b = box.getBoundingClientRect(), l = last.getBoundingClientRect();
  return {...out, last_left: l.left, last_right: l.right, box_left: b.left, box_right: b.right};
});
const figures = [...document.querySelectorAll("img")].map((img) => ({
  alt: img.alt, shown: img.getBoundingClientRect().width, pixels: +img.getAttribute("width"),
  box: img.parentElement.clientWidth, overflow: getComputedStyle(img.parentElement).overflowX}));
const texts = [];
const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walk.nextNode()) {
  const node = walk.currentNode, tag = node.parentElement.tagName;
  if (node.textContent.trim() && tag !== "SCRIPT") {
    const px = parseFloat(getComputedStyle(node.parentElement).fontSize);
    texts.push({tag, px, text: node.textContent.trim().slice(0, 60)});
  }
}
const out = document.createElement("pre");
out.id = "measured";
out.textContent = JSON.stringify({boxes, figures, texts, window: window.innerWidth,
  page: {scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth}});
document.body.appendChild(out);
</script>"""


def measure(report: Path, tmp_path: Path, width: int) -> dict:
    """:data:`NARROW`'s measurements of ``report`` in a ``width`` px wide window."""
    measured = tmp_path / "narrow.html"
    measured.write_text(report.read_text().replace("</body>", f"{NARROW}</body>"))
    dom = chromium(measured, tmp_path / "profile", f"--window-size={width},900", "--dump-dom").stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run"
    return json.loads(html.unescape(found[1]))


def png_dpis(report: Path) -> list[float]:
    """The dpi of each embedded PNG, in page order."""
    return [
        png_size(base64.b64decode(data))[2]
        for data in re.findall(r'src="data:image/png;base64,([^"]*)"', report.read_text())
    ]


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.parametrize("width", [800, 1280])
def test_a_narrow_window_scrolls_tables_in_their_box_and_keeps_text_readable(report, tmp_path, width):
    """At 800 px the leaderboards are wider than the window: each scrolls in its own box, whose end shows the last
    column whole, and the page itself does not scroll sideways. No text on the page is under 12 px, nor in any figure
    (its smallest text, FIGURE_TEXT_PT at the PNG's dpi, scaled as shown), at 800 or 1280 px."""
    sizes = measure(report, tmp_path, width)
    assert sizes["window"] == width
    assert sizes["page"]["scroll"] <= sizes["page"]["client"], sizes["page"]
    widest = max(sizes["boxes"], key=lambda b: b["scroll"])
    if width == 800:
        assert widest["scroll"] > widest["client"] and widest["id"] == "leaderboard"  # the case is there
    for box in sizes["boxes"]:
        assert box["overflow"] in ("auto", "scroll"), box
        assert box["box_left"] - 0.5 <= box["last_left"] and box["last_right"] <= box["box_right"] + 0.5, box
    smallest = min(sizes["texts"], key=lambda t: t["px"])
    assert smallest["px"] >= READABLE_PX, smallest
    assert any(t["tag"] == "FIGCAPTION" for t in sizes["texts"]) and any(t["tag"] == "SUMMARY" for t in sizes["texts"])
    figures = sizes["figures"]
    assert len(figures) == IMAGES
    for shown, dpi in zip(figures, png_dpis(report), strict=True):
        text_px = FIGURE_TEXT_PT * dpi / 72 * shown["shown"] / shown["pixels"]
        assert text_px >= READABLE_PX - 0.05, (shown, dpi, text_px)
        assert shown["shown"] <= shown["box"] + 0.5 or shown["overflow"] == "auto", shown


def _font_sizes(fig) -> list[float]:
    return [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def test_figure_text_pt_is_the_smallest_text_of_every_figure_the_report_embeds(report):
    """The readable width of a figure (html_blocks.readable_width) assumes no text under FIGURE_TEXT_PT: the
    trade-off plot (from its SVG, which keeps text as text), the per-run figures, the reliability diagrams, the
    robustness plot and the critical-difference diagram hold to it."""
    svg = (report.parent / "plots" / "derm-tradeoff.svg").read_text()
    assert min(float(v) for v in re.findall(r"font-size: ([\d.]+)px", svg)) >= FIGURE_TEXT_PT
    records = [r for r in load_records(report.parent) if r.ok]
    table = leaderboard(records, "derm", columns="calibration")
    experiments = {e.id: e for e in dataset_experiments(records, "derm")}
    figures = [confusion_figure(records[0]), curves_figure(records[0]), reliability_figure(table, experiments, "derm")]
    for fig in figures:
        assert min(_font_sizes(fig)) >= FIGURE_TEXT_PT
    values = pd.DataFrame({"a": [0.9, 0.8, 0.7], "b": [0.8, 0.7, 0.9], "c": [0.1, 0.2, 0.3]}, ["x", "y", "z"])
    cd = draw(compare("accuracy", "mean score", values, higher_is_better=True), report.parent / "cd-check")
    cd_svg = next(p for p in cd if p.suffix == ".svg").read_text()
    assert min(float(v) for v in re.findall(r"font-size: ([\d.]+)px", cd_svg)) >= FIGURE_TEXT_PT


def test_readable_width_scales_a_figure_so_its_smallest_text_is_12px():
    # 7 pt at 150 dpi is 14.58 px in the PNG: shown at 12/14.58 of its pixels; at 72 dpi 7 pt is 7 px: 12/7 of them
    assert readable_width(1457, 150) == 1199 and readable_width(700, 72) == 1200


def test_report_out_writes_elsewhere_and_leaves_the_results_folder_alone(tmp_path, monkeypatch):
    results = tmp_path / "results"
    save_probs(store(results, XRAY))
    before = sorted(p.relative_to(results) for p in results.rglob("*"))
    monkeypatch.setattr(sys, "argv", ["bench", "report", "--results-dir", str(results), "--out", str(tmp_path / "o")])
    main()
    assert sorted(p.relative_to(results) for p in results.rglob("*")) == before
    assert (tmp_path / "o" / "report.html").stat().st_size > 10_000
    assert (tmp_path / "o" / "leaderboards" / "xray.md").is_file() and (tmp_path / "o" / "plots").is_dir()
