"""Reliability diagrams: one figure per dataset, one panel per leaderboard row, in rank order.

A panel pools the row's seeds' saved test predictions (every seed's images, each counted once per seed) into
the 15 equal-width confidence bins of the ECE (:func:`bench.evaluation.calibration.reliability_bins`): a bar per
bin at its accuracy, the diagonal where a calibrated model's bars would end, the gap to the bin's mean
confidence hatched, and the row's ECE (mean ± std over seeds, the leaderboard's cell) in its title. Bars below
the diagonal: over-confident.
Written by ``bench leaderboard --columns calibration`` as ``plots/<dataset>-reliability.png``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.evaluation.calibration import N_BINS, reliability_bins
from bench.reports.columns import saved_scores
from bench.reports.plots import save
from bench.runs.experiments import Experiment

PANEL_INCHES = 2.4
PANELS_PER_LINE = 5


def _panel(ax, experiment: Experiment, title: str) -> None:
    saved = saved_scores(experiment)
    ax.plot([0, 1], [0, 1], color="0.5", linewidth=0.8, linestyle="--")
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    if isinstance(saved, str):
        ax.text(0.5, 0.5, f"n/a:\n{saved}", ha="center", va="center", fontsize=7, wrap=True)
        return
    bins = reliability_bins(np.concatenate([s.labels for s in saved]), np.concatenate([s.probs for s in saved]), N_BINS)
    width = np.diff(bins.edges)
    filled = bins.count > 0
    left = bins.edges[:-1][filled]
    ax.bar(left, bins.accuracy[filled], width=width[filled], align="edge", color="#4c72b0", edgecolor="white")
    bottom = np.minimum(bins.accuracy, bins.confidence)[filled]
    gap = np.abs(bins.accuracy - bins.confidence)[filled]
    ax.bar(left, gap, bottom=bottom, width=width[filled], align="edge", fill=False, hatch="////", edgecolor="#dd8452")


def reliability_figure(table: pd.DataFrame, experiments: dict[str, Experiment], dataset: str) -> Figure | None:
    """The figure for a leaderboard ``table`` with calibration columns (``experiments`` by id); None if it has
    no backbone row."""
    rows = [r for r in table.itertuples() if isinstance(r.experiment, str) and r.experiment in experiments]
    if not rows:
        return None
    lines = math.ceil(len(rows) / PANELS_PER_LINE)
    per_line = min(len(rows), PANELS_PER_LINE)
    fig = Figure(figsize=(PANEL_INCHES * per_line, PANEL_INCHES * lines + 0.6), layout="constrained")
    axes = fig.subplots(lines, per_line, squeeze=False)
    for ax, row in zip(axes.flat, rows, strict=False):
        ece = (
            "n/a"
            if pd.isna(row.ece_mean)
            else f"{row.ece_mean:.3f}" + ("" if pd.isna(row.ece_std) else f" ± {row.ece_std:.3f}")
        )
        _panel(ax, experiments[row.experiment], f"{row.backbone} ({row.protocol})\nECE {ece}")
    for ax in list(axes.flat)[len(rows) :]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy", fontsize=7)
    for ax in axes[-1, :]:
        ax.set_xlabel("confidence", fontsize=7)
    fig.suptitle(
        f"{dataset}: reliability on the test split ({N_BINS} bins, seeds pooled; hatched: the gap to each bin's "
        "mean confidence)",
        fontsize=9,
    )
    return fig


def write_reliability(
    table: pd.DataFrame, experiments: dict[str, Experiment], out_dir: Path, dataset: str
) -> list[Path]:
    """``out_dir/<dataset>-reliability.png``, written whole (or not at all); [] without a backbone row."""
    fig = reliability_figure(table, experiments, dataset)
    return [] if fig is None else save(fig, out_dir / f"{dataset}-reliability", ("png",), dpi=120)
