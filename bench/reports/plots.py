"""Figures from stored run records: the accuracy-vs-latency trade-off, and per run what went on inside.

* Per dataset, ``<dataset>-tradeoff.png`` and ``.svg``: mean test metric over seeds (error bars: sample
  std over seeds; on the p50 axis the latency's min-max over seeds) against batch-1 latency (p50,
  ms/image) or throughput on a log axis, marker area growing with parameter count (the size legend shows
  the smallest, median and largest plotted point, drawn at the points' scale), every row labelled clear
  of the baseline, the markers, the error bars and the other labels, nearest its own point or led to it by a
  thin line (:mod:`bench.reports.placement`),
  the table's Pareto front (★) drawn as a step line ("the best you can get within this latency budget"),
  hollow where a ★ rests on a latency gap within the seeds' spread, the table's ≈ rows (tied with rank 1)
  ringed and suffixed ≈, rows that did not learn suffixed ✗ (not ranked, never on the front: the table's
  ``ranked``), the majority baseline as a horizontal line, and the device that timed the
  latencies in the caption (a red warning when there are several, since latencies from different
  machines are not comparable).
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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator
from sklearn.metrics import ConfusionMatrixDisplay

from bench.files import atomic_savefig
from bench.reports.latency_pass import LatencyPass
from bench.reports.leaderboard import (
    MAJORITY_PROTOCOL,
    LatencyAxis,
    datasets_in,
    latency_axis,
    latency_devices,
    latency_sources,
    leaderboard,
    pareto_front,
)
from bench.reports.placement import place_labels, step_segments
from bench.reports.render import TIE_MARK
from bench.reports.row_health import DID_NOT_LEARN_MARK
from bench.reports.uncertainty import TIE_ALPHA
from bench.runs.record import RunRecord

STYLE = {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
FRONT_COLOUR = "tab:red"
OTHER_COLOUR = "tab:blue"
MIN_AREA, MAX_AREA = 30.0, 600.0  # marker area (pt^2) of the smallest and largest model
TIE_RING = 2.2  # a ≈ row's dashed ring, in marker areas
TIE_STYLE = {"facecolors": "none", "edgecolors": "black", "linewidths": 1.0, "linestyles": "--"}


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
    paths = [stem.with_name(f"{stem.name}.{fmt}") for fmt in formats]
    with mpl.rc_context(STYLE | {"svg.hashsalt": "backbone-bench"}):
        for path in paths:
            metadata = {"Date": None} if path.suffix in (".svg", ".pdf") else {}
            atomic_savefig(fig, path, dpi=dpi, bbox_inches="tight", metadata=metadata)  # whole, or a one-line error
    return paths


def _row_labels(points: pd.DataFrame) -> pd.Series:
    """Backbone names, each qualified only by the protocol or resolution that differs from most rows' (which
    :func:`usual_setting` names in the caption), and `` ≈`` after a row tied with rank 1, as in the tables.

    Thirteen labels that all end in "(scratch, 32 px)" crowd a cluster of leading rows until they cover each
    other; the exceptions ("(staged)", "(75 px)") are what a reader needs to see at the point.
    """
    protocol, resolution = usual_setting(points)
    names = []
    for row in points.itertuples():
        differs = ([row.protocol] if row.protocol != protocol else []) + (
            [f"{int(row.resolution)} px"] if row.resolution != resolution else []
        )
        names.append(f"{row.backbone} ({', '.join(differs)})" if differs else row.backbone)
    names = pd.Series(names, index=points.index)
    unranked = ~points["ranked"].astype(bool) if "ranked" in points else False  # ✗: did not learn, not ranked
    return names + np.where(points["tied"], f" {TIE_MARK}", "") + np.where(unranked, f" {DID_NOT_LEARN_MARK}", "")


def usual_setting(points: pd.DataFrame) -> tuple[str, int]:
    """The protocol and the resolution most rows have (ties: the first row's), left off their labels."""
    return str(points["protocol"].mode().iloc[0]), int(points["resolution"].mode().iloc[0])


def marker_areas(params_m: pd.Series, largest: float) -> np.ndarray:
    """Marker areas (pt^2) growing linearly with parameter count up to ``largest``; no count: the smallest."""
    fraction = (params_m.fillna(0.0) / largest).to_numpy(float)
    return MIN_AREA + (MAX_AREA - MIN_AREA) * fraction


def size_legend_values(params_m: pd.Series) -> list[float]:
    """The parameter counts the size legend shows: the smallest, the median and the largest plotted point's
    (the lower middle one for an even count, so each is an actual point's), without repeats."""
    values = np.sort(params_m.dropna().to_numpy(float))
    if not len(values):
        return []
    return sorted({values[0], values[(len(values) - 1) // 2], values[-1]})


def latency_spread(points: pd.DataFrame, axis: LatencyAxis) -> tuple[np.ndarray, np.ndarray] | None:
    """The x error bars: each point's min and max over seeds on the speed axis, as lengths below and above it."""
    if axis.spread is None:
        return None
    low, high = (points[c].to_numpy(float) for c in axis.spread)
    x = points[axis.column].to_numpy(float)
    return np.nan_to_num(x - low), np.nan_to_num(high - x)


def within_noise(points: pd.DataFrame, mean: str, axis: LatencyAxis) -> np.ndarray:
    """Front members (★) that owe their place to a latency gap smaller than the seeds' spread: dominated once
    latencies whose min-max ranges overlap count as equal (:func:`bench.reports.leaderboard.pareto_front`)."""
    front = points["pareto"].to_numpy(bool)
    if axis.spread is None:
        return np.zeros_like(front)
    low, high = (points[c] for c in axis.spread)
    return front & ~pareto_front(points[mean], low, high)


def tradeoff_figure(table: pd.DataFrame, dataset: str, metric: str, axis: LatencyAxis) -> Figure | None:
    """The trade-off scatter of a :func:`bench.reports.leaderboard.leaderboard` table; None without a point to draw.

    The front and the ≈ marks are the table's own (its ``pareto`` and ``tied`` columns), never recomputed; a
    ★ that rests on a latency gap within the seeds' spread is drawn hollow (:func:`within_noise`).
    """
    mean, std = f"{metric}_mean", f"{metric}_std"
    backbones = table[table["protocol"] != MAJORITY_PROTOCOL]
    points = backbones[backbones[mean].notna() & backbones[axis.column].notna()].reset_index(drop=True)
    if points.empty:
        return None
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(9.0, 5.0), layout="constrained")
        ax = fig.add_subplot()
        x, y = points[axis.column].to_numpy(float), points[mean].to_numpy(float)
        yerr, xerr = points[std].fillna(0.0).to_numpy(float), latency_spread(points, axis)
        errorbars = ax.errorbar(x, y, yerr=yerr, xerr=xerr, fmt="none", ecolor="0.55", elinewidth=1, capsize=3)
        largest = float(points["params_m"].max()) if points["params_m"].notna().any() else 1.0
        areas = marker_areas(points["params_m"], largest)
        front, tied = points["pareto"].to_numpy(bool), points["tied"].to_numpy(bool)
        fragile = within_noise(points, mean, axis)
        faces = np.where(fragile, "white", np.where(front, FRONT_COLOUR, OTHER_COLOUR))
        edges = np.where(fragile, FRONT_COLOUR, "black")
        ax.scatter(
            x, y, s=areas, c=faces, alpha=0.75, edgecolors=edges, linewidths=np.where(fragile, 1.6, 0.6), zorder=3,
            label="_points",
        )  # fmt: skip
        order = np.argsort(x[front])
        ax.step(
            x[front][order],
            y[front][order],
            where="post" if axis.lower_is_better else "pre",
            color=FRONT_COLOUR,
            linewidth=1.5,
            label="Pareto front (★: best metric within a speed budget)",
            zorder=2,
        )
        _marker_legend_entries(ax, fragile.any(), tied.any(), "ranked" in points and not points["ranked"].all())
        if tied.any():
            ax.scatter(x[tied], y[tied], s=areas[tied] * TIE_RING, label="_tie rings", zorder=4, **TIE_STYLE)
        baseline = majority_line(ax, majority_value(table, mean))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        # Within one decade matplotlib labels minor ticks, by default as "4.2x10^0": plain numbers instead.
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
        ax.margins(x=0.2, y=0.15)
        ax.set_xlabel(axis.label + ("" if axis.lower_is_better else " (higher is better)"))
        ax.set_ylabel(f"test {metric} (mean ± std over seeds)")
        ax.grid(True, which="both", alpha=0.25)
        # Both legends outside the axes, on the right, so they never hide a point.
        # add_artist clips to the axes; this legend lies outside them.
        handles = ax.get_legend_handles_labels()
        ax.add_artist(ax.legend(*handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))).set_clip_on(False)
        values = size_legend_values(points["params_m"])
        legend_areas = marker_areas(pd.Series(values, dtype=float), largest)
        room = np.sqrt(legend_areas.max()) / 7 if len(values) else 1.0  # the widest marker, in font sizes
        ax.legend(
            [_size_handle(a) for a in legend_areas],
            [f"{v:.3g}" for v in values],
            title="parameters (M)",
            fontsize=7,
            title_fontsize=7,
            handlelength=room,
            handleheight=room,
            labelspacing=0.8,
            loc="lower left",
            bbox_to_anchor=(1.02, 0.0),
        )
        ax.set_title(f"{dataset}: test {metric} vs {axis.label}")
        _device_caption(fig, table, points, axis)
        outline = np.where(tied, areas * TIE_RING, areas)  # a label keeps clear of the ≈ ring too
        line = step_segments(x[front][order], y[front][order], post=axis.lower_is_better)  # avoided where it can be
        lines = [] if baseline is None else [baseline]
        place_labels(ax, list(_row_labels(points)), x, y, outline, lines, errorbars, line)
    return fig


def _marker_legend_entries(ax, fragile: bool, tied: bool, unranked: bool = False) -> None:
    """Legend-only handles for the marker styles actually drawn."""
    ax.scatter([], [], s=MIN_AREA * 2, c=FRONT_COLOUR, edgecolors="black", label="Pareto-optimal (★)")
    if fragile:
        ax.scatter(
            [], [], s=MIN_AREA * 2, c="white", edgecolors=FRONT_COLOUR, linewidths=1.6,
            label="★ only by a latency gap within the seeds' min-max",
        )  # fmt: skip
    ax.scatter([], [], s=MIN_AREA * 2, c=OTHER_COLOUR, edgecolors="black", label="dominated")
    if tied:
        label = f"{TIE_MARK} tied with rank 1 (paired bootstrap, p ≥ {TIE_ALPHA})"
        ax.scatter([], [], s=MIN_AREA * 2 * TIE_RING, label=label, **TIE_STYLE)
    if unranked:
        ax.plot([], [], " ", label=f"{DID_NOT_LEARN_MARK} did not learn on validation: not ranked")


def _size_handle(area: float) -> Line2D:
    """A legend marker drawn at the scale of the points: ``markersize`` is the diameter, ``s`` its square."""
    return Line2D(
        [], [], linestyle="", marker="o", markersize=np.sqrt(area), markerfacecolor="0.6", markeredgecolor="black",
        markeredgewidth=0.6, alpha=0.75,
    )  # fmt: skip


def majority_value(table: pd.DataFrame, mean: str) -> float | None:
    """The majority baseline's ``mean`` in a leaderboard; None without a baseline row."""
    base = table.loc[table["protocol"] == MAJORITY_PROTOCOL, mean].dropna()
    return float(base.iloc[0]) if len(base) else None


def majority_line(ax, value: float | None, vertical: bool = False) -> float | None:
    """The majority baseline, dashed across the axes (up them with the metric on x); None where there is none."""
    if pd.isna(value):
        return None
    line = ax.axvline if vertical else ax.axhline
    line(value, color="0.3", linestyle="--", linewidth=1, label=f"majority baseline ({value:.3f})")
    return value


def _latency_bars(table: pd.DataFrame) -> str:
    """What a latency error bar spans: the seeds' min-max, or a ``bench latency`` pass's p50 95% CI."""
    passes, runs = latency_sources(table)
    if not passes:
        return "min-max over seeds"
    rest = ", else min-max over seeds" if runs else ""
    return f"p50 95% CI of the bench latency pass{rest}"


def _device_caption(fig: Figure, table: pd.DataFrame, points: pd.DataFrame, axis: LatencyAxis) -> None:
    """Name the device behind the latencies, the seeds and what the bars and the ★ mean; warn in red when
    several devices timed them, since then they do not compare."""
    devices = latency_devices(table)
    seeds = sorted(set(points["n"].astype(int)))
    bars = f"bars: std over seeds (metric), {_latency_bars(table)} (latency)" if axis.spread else "bars: std over seeds"
    protocol, resolution = usual_setting(points)
    fig.supxlabel(
        f"latency timed on: {' / '.join(devices) or 'unknown device'}  ·  seeds per point: "
        f"{', '.join(map(str, seeds))}  ·  {bars}  ·  marker area grows with parameters\n"
        f"a label without (protocol, size): {protocol}, {resolution} px  ·  "
        "★: no other backbone is at least as accurate and at least as fast, and better on one",
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
    assert record.test is not None, "a confusion matrix is drawn for a finished run"
    counts = np.asarray(record.test.confusion_matrix, dtype=float)
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
    rows = [(h.epoch, h.phase, h.train_loss, h.val_loss, h.val.score("balanced_accuracy")) for h in record.history]
    history = pd.DataFrame(rows, columns=["epoch", "phase", "train_loss", "val_loss", "val_balanced_accuracy"])
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


def plot_all(
    records: list[RunRecord], metric: str, latency: str, out_dir: Path, passes: Sequence[LatencyPass] = ()
) -> Plotted:
    """Trade-off plots for every dataset in ``records`` and figures for every finished run; ``passes``: the
    ``bench latency`` figures the leaderboards take in place of the runs' own (:mod:`bench.reports.latency_pass`)."""
    axis = latency_axis(latency)
    tables = {d: leaderboard(records, d, metric, latency, passes) for d in datasets_in(records)}
    tradeoff = {d: plot_tradeoff(t, d, metric, axis, out_dir) for d, t in tables.items()}
    runs = {r.key: plot_run(r, out_dir) for r in records if r.ok}
    return Plotted(tables, tradeoff, runs)
