"""``bench report``: one self-contained HTML page with every dataset's trade-off plot and leaderboard.

Self-contained means it opens from disk, offline, years later and anywhere it is mailed: figures are
embedded as base64 PNG ``data:`` URIs, the CSS is inline, and there is no script, font, or link to
fetch. The page is rebuilt from the stored records alone, as are the figures
(:func:`bench.reports.plots.plot_all`) and the Markdown/CSV/LaTeX leaderboards it writes on the way.

Every table fits a 1400 px window whole (headers wrap, even inside a long metric name; cells never do,
except the device names at the end), checked in headless Chromium by ``tests/reports/test_report.py``; the
horizontal scroll is left only for narrower windows.

Per-run figures would make the page grow with every seed, so it carries one run per leaderboard row
(the median seed on the chosen metric: a typical run, not the luckiest); all of them are on disk under
``plots/runs/``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.environment import git_commit
from bench.files import atomic_write_bytes
from bench.reports.latency_pass import load_latency_passes
from bench.reports.leaderboard import MAJORITY_PROTOCOL, dataset_experiments, latency_axis, latency_devices
from bench.reports.plots import Plotted, RunFigures, plot_all
from bench.reports.render import display_frame, table_notes, write_leaderboard
from bench.runs.record import RunRecord, device_label

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1800px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.8rem; margin: 0.8rem 0; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.35rem; text-align: right; }
th { background: #f2f2f2; white-space: normal; overflow-wrap: break-word; vertical-align: bottom; }
td { white-space: nowrap; font-variant-numeric: tabular-nums; }
table.leaderboard td { font-size: 0.75rem; }
table.leaderboard td:nth-child(2), table.leaderboard td:nth-child(3) { font-size: 0.8rem; }
td:nth-child(2), td:nth-child(3), td:last-child,
.leaderboard th:nth-child(2), .leaderboard th:nth-child(3), .leaderboard th:last-child { text-align: left; }
table.leaderboard td:last-child { white-space: normal; min-width: 6rem; }
table.provenance td, table.provenance th { text-align: left; white-space: normal; }
img { max-width: 100%; height: auto; }
.wide { overflow-x: auto; }
.note { color: #555; font-size: 0.85rem; }
.warning { color: #b00; font-weight: bold; }
.runs { display: flex; flex-wrap: wrap; gap: 1rem; }
.runs figure { margin: 0; max-width: 100%; }
.runs img.confusion { width: 320px; } .runs img.curves { width: 720px; }
figcaption { font-size: 0.8rem; color: #555; }
"""


@dataclass(frozen=True)
class Report:
    html: Path
    leaderboards: list[Path]
    plotted: Plotted


def build_report(records: list[RunRecord], results_dir: Path, metric: str, latency: str) -> Report:
    """Figures, leaderboard files and ``results_dir/report.html`` from ``records``."""
    plotted = plot_all(records, metric, latency, results_dir / "plots", load_latency_passes(results_dir))
    tables_dir = results_dir / "leaderboards"
    written = [p for d, t in plotted.tables.items() for p in write_leaderboard(t, tables_dir, d)]
    path = results_dir / "report.html"
    atomic_write_bytes(path, render_html(records, plotted, metric, latency).encode())
    return Report(path, written, plotted)


def render_html(records: list[RunRecord], plotted: Plotted, metric: str, latency: str) -> str:
    axis = latency_axis(latency)
    body = [
        "<h1>backbone-bench report</h1>",
        f'<p class="sub">Test {_e(metric)} against {_e(axis.label)}, mean ± sample std over seeds; the tables '
        "add its 95% CI over test images and mark the rows tied with rank 1.</p>",
        _provenance(records),
        *(_dataset_section(d, t, records, plotted, metric) for d, t in plotted.tables.items()),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>backbone-bench report</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _e(text: object) -> str:
    return html.escape(str(text))


def _img(path: Path, alt: str, css_class: str = "") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="{css_class}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _provenance(records: list[RunRecord]) -> str:
    """Where the numbers come from: code, machines, library versions, dates."""
    env = [r.environment for r in records]
    versions = sorted({f"torch {e.versions.get('torch')}, timm {e.versions.get('timm')}" for e in env})
    created = sorted(r.created for r in records)
    failed = sum(r.status == "failed" for r in records)
    rows = {
        "report generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "harness commit (now)": git_commit() or "unknown",
        "commits behind the runs": ", ".join(sorted({e.git_commit or "unknown" for e in env})),
        "runs": f"{len(records)} ({failed} failed)",
        "runs recorded": f"{created[0]} to {created[-1]}",
        "devices that ran them": ", ".join(sorted({device_label(e.device) for e in env})),
        "library versions": "; ".join(versions),
    }
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows.items())
    return f'<h2>Provenance</h2>\n<table class="provenance">{cells}</table>'


def _dataset_section(dataset: str, table: pd.DataFrame, records: list[RunRecord], plotted: Plotted, metric: str) -> str:
    parts = [f'<h2 id="{_e(dataset)}">{_e(dataset)}</h2>']
    devices = latency_devices(table)
    if len(devices) > 1:
        parts.append(
            f'<p class="warning">Latencies come from different devices ({_e(" / ".join(devices))}): '
            "they are not comparable.</p>"
        )
    tradeoff = [p for p in plotted.tradeoff[dataset] if p.suffix == ".png"]
    if tradeoff:
        parts.append(_img(tradeoff[0], f"{dataset}: test {metric} against latency", "tradeoff"))
    else:
        parts.append('<p class="note">No finished run with a latency: nothing to plot.</p>')
    parts.append(f'<div class="wide">{_leaderboard_html(table)}</div>')
    parts.append(f'<p class="note">Sorted by {_e(metric)}.</p>')
    parts.extend(f'<p class="note">{_e(note)}</p>' for note in table_notes(table))
    parts.append(_failures(dataset, records))
    parts.append(_run_figures(table, records, plotted.runs, metric))
    return "\n".join(parts)


def _leaderboard_html(table: pd.DataFrame) -> str:
    """The displayed table, its headers breakable after each ``_`` (``<wbr>``): a header such as
    ``balanced_accuracy 95% CI`` then wraps at words and underscores, never mid-word, and its column
    is as narrow as its cells."""
    shown = display_frame(table).to_html(index=False, border=0, classes="leaderboard")
    return re.sub(r"<th>(.*?)</th>", lambda m: f"<th>{m[1].replace('_', '_<wbr>')}</th>", shown)


def _failures(dataset: str, records: list[RunRecord]) -> str:
    failed = [r for r in records if r.spec.dataset == dataset and r.status == "failed"]
    if not failed:
        return ""
    items = "".join(
        f"<li>{_e(r.spec.backbone)} ({_e(r.protocol_label)}, seed {r.spec.seed}): {_e(r.error)}</li>" for r in failed
    )
    return f'<p class="note">Failed runs:</p><ul class="note">{items}</ul>'


def median_runs(records: list[RunRecord], table: pd.DataFrame, metric: str) -> list[RunRecord]:
    """Per backbone row of ``table``, in its order, the finished run of its experiment with the median ``metric``.

    With an even number of seeds the lower of the two middle runs is taken; NaN scores sort last.
    """
    datasets = set(table["dataset"])
    by_id = {e.id: e for d in datasets for e in dataset_experiments(records, d)}
    chosen = []
    for exp_id in table.loc[table["protocol"] != MAJORITY_PROTOCOL, "experiment"]:
        runs = sorted(by_id[exp_id].ok, key=lambda r: (math.isnan(r.score(metric)), r.score(metric)))
        if runs:
            chosen.append(runs[(len(runs) - 1) // 2])
    return chosen


def _run_figures(table: pd.DataFrame, records: list[RunRecord], figures: dict[str, RunFigures], metric: str) -> str:
    runs = median_runs(records, table, metric)
    if not runs:
        return ""
    blocks = []
    for r in runs:
        figs = figures[r.key]
        caption = f"{r.spec.backbone} · {r.protocol_label} · seed {r.spec.seed} ({metric} {r.score(metric):.3f})"
        blocks.append(
            f"<figure>{_img(figs.confusion, f'confusion matrix, {caption}', 'confusion')}"
            f"{_img(figs.curves, f'training curves, {caption}', 'curves')}"
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    return (
        "<details><summary>Per-run figures: confusion matrix and training curves of the median seed of each row"
        f'</summary><div class="runs">{"".join(blocks)}</div></details>'
    )
