"""Figures from stored run records: the accuracy-vs-latency trade-off, and per run what went on inside.

* Per dataset, ``<dataset>-tradeoff.png`` and ``.svg``: mean test metric over seeds (error bars: sample
  std over seeds, of the latency too on the p50 axis) against batch-1 latency (p50, ms/image) or
  throughput on a log axis, marker area by parameter count, every row labelled, the Pareto front drawn
  as a step line ("the best you can get within this latency budget") with its members marked, the
  majority baseline as a horizontal line, and the device that timed the latencies in the caption (a
  red warning when there are several, since latencies from different machines are not comparable).
* Per finished run, under ``runs/<dataset>/<backbone>/``: ``<stem>.confusion.png`` (rows normalised,
  so the diagonal is per-class recall) and ``<stem>.curves.png`` (train/val loss and val balanced
  accuracy per epoch, phase boundaries and the selected epoch marked). PNG only, and only redrawn
  when the record is newer than the figure: a sweep of hundreds of runs is drawn once, and a later
  ``bench plot`` redraws only what changed.

Figures are built with matplotlib's object API (``Figure``, never pyplot), so there is no GUI
backend and no global figure registry to leak memory: PNG goes through the Agg renderer. SVG keeps
text as text (``svg.fonttype: none``), so labels stay searchable and the files small.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator
from sklearn.metrics import ConfusionMatrixDisplay

from bench.reports.leaderboard import (
    MAJORITY_PROTOCOL,
    LatencyAxis,
    datasets_in,
    latency_axis,
    latency_devices,
    leaderboard,
)
from bench.runs.record import RunRecord

STYLE = {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
FRONT_COLOUR = "tab:red"
OTHER_COLOUR = "tab:blue"
MIN_AREA, MAX_AREA = 30.0, 600.0  # marker area (pt^2) of the smallest and largest model


@dataclass(frozen=True)
class RunFigures:
    """Where one run's figures are, and whether this call drew them or found them up to date."""

    confusion: Path
    curves: Path
    drawn: bool


def save(fig: Figure, stem: Path, formats: tuple[str, ...] = ("png",), dpi: int = 100) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format; returns the paths.

    Byte-reproducible, so regenerating unchanged results leaves git clean: no creation date in the
    file's metadata, and SVG element ids from a fixed salt instead of random ones.
    """
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(f"{stem.name}.{fmt}") for fmt in formats]
    with mpl.rc_context(STYLE | {"svg.hashsalt": "backbone-bench"}):
        for path in paths:
            metadata = {"Date": None} if path.suffix in (".svg", ".pdf") else {}
            fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=metadata)
    return paths


def _row_labels(points: pd.DataFrame) -> pd.Series:
    """Backbone names, qualified by protocol and resolution only when the table mixes several."""
    if points["protocol"].nunique() == 1 and points["resolution"].nunique() == 1:
        return points["backbone"]
    return points["backbone"] + " (" + points["protocol"] + ", " + points["resolution"].astype(int).astype(str) + " px)"


def _areas(params_m: pd.Series) -> tuple[np.ndarray, float]:
    """Marker areas proportional to parameter count, and the largest count (for the size legend)."""
    largest = float(params_m.max()) if params_m.notna().any() else 1.0
    fraction = (params_m.fillna(0.0) / largest).to_numpy()
    return MIN_AREA + (MAX_AREA - MIN_AREA) * fraction, largest


def tradeoff_figure(table: pd.DataFrame, dataset: str, metric: str, axis: LatencyAxis) -> Figure | None:
    """The trade-off scatter of a :func:`bench.reports.leaderboard.leaderboard` table; None without a point to draw."""
    mean, std = f"{metric}_mean", f"{metric}_std"
    backbones = table[table["protocol"] != MAJORITY_PROTOCOL]
    points = backbones[backbones[mean].notna() & backbones[axis.column].notna()].reset_index(drop=True)
    if points.empty:
        return None
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(9.0, 5.0), layout="constrained")
        ax = fig.add_subplot()
        x, y = points[axis.column].to_numpy(float), points[mean].to_numpy(float)
        xerr = points[f"{axis.column}_std"].fillna(0.0) if f"{axis.column}_std" in points else None
        ax.errorbar(x, y, yerr=points[std].fillna(0.0), xerr=xerr, fmt="none", ecolor="0.55", elinewidth=1, capsize=3)
        areas, largest = _areas(points["params_m"])
        front = points["pareto"].to_numpy(bool)
        colours = np.where(front, FRONT_COLOUR, OTHER_COLOUR)
        dots = ax.scatter(x, y, s=areas, c=colours, alpha=0.75, edgecolors="black", linewidths=0.6, zorder=3)
        order = np.argsort(x[front])
        ax.step(
            x[front][order],
            y[front][order],
            where="post" if axis.lower_is_better else "pre",
            color=FRONT_COLOUR,
            linewidth=1.5,
            label="Pareto front (best metric within a speed budget)",
            zorder=2,
        )
        ax.scatter([], [], s=MIN_AREA * 2, c=FRONT_COLOUR, edgecolors="black", label="Pareto-optimal")
        ax.scatter([], [], s=MIN_AREA * 2, c=OTHER_COLOUR, edgecolors="black", label="dominated")
        _label_points(ax, _row_labels(points), x, y, areas)
        _majority_line(ax, table, mean)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        # Within one decade matplotlib labels minor ticks, by default as "4.2x10^0": plain numbers instead.
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
        ax.margins(x=0.2, y=0.15)
        ax.set_xlabel(axis.label + ("" if axis.lower_is_better else " (higher is better)"))
        ax.set_ylabel(f"test {metric} (mean ± std over seeds)")
        ax.grid(True, which="both", alpha=0.25)
        handles = ax.get_legend_handles_labels()
        sizes = dots.legend_elements(
            prop="sizes", num=3, alpha=0.4, func=lambda a: (a - MIN_AREA) / (MAX_AREA - MIN_AREA) * largest
        )
        # Both legends outside the axes, on the right, so they never hide a point.
        # add_artist clips to the axes; this legend lies outside them.
        ax.add_artist(ax.legend(*handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))).set_clip_on(False)
        ax.legend(
            *sizes,
            title="parameters (M)",
            fontsize=7,
            title_fontsize=7,
            labelspacing=1.6,
            loc="lower left",
            bbox_to_anchor=(1.02, 0.0),
        )
        ax.set_title(f"{dataset}: test {metric} vs {axis.label}")
        _device_caption(fig, table, points)
    return fig


def _label_points(ax, labels: pd.Series, x: np.ndarray, y: np.ndarray, areas: np.ndarray) -> None:
    """Each point's name just clear of its marker: to its right, or to its left in the right half of the
    axis so that it stays inside the axes."""
    logs = np.log10(x)
    middle = (logs.min() + logs.max()) / 2
    for label, log_x, xi, yi, area in zip(labels, logs, x, y, areas, strict=True):
        gap = np.sqrt(area) / 2 + 3  # marker radius in points (``s`` is the squared diameter), plus air
        right = len(x) == 1 or log_x <= middle
        ax.annotate(
            label,
            (xi, yi),
            xytext=(gap if right else -gap, 0),
            textcoords="offset points",
            ha="left" if right else "right",
            va="center",
            fontsize=8,
        )


def _majority_line(ax, table: pd.DataFrame, mean: str) -> None:
    base = table.loc[table["protocol"] == MAJORITY_PROTOCOL, mean].dropna()
    if len(base):
        value = float(base.iloc[0])
        ax.axhline(value, color="0.3", linestyle="--", linewidth=1, label=f"majority baseline ({value:.3f})")


def _device_caption(fig: Figure, table: pd.DataFrame, points: pd.DataFrame) -> None:
    """Name the device behind the latencies; warn in red when several, since then they do not compare."""
    devices = latency_devices(table)
    seeds = sorted(set(points["n"].astype(int)))
    fig.supxlabel(
        f"latency timed on: {' / '.join(devices) or 'unknown device'}  ·  seeds per point: "
        f"{', '.join(map(str, seeds))}  ·  marker area ∝ parameters",
        fontsize=8,
        color="0.3",
    )
    if len(devices) > 1:
        fig.suptitle(
            f"Warning: latencies come from {len(devices)} different devices and are not comparable",
            color="red",
            fontsize=9,
            fontweight="bold",
        )


def plot_tradeoff(table: pd.DataFrame, dataset: str, metric: str, axis: LatencyAxis, out_dir: Path) -> list[Path]:
    """``<dataset>-tradeoff.png`` and ``.svg`` under ``out_dir``; nothing when no row has both numbers."""
    fig = tradeoff_figure(table, dataset, metric, axis)
    return [] if fig is None else save(fig, out_dir / f"{dataset}-tradeoff", ("png", "svg"), dpi=150)


def _run_title(record: RunRecord) -> str:
    spec = record.spec
    return f"{spec.backbone} · {record.protocol_label} · seed {spec.seed} · {spec.dataset}"


def confusion_figure(record: RunRecord) -> Figure:
    """The test confusion matrix with each true-class row divided by its size (recall on the diagonal)."""
    counts = np.asarray(record.test["confusion_matrix"], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = counts / counts.sum(axis=1, keepdims=True)  # an absent class keeps a NaN row
    classes = record.dataset.classes if record.dataset else []
    side = 2.5 + 0.6 * len(classes)
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(side + 1.0, side), layout="constrained")
        ax = fig.add_subplot()
        ConfusionMatrixDisplay(normalised, display_labels=classes).plot(
            ax=ax, cmap="Blues", values_format=".2f", xticks_rotation=45, im_kw={"vmin": 0.0, "vmax": 1.0}
        )
        ax.set_title(
            f"{_run_title(record)}\ntest, rows normalised: balanced acc. {record.score('balanced_accuracy'):.3f}"
        )
    return fig


def curves_figure(record: RunRecord) -> Figure:
    """Train/val loss and val balanced accuracy per epoch, with phase boundaries and the selected epoch."""
    history = pd.DataFrame(record.history)
    history["val_balanced_accuracy"] = [v["balanced_accuracy"] for v in history["val"]]
    assert record.selection is not None, "curves are drawn for finished runs"
    best = record.selection.best_epoch
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(9.0, 3.4), layout="constrained")
        loss, acc = fig.subplots(1, 2)
        loss.plot(history["epoch"], history["train_loss"], marker="o", label="train loss")
        loss.plot(history["epoch"], history["val_loss"], marker="o", label="val loss")
        loss.set_ylabel("loss")
        acc.plot(history["epoch"], history["val_balanced_accuracy"], marker="o", color="tab:green")
        acc.set_ylabel("val balanced accuracy")
        for ax in (loss, acc):
            _mark_phases(ax, history)
            ax.axvline(best, color="0.4", linestyle=":", linewidth=1, label=f"selected epoch ({best})")
            ax.set_xlabel("epoch")
            ax.set_xlim(history["epoch"].min() - 0.5, history["epoch"].max() + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.grid(True, alpha=0.25)
        loss.legend(fontsize=7)
        fig.suptitle(f"{_run_title(record)}: training curves (selection on val {record.selection.on})")
    return fig


def _mark_phases(ax, history: pd.DataFrame) -> None:
    """A dashed line between epochs of different phases, each phase named at its start."""
    starts = history[history["phase"] != history["phase"].shift()]
    for i, (epoch, phase) in enumerate(zip(starts["epoch"], starts["phase"], strict=True)):
        if i:
            ax.axvline(epoch - 0.5, color="tab:purple", linestyle="--", linewidth=1)
        ax.annotate(
            phase, (epoch - 0.4, 1.0), xycoords=("data", "axes fraction"), va="top", fontsize=7, color="tab:purple"
        )


def run_figure_stem(record: RunRecord, out_dir: Path) -> Path:
    """``out_dir/runs/<dataset>/<backbone>/<record stem>``: the runs' own layout, one folder down."""
    assert record.path is not None, "a run's figures are drawn from a record read from a results folder"
    return out_dir / "runs" / record.spec.dataset / record.spec.backbone / record.path.stem


def plot_run(record: RunRecord, out_dir: Path) -> RunFigures:
    """A finished run's confusion matrix and training curves, redrawn only when its record is newer."""
    stem = run_figure_stem(record, out_dir)
    confusion, curves = stem.with_name(f"{stem.name}.confusion.png"), stem.with_name(f"{stem.name}.curves.png")
    written = record.path.stat().st_mtime
    if all(p.exists() and p.stat().st_mtime >= written for p in (confusion, curves)):
        return RunFigures(confusion, curves, drawn=False)
    save(confusion_figure(record), stem.with_name(f"{stem.name}.confusion"))
    save(curves_figure(record), stem.with_name(f"{stem.name}.curves"))
    return RunFigures(confusion, curves, drawn=True)


@dataclass(frozen=True)
class Plotted:
    """Everything :func:`plot_all` drew, keyed for the report: tables and trade-off files by dataset."""

    tables: dict[str, pd.DataFrame]
    tradeoff: dict[str, list[Path]]  # empty list: no row with both numbers
    runs: dict[str, RunFigures]  # by record key; finished runs only


def plot_all(records: list[RunRecord], metric: str, latency: str, out_dir: Path) -> Plotted:
    """Trade-off plots for every dataset in ``records`` and figures for every finished run."""
    axis = latency_axis(latency)
    tables = {d: leaderboard(records, d, metric, latency) for d in datasets_in(records)}
    tradeoff = {d: plot_tradeoff(t, d, metric, axis, out_dir) for d, t in tables.items()}
    runs = {r.key: plot_run(r, out_dir) for r in records if r.ok}
    return Plotted(tables, tradeoff, runs)
