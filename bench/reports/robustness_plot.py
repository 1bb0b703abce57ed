"""Robustness against latency: per dataset, each row's balanced accuracy on its corrupted test split (1 - the
``robustness`` column group's mean balanced error over corruptions) against its batch-1 latency.

It is the trade-off plot (:func:`bench.reports.plots.tradeoff_figure`) drawn from another score column: the same
markers, latency bars, labels placed clear of everything (:mod:`bench.reports.placement`), majority line and
device caption. What changes is what the marks mean here: the Pareto front (★) is recomputed on (balanced accuracy
under corruption, latency) among the ranked rows, and no row is marked ≈, since no tie test was run on the
corrupted images. The majority baseline keeps its line: always predicting one class scores a balanced accuracy of
1/K on any images, corrupted or not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.reports.leaderboard import MAJORITY_PROTOCOL, LatencyAxis, pareto_front
from bench.reports.plots import save, tradeoff_figure

SCORE = "balanced accuracy under corruption"
"""The plotted score's name, as the title and the y axis read it."""


def robustness_table(table: pd.DataFrame, axis: LatencyAxis) -> pd.DataFrame:
    """A leaderboard with the ``robustness`` column group turned into a trade-off table for :data:`SCORE`:
    ``<SCORE>_mean``/``_std`` from the corrupted balanced error, ``pareto`` recomputed on it, ``tied`` all False."""
    out = table.copy()
    out.attrs = dict(table.attrs)
    baseline = out["protocol"] == MAJORITY_PROTOCOL
    out[f"{SCORE}_mean"] = np.where(baseline, out["balanced_accuracy_mean"], 1.0 - out["corrupted_be_mean"])
    out[f"{SCORE}_std"] = np.where(baseline, np.nan, out["corrupted_be_std"])
    cost = out[axis.column] if axis.lower_is_better else -out[axis.column]
    candidate = (~baseline & out["ranked"].astype(bool)).to_numpy()
    front = np.zeros(len(out), dtype=bool)
    front[candidate] = pareto_front(out.loc[candidate, f"{SCORE}_mean"], cost[candidate])
    out["pareto"] = front
    out["tied"] = False
    return out


def plot_robustness(table: pd.DataFrame, dataset: str, axis: LatencyAxis, out_dir: Path) -> list[Path]:
    """``<dataset>-robustness.png`` and ``.svg`` under ``out_dir``; nothing where no row has both a corrupted score
    and a latency (or the table has no robustness columns)."""
    if "corrupted_be_mean" not in table:
        return []
    fig = tradeoff_figure(robustness_table(table, axis), dataset, SCORE, axis)
    if fig is None:
        return []
    fig.axes[0].set_ylabel(f"{SCORE}\n(test split corrupted; mean ± std over seeds)")  # one line is too long
    return save(fig, out_dir / f"{dataset}-robustness", ("png", "svg"), dpi=150)
