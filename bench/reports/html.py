"""``bench report``: one self-contained HTML page that opens with the answer, then shows how it was reached.

The page, top to bottom:

1. **The answer**, in sentences generated from the records (:mod:`bench.reports.answer`): per dataset the leader,
   the rows not significantly worse than it, the accuracy-latency front with its latencies, and the rows that did
   not learn; then the ranking across datasets (:mod:`bench.reports.ranking`: mean ranks, the Friedman p, and a
   winner only where the tests support one), with its table and critical-difference diagrams;
2. per dataset, the trade-off plot and the whole leaderboard, its notes, failed runs, and the median seed's
   confusion matrix and training curves per row;
3. beyond accuracy, where the records hold it (:mod:`bench.reports.beyond_accuracy`): calibration, subgroups
   (with the subgroup-gap plot), robustness to corruptions (with robustness against latency) and external test
   sets; then data efficiency, per dataset whose records hold several training fractions: the curves of
   :mod:`bench.reports.data_efficiency` and one sentence of what they show;
4. provenance: the harness commit (and whether it had uncommitted changes), the commits behind the runs,
   devices, library versions, dates.

Self-contained means it opens from disk, offline, years later and anywhere it is mailed: figures are
embedded as base64 PNG ``data:`` URIs, the CSS is inline, and there is no script, font, or link to
fetch (only links to the page's own sections). The page is rebuilt from the stored records alone, as are the
figures (:func:`bench.reports.plots.plot_all`) and the Markdown/CSV/LaTeX leaderboards it writes on the way.

Every table fits a 1400 px window whole (headers wrap, even inside a long metric name); a narrower one scrolls
it sideways in its own box, and figures keep their text readable (:mod:`bench.reports.html_blocks`). Both are
checked in headless Chromium by ``tests/reports/test_report.py``.

Per-run figures would make the page grow with every seed, so it carries one run per leaderboard row
(the median seed on the chosen metric: a typical run, not the luckiest); all of them are on disk under
``plots/runs/``.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.environment import git_commit
from bench.files import atomic_write_bytes
from bench.reports.answer import dataset_answer, ranking_answer, rankings_or_reason
from bench.reports.beyond_accuracy import TITLES, Beyond, beyond_accuracy, sections_html
from bench.reports.data_efficiency import data_efficiency, efficiency_sentence, plot_data_efficiency
from bench.reports.html_blocks import CSS, escape, figure, notes, slug, table
from bench.reports.latency_pass import load_latency_passes
from bench.reports.leaderboard import MAJORITY_PROTOCOL, dataset_experiments, latency_axis, latency_devices
from bench.reports.plots import Plotted, RunFigures, plot_all
from bench.reports.ranking import Rankings
from bench.reports.ranking_files import draw
from bench.reports.render import LATENCY_COLUMN, ci_column, display_frame, seeds_column, table_notes, write_leaderboard
from bench.runs.record import RunRecord, device_label

REPORT = "report.html"
EFFICIENCY = "data-efficiency"  # the data-efficiency section's id
TEXT_COLUMNS = ("backbone", "protocol", "source", "latency device")  # a leaderboard's left-aligned columns


@dataclass(frozen=True)
class Report:
    html: Path
    leaderboards: list[Path]
    plotted: Plotted
    beyond: Beyond
    efficiency: dict[str, list[Path]] = field(default_factory=dict)  # by dataset: its data-efficiency files


def build_report(
    records: list[RunRecord], results_dir: Path, metric: str, latency: str, out: Path | None = None
) -> Report:
    """Figures, leaderboard files and ``report.html`` from ``records`` (read from ``results_dir``, whose
    ``bench latency`` passes the tables take), all written under ``out`` (default: ``results_dir``)."""
    out = results_dir if out is None else out
    axis = latency_axis(latency)
    plotted = plot_all(records, metric, latency, out / "plots", load_latency_passes(results_dir))
    tables_dir = out / "leaderboards"
    written = [p for d, t in plotted.tables.items() for p in write_leaderboard(t, tables_dir, d)]
    beyond = beyond_accuracy(records, plotted.tables, axis, out / "plots")
    efficiency = plot_data_efficiency(records, metric, out / "plots")
    rankings = rankings_or_reason(records, metric)
    path = out / REPORT
    atomic_write_bytes(path, render_html(records, plotted, metric, latency, beyond, rankings, efficiency).encode())
    return Report(path, written, plotted, beyond, efficiency)


def render_html(
    records: list[RunRecord],
    plotted: Plotted,
    metric: str,
    latency: str,
    beyond: Beyond | None = None,
    rankings: Rankings | str | None = None,
    efficiency: dict[str, list[Path]] | None = None,
) -> str:
    """The page; ``efficiency``: by dataset, the files :func:`bench.reports.data_efficiency.plot_data_efficiency`
    wrote (its section appears where one has a PNG)."""
    axis = latency_axis(latency)
    beyond = beyond or Beyond({}, ())
    curves = {d: png for d, paths in (efficiency or {}).items() for png in paths if png.suffix == ".png"}
    rankings = rankings_or_reason(records, metric) if rankings is None else rankings
    datasets = list(plotted.tables)
    failed = sum(r.status == "failed" for r in records)
    backbones = len({r.spec.backbone for r in records})
    links = [("answer", "The answer"), *((f"dataset-{slug(d)}", d) for d in datasets)]
    links += [(g, TITLES[g]) for g in beyond.groups] + ([(EFFICIENCY, "Data efficiency")] if curves else [])
    links += [("provenance", "Provenance")]
    body = [
        "<h1>backbone-bench report</h1>",
        f'<p class="sub">{len(records)} runs ({failed} failed) of {backbones} backbones on {len(datasets)} '
        f"dataset{'s' if len(datasets) != 1 else ''}; test {escape(metric)} against {escape(axis.label)}, mean ± "
        "sample std over seeds.</p>",
        '<nav class="contents">' + "".join(f'<a href="#{i}">{escape(t)}</a>' for i, t in links) + "</nav>",
        _answer(plotted, axis, rankings),
        *(_dataset_section(d, t, records, plotted, metric) for d, t in plotted.tables.items()),
        *sections_html(beyond),
        _efficiency(records, curves, metric),
        _provenance(records),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>backbone-bench report</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _answer(plotted: Plotted, axis, rankings: Rankings | str) -> str:
    """The opening: one item per dataset, then the ranking across datasets (or why there is none)."""
    items = []
    for dataset, board in plotted.tables.items():
        text = escape(" ".join(dataset_answer(board, dataset, axis)))
        name = escape(dataset)
        linked = text.replace(name, f'<a href="#dataset-{slug(dataset)}"><b>{name}</b></a>', 1)
        items.append(f"<li><p>{linked}</p></li>")
    parts = ['<section id="answer"><h2>The answer</h2>', f'<ul class="answer">{"".join(items)}</ul>']
    parts.append('<h3 id="across">Across the datasets</h3>')
    if isinstance(rankings, str):
        parts.append(f'<p class="note">No ranking across datasets: {escape(rankings)}.</p>')
    else:
        parts.append("<p>" + escape(" ".join(ranking_answer(rankings))) + "</p>")
        parts.append(table(_ranking_frame(rankings), "ranking", ["row"]))
        left = rankings.accuracy.left_out
        if left:
            parts.append(notes(["Left out: " + "; ".join(f"{o.row}: {o.reason}" for o in left) + "."]))
        parts.append(notes([rankings.accuracy.power_note()]))
        parts.append(_diagrams(rankings))
    return "\n".join(parts) + "</section>"


def _ranking_frame(rankings: Rankings) -> pd.DataFrame:
    """One line per compared row, in mean-rank order: its mean rank and each dataset's value (rank), by the metric
    and on the front."""
    accuracy, front = rankings.accuracy, rankings.front
    rows = list(accuracy.mean_ranks.index)
    frame = pd.DataFrame(
        {"row": rows, f"mean rank ({rankings.metric})": [f"{accuracy.mean_ranks[r]:.2f}" for r in rows]}
    )
    for d in rankings.datasets:
        frame[d] = [f"{accuracy.values.loc[d, r]:.3f} ({accuracy.ranks.loc[d, r]:g})" for r in rows]
    if front is not None:
        means = front.mean_ranks
        frame["mean rank (front)"] = [f"{means[r]:.2f}" if r in means else "no latency" for r in rows]
    return frame


def _diagrams(rankings: Rankings) -> str:
    """The critical-difference diagrams (:func:`bench.reports.ranking_files.draw`), drawn in a temporary folder."""
    shown = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranking in (r for r in (rankings.accuracy, rankings.front) if r is not None):
            png = next(p for p in draw(ranking, Path(tmp) / f"cd-{ranking.name}") if p.suffix == ".png")
            shown.append(figure(png, f"critical-difference diagram: {ranking.what}", "cd"))
    return f"<details><summary>Critical-difference diagrams</summary>{''.join(shown)}</details>"


def _efficiency(records: list[RunRecord], curves: dict[str, Path], metric: str) -> str:
    """Per dataset with a data-efficiency figure: the figure and one sentence of what it shows, generated from the
    table it was drawn from; nothing where no dataset has one."""
    if not curves:
        return ""
    body = [
        f'<h2 id="{EFFICIENCY}">Data efficiency</h2>',
        f'<p class="sub">Test {escape(metric)} against the share of the training split each row trained on (subsets '
        "stratified by class and nested, the same images for every row and seed; validation and test whole), mean "
        "± std over seeds: how many labelled images a backbone needs.</p>",
    ]
    for dataset, png in curves.items():
        sentence = efficiency_sentence(data_efficiency(records, dataset, metric))
        body.append(f'<h3 id="{EFFICIENCY}-{slug(dataset)}">{escape(dataset)}</h3>')
        body.append(f"<p>{escape(sentence)}</p>")
        body.append(figure(png, f"{dataset}: test {metric} against the share of the training split", "efficiency"))
    return f'<section class="beyond">{"".join(body)}</section>'


def _provenance(records: list[RunRecord]) -> str:
    """Where the numbers come from: code (and whether it had uncommitted changes), machines, versions, dates."""
    env = [r.environment for r in records]
    versions = sorted({f"torch {e.versions.get('torch')}, timm {e.versions.get('timm')}" for e in env})
    created = sorted(r.created for r in records)
    failed = sum(r.status == "failed" for r in records)
    commits = sorted({e.git_commit or "unknown" for e in env})
    dirty = sum(c.endswith("-dirty") for c in commits)
    rows = {
        "report generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "harness commit (now)": _commit(git_commit()),
        "commits behind the runs": f"{len(commits)}, {dirty} of them with uncommitted changes (-dirty): "
        + ", ".join(commits),
        "runs": f"{len(records)} ({failed} failed)",
        "runs recorded": f"{created[0]} to {created[-1]}",
        "devices that ran them": ", ".join(sorted({device_label(e.device) for e in env})),
        "library versions": "; ".join(versions),
    }
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows.items())
    return f'<h2 id="provenance">Provenance</h2>\n<div class="wide"><table class="provenance">{cells}</table></div>'


def _commit(commit: str | None) -> str:
    if commit is None:
        return "unknown (not a git checkout)"
    clean = commit.removesuffix("-dirty")
    return f"{clean} (with uncommitted changes: -dirty)" if clean != commit else commit


def _dataset_section(dataset: str, board: pd.DataFrame, records: list[RunRecord], plotted: Plotted, metric: str) -> str:
    parts = [f'<h2 id="dataset-{slug(dataset)}">{escape(dataset)}</h2>']
    devices = latency_devices(board)
    if len(devices) > 1:
        parts.append(
            f'<p class="warning">Latencies come from different devices ({escape(" / ".join(devices))}): '
            "they are not comparable.</p>"
        )
    tradeoff = [p for p in plotted.tradeoff[dataset] if p.suffix == ".png"]
    if tradeoff:
        parts.append(figure(tradeoff[0], f"{dataset}: test {metric} against latency", "tradeoff"))
    else:
        parts.append('<p class="note">No finished run with a latency: nothing to plot.</p>')
    parts.append(table(leaderboard_frame(board), "leaderboard", TEXT_COLUMNS))
    parts.append(f'<p class="note">Sorted by {escape(metric)}.</p>')
    parts.append(notes(table_notes(board)))
    parts.append(_failures(dataset, records))
    parts.append(_run_figures(board, records, plotted.runs, metric))
    return "\n".join(parts)


def leaderboard_frame(board: pd.DataFrame) -> pd.DataFrame:
    """The displayed leaderboard (:func:`bench.reports.render.display_frame`), its answer columns (the sort metric,
    its CI and the latency) moved up beside the row's name, so that a narrow window shows them unscrolled."""
    shown = display_frame(board)
    metric = board.attrs["metric"]
    first = [c for c in shown.columns if c in ("rank", "backbone", "protocol", "source", "res", "n")]
    answer = [c for c in (seeds_column(metric), ci_column(metric), LATENCY_COLUMN) if c in shown]
    return shown[first + answer + [c for c in shown.columns if c not in first + answer]]


def _failures(dataset: str, records: list[RunRecord]) -> str:
    failed = [r for r in records if r.spec.dataset == dataset and r.status == "failed"]
    if not failed:
        return ""
    items = "".join(
        f"<li>{escape(r.spec.backbone)} ({escape(r.protocol_label)}, seed {r.spec.seed}): {escape(r.error)}</li>"
        for r in failed
    )
    return f'<p class="note">Failed runs:</p><ul class="note">{items}</ul>'


def median_runs(records: list[RunRecord], board: pd.DataFrame, metric: str) -> list[RunRecord]:
    """Per backbone row of ``board``, in its order, the finished run of its experiment with the median ``metric``.

    With an even number of seeds the lower of the two middle runs is taken; NaN scores sort last.
    """
    datasets = set(board["dataset"])
    by_id = {e.id: e for d in datasets for e in dataset_experiments(records, d)}
    chosen = []
    for exp_id in board.loc[board["protocol"] != MAJORITY_PROTOCOL, "experiment"]:
        runs = sorted(by_id[exp_id].ok, key=lambda r: (math.isnan(r.score(metric)), r.score(metric)))
        if runs:
            chosen.append(runs[(len(runs) - 1) // 2])
    return chosen


def _run_figures(board: pd.DataFrame, records: list[RunRecord], figures: dict[str, RunFigures], metric: str) -> str:
    runs = median_runs(records, board, metric)
    if not runs:
        return ""
    blocks = []
    for r in runs:
        figs = figures[r.key]
        caption = f"{r.spec.backbone} · {r.protocol_label} · seed {r.spec.seed} ({metric} {r.score(metric):.3f})"
        blocks.append(
            f'<figure><div class="pair">{figure(figs.confusion, f"confusion matrix, {caption}", "confusion")}'
            f"{figure(figs.curves, f'training curves, {caption}', 'curves')}</div>"
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    return (
        "<details><summary>Per-run figures: confusion matrix and training curves of the median seed of each row"
        f'</summary><div class="runs">{"".join(blocks)}</div></details>'
    )
