"""Subgroup gaps: per dataset, each row's worst patient group against its whole test split, on one balanced-accuracy
axis, so a reader sees which backbone fails a group and by how much.

A dot plot, one line per leaderboard row in its order (rank 1 at the top), drawn from the ``subgroups`` column group
(:mod:`bench.reports.subgroup_columns`) and the leaderboard's own CIs:

* ● the row's test balanced accuracy (seed mean), its bar the leaderboard's 95% bootstrap CI over the test images
  (seeds averaged);
* ◆ its worst group's balanced accuracy (seed mean), its bar the 95% bootstrap CI over that group's images;
* a thin line between the two: how far the worst group falls below the whole split;
* beside the line, on the right: which group that is (its size) and the row's largest gap between the groups of one
  attribute (mean ± std over seeds, between which groups), as the subgroup table says it;
* the majority baseline's balanced accuracy (1/K, chance) as a dashed vertical line.

The rows are named on the y axis (the backbone, with its protocol and size where they differ from most rows', ✗
where it did not learn), one row a line, so no label needs placing among the points as on the trade-off plots. A
row with no worst group (no metadata, no saved probabilities, no group large enough) is not drawn: the caption
names it with its reason, and so does the report, never a silent gap.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.evaluation.spread import format_mean_std
from bench.evaluation.subgroups import MIN_GROUP_SIZE
from bench.reports.answer import backbone_rows, row_names, usual_setting
from bench.reports.plots import STYLE, majority_line, majority_value, save
from bench.reports.row_health import DID_NOT_LEARN_MARK
from bench.reports.subgroup_columns import METRIC, NOTE

WHOLE_COLOUR = "tab:blue"
WORST_COLOUR = "tab:red"
WHOLE = f"whole test split: {METRIC} (seed mean)"
WORST = f"worst patient group: {METRIC} (seed mean)"
WORST_CELL = f"worst_group_{METRIC}"


def plotted_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The backbone rows of a leaderboard with ``subgroups`` columns that have a worst group (drawn), and those
    without one (left out, with ``name`` and ``reason``), each in the table's order with its ``name``."""
    rows = backbone_rows(table)
    rows = rows[rows["experiment"].fillna("") != ""].copy()
    if rows.empty:
        return rows, rows
    marks = np.where(rows["ranked"].astype(bool), "", f" {DID_NOT_LEARN_MARK}") if "ranked" in rows else ""
    rows["name"] = row_names(table).reindex(rows.index) + marks
    drawn = rows[f"{WORST_CELL}_mean"].notna()
    left = rows.loc[~drawn].copy()
    left["reason"] = left[NOTE].fillna("").replace("", "no worst group")
    return rows.loc[drawn], left


def left_out_line(left: pd.DataFrame) -> str:
    """``Not drawn, for want of a worst group: a (reason); b (reason).``; empty where every row is drawn."""
    if left.empty:
        return ""
    named = "; ".join(f"{r.name} ({r.reason})" for r in left.itertuples())
    return f"Not drawn, for want of a worst group: {named}."


def _side_text(row: pd.Series) -> str:
    """Which group is worst (its size), and the largest gap between the groups of one attribute."""
    worst = f"{row['worst_group']} (n={int(row['worst_group_n'])})"
    if not row["largest_gap_attribute"]:
        return worst
    gap = format_mean_std(row["largest_gap_mean"], row["largest_gap_std"])
    return f"{worst}  ·  largest gap {gap} ({row['largest_gap_attribute']}: {row['largest_gap_groups']})"


def subgroup_figure(table: pd.DataFrame, dataset: str) -> Figure | None:
    """The dot plot of a leaderboard with ``subgroups`` columns; None where no row has a worst group."""
    drawn, left = plotted_rows(table)
    if drawn.empty:
        return None
    n = len(drawn)
    y = np.arange(n, dtype=float)
    whole = drawn[f"{METRIC}_mean"].to_numpy(float)
    worst = drawn[f"{WORST_CELL}_mean"].to_numpy(float)
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(10.0, 1.9 + 0.38 * n), layout="constrained")
        ax = fig.add_subplot()
        ax.hlines(y, np.fmin(worst, whole), np.fmax(worst, whole), color="0.75", linewidth=3, zorder=1,
                  label="_gap to the whole split")  # fmt: skip
        bars = {"linewidth": 1.2, "zorder": 2}
        low, high = drawn[f"{METRIC}_ci95_low"].to_numpy(float), drawn[f"{METRIC}_ci95_high"].to_numpy(float)
        ax.hlines(y - 0.12, low, high, color=WHOLE_COLOUR, label="_whole CI", **bars)
        low, high = (drawn[f"{WORST_CELL}_ci95_{end}"].to_numpy(float) for end in ("low", "high"))
        ax.hlines(y + 0.12, low, high, color=WORST_COLOUR, label="_worst CI", **bars)
        ax.scatter(whole, y - 0.12, s=40, marker="o", color=WHOLE_COLOUR, edgecolors="black", linewidths=0.5,
                   zorder=3, label=WHOLE)  # fmt: skip
        ax.scatter(worst, y + 0.12, s=46, marker="D", color=WORST_COLOUR, edgecolors="black", linewidths=0.5,
                   zorder=3, label=WORST)  # fmt: skip
        handles = [
            Line2D([], [], color="0.3", linewidth=1.2, label="95% bootstrap CI over the images"),
            Line2D([], [], color="0.75", linewidth=3, label="worst group's shortfall from the whole split"),
        ]
        majority_line(ax, majority_value(table, f"{METRIC}_mean"), vertical=True)
        ax.set_yticks(y, list(drawn["name"]))
        ax.set_ylim(n - 0.5, -0.5)  # rank 1 at the top
        ax.margins(x=0.08)
        for i, (_, row) in enumerate(drawn.iterrows()):
            ax.annotate(_side_text(row), (1.01, y[i]), xycoords=("axes fraction", "data"), va="center", fontsize=7,
                        color="0.25", annotation_clip=False)  # fmt: skip
        ax.set_xlabel(f"test {METRIC}")
        ax.grid(True, axis="x", alpha=0.25)
        ax.set_title(f"{dataset}: {METRIC} of the worst patient group against the whole test split")
        fig.legend(handles=[*ax.get_legend_handles_labels()[0], *handles], loc="outside upper center", ncols=3,
                   fontsize=7)  # fmt: skip
        fig.supxlabel(_caption(drawn, left, table), fontsize=8, color="0.3")
    return fig


def _caption(drawn: pd.DataFrame, left: pd.DataFrame, table: pd.DataFrame) -> str:
    """What the marks mean, the seeds behind them, the setting unnamed rows share, and the rows left out."""
    protocol, resolution = usual_setting(backbone_rows(table))
    seeds = ", ".join(map(str, sorted(set(drawn["n"].astype(int)))))
    lines = [
        f"groups compared: {MIN_GROUP_SIZE}+ test images and every class  ·  seeds per row: {seeds}  ·  "
        f"a row without (protocol, size): {protocol}, {resolution} px"
    ]
    if not left.empty:
        lines.append(textwrap.fill(left_out_line(left), 170))
    return "\n".join(lines)


def plot_subgroups(table: pd.DataFrame, dataset: str, out_dir: Path) -> list[Path]:
    """``<dataset>-subgroups.png`` and ``.svg`` under ``out_dir``; nothing where the table has no subgroup columns
    or no row has a worst group."""
    if f"{WORST_CELL}_mean" not in table:
        return []
    fig = subgroup_figure(table, dataset)
    return [] if fig is None else save(fig, out_dir / f"{dataset}-subgroups", ("png", "svg"), dpi=150)
