"""The files of a cross-dataset ranking (:mod:`bench.reports.ranking`): ``ranking.md`` and the critical-difference
diagrams ``cd-accuracy`` and ``cd-front`` (SVG and PNG), byte-reproducible like :mod:`bench.reports.plots`' figures.

The diagram is scikit-posthocs' (:func:`scikit_posthocs.critical_difference_diagram`), the form Demšar (2006)
introduced: a reader sees at once which rows no test tells apart. The Markdown holds what the diagram cannot: the
per-dataset cells behind each mean rank, the rows left out and why, and how little three datasets can show.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import scikit_posthocs as sp
from matplotlib.figure import Figure

from bench.files import atomic_write_bytes
from bench.reports.plots import save
from bench.reports.ranking import Ranking, Rankings

COMMAND = "bench rank --results-dir {results_dir} --metric {metric}"
HOW = (
    "Blocks are the datasets (Demšar 2006): on each, every row (a leaderboard row, backbone and protocol, its cell "
    "the mean over seeds) is ranked, 1 = best, ties sharing the mean rank. The Friedman test asks whether the mean "
    "ranks differ more than chance would make them; the Nemenyi post-hoc, which pairs differ by at least the "
    "critical difference (CD). A row not scored on every dataset, or that did not learn on one (the leaderboards' "
    "✗), is left out and listed. The majority baseline is a reference line of each leaderboard, not a row here."
)
LAYERS = (
    "Per dataset, the rows are ranked by Pareto layer: layer 1 (L1) is the front among the compared rows (no other "
    "is at least as accurate and at least as fast, and better on one), L2 the front once L1 is removed, and so on; "
    "the rows of one layer share its mean rank."
)


def draw(ranking: Ranking, stem: Path) -> list[Path]:
    """The critical-difference diagram (scikit-posthocs): mean ranks on an axis from 1 (best, left) to k, a bar
    joining rows Nemenyi does not tell apart, the CD's length drawn above the axis from rank 1 (the library's own
    CD bar sits on the tick labels), and a title that says whether Friedman is significant."""
    n, k = ranking.ranks.shape
    names, ranks = list(ranking.mean_ranks.index), ranking.mean_ranks.to_numpy()
    # The rows go in as their positions and are named afterwards: the library gathers rows in sets, whose order for
    # strings changes with Python's hash seed, so the SVG would change from one run to the next.
    nemenyi = ranking.nemenyi.loc[names, names].to_numpy()
    fig = Figure(figsize=(7.5, 1.8 + 0.22 * k), layout="constrained")
    ax = fig.subplots()
    drawn = sp.critical_difference_diagram(
        pd.Series(ranks),
        pd.DataFrame(nemenyi),
        alpha=ranking.alpha,
        ax=ax,
        label_fmt_left="{label}",
        label_fmt_right="{label}",
        label_props={"fontsize": 8},
        marker_props={"clip_on": False},  # a mean rank of 1 or k sits on the axis' end
        elbow_props={"clip_on": False},
    )
    for text in drawn["labels"]:
        i = int(text.get_text())
        left = text.get_horizontalalignment() == "right"
        text.set_text(f"{names[i]} ({ranks[i]:.2f})" if left else f"({ranks[i]:.2f}) {names[i]}")
    ax.set_xlim(1, k)
    ax.set_xticks(range(1, k + 1))
    ax.plot([1, 1 + ranking.cd], [1.6, 1.6], color="k", linewidth=1.5, marker="|", clip_on=False)
    ax.text(1 + ranking.cd / 2, 1.8, f"CD = {ranking.cd:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(top=1.8)
    verdict = "significant" if ranking.significant else "not significant: no winner"
    ax.set_title(
        f"{ranking.what}: mean rank over {n} datasets (1 = best)\n"
        f"Friedman p = {ranking.p_value:.3g} ({verdict} at {ranking.alpha}); Nemenyi CD = {ranking.cd:.2f}",
        fontsize=9,
        pad=24,
    )
    return save(fig, stem, ("svg", "png"))


def markdown(rankings: Rankings, command: str) -> str:
    """ranking.md: per ranking the verdict, the table of mean ranks and per-dataset cells, the diagram, the rows
    left out and why, and the power note."""
    parts = [f"# Mean rank across {', '.join(rankings.datasets)}", f"Command: `{command}`", HOW, *rankings.notes]
    for r, file in ((rankings.accuracy, "cd-accuracy.svg"), (rankings.front, "cd-front.svg")):
        if r is None:
            parts += ["## front", f"Not tested: {rankings.front_missing}."]
            continue
        integer = r.name == "front"
        table = pd.DataFrame(
            {
                "position": r.positions.to_numpy(),
                "row": r.mean_ranks.index,
                "mean rank": [f"{m:.2f}" for m in r.mean_ranks],
                **{
                    d: [_cell(r.values.loc[d, row], r.ranks.loc[d, row], integer) for row in r.mean_ranks.index]
                    for d in rankings.datasets
                },
            }
        )
        cells = "layer (rank)" if integer else f"{rankings.metric} (rank)"
        parts += [f"## {r.name}: {r.what}", *([LAYERS] if integer else []), r.verdict() + "."]
        parts.append(f"Dataset cells: {cells}; rank 1 is best.")
        parts += [table.to_markdown(index=False, disable_numparse=True), f"![critical-difference diagram]({file})"]
        if r.left_out:
            parts.append("Left out:\n\n" + "\n".join(f"- {o.row}: {o.reason}" for o in r.left_out))
        parts.append(r.power_note())
    return "\n\n".join(parts) + "\n"


def _cell(value: float, rank: float, integer: bool) -> str:
    shown = f"L{int(value)}" if integer else f"{value:.3f}"
    return f"{shown} ({rank:g})"


def write_ranking(rankings: Rankings, out: Path, command: str) -> list[Path]:
    """``ranking.md`` and the diagrams ``cd-accuracy`` and ``cd-front`` (SVG and PNG) under ``out``."""
    paths = draw(rankings.accuracy, out / "cd-accuracy")
    if rankings.front is not None:
        paths += draw(rankings.front, out / "cd-front")
    md = out / "ranking.md"
    atomic_write_bytes(md, markdown(rankings, command).encode())
    return [md, *paths]
