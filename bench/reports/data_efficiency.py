"""Data efficiency: a row's test metric against the share of the training split it trained on (issue 31).

Runs of a sweep with ``train_fractions`` (:mod:`bench.data.fractions`: stratified, nested, the same images for
every backbone and seed) differ from each other only in ``train_fraction``, so each fraction is its own experiment
and leaderboard row. Here they are put back together: a *row* is a leaderboard row with the fraction taken out of
its identity (one backbone under one protocol, its label as :func:`bench.runs.experiments.labels` gives it), and
each (row, fraction) has the seed mean and sample std of the metric (:func:`bench.evaluation.spread.mean_std`).
A (row, fraction) most of whose seeds did not learn on validation (:mod:`bench.reports.row_health`) stays in the
table and on the curve, marked ``ranked = False`` and drawn hollow with a ✗: a curve that drops to the majority
floor at 10% says something about the backbone, and hiding the point would hide it.

:func:`plot_data_efficiency` draws ``<dataset>-data-efficiency.png`` and ``.svg`` per dataset whose records hold
more than one fraction: metric against fraction on a log axis, one line per row with a band of ± one std over
seeds, and the majority baseline as the floor; ``.csv`` beside them holds the table drawn. The HTML report shows
each figure with :func:`efficiency_sentence`, what it shows in one sentence generated from the same table.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from bench.errors import ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.evaluation.spread import mean_std
from bench.files import atomic_write_bytes
from bench.reports.leaderboard import datasets_in, majority_row
from bench.reports.plots import STYLE, majority_line, save
from bench.reports.row_health import DID_NOT_LEARN_MARK, row_health
from bench.runs.experiments import Experiment, group_experiments, labels
from bench.runs.record import RunRecord


def without_fraction(record: RunRecord) -> RunRecord:
    """``record`` with the training fraction taken out of its identity: its experiment is then its row's. A run whose
    sweep scaled its epochs by 1/fraction (``spec.fraction_budget = "steps"``: :meth:`bench.runs.sweep.Group.epochs_at`)
    also gets the whole split's epochs back, ``e`` from ``ceil(e / f)``, so its row is its 100% run's."""
    identity = dataclasses.replace(record.identity, train_fraction=1.0)
    if record.spec.fraction_budget == "steps":
        f, protocol = record.spec.train_fraction, identity.protocol
        phases = tuple(dataclasses.replace(p, epochs=int(round(p.epochs * f, 6))) for p in protocol.phases)
        identity = dataclasses.replace(identity, protocol=dataclasses.replace(protocol, phases=phases))
    return dataclasses.replace(record, identity=identity)


def fractions_in(records: list[RunRecord], dataset: str) -> list[float]:
    """The training fractions of ``dataset``'s records, ascending."""
    return sorted({r.spec.train_fraction for r in records if r.spec.dataset == dataset})


def data_efficiency(records: list[RunRecord], dataset: str, metric: str = "balanced_accuracy") -> pd.DataFrame:
    """One line per (row, fraction) of ``dataset``: the seed mean and std of test ``metric``, and its health.

    Columns: ``row`` (``backbone protocol``, the protocol as leaderboards label it), ``backbone``, ``protocol``,
    ``experiment`` (the row's id, fraction left out), ``fraction``, ``train_images`` (mean over the finished seeds
    of the training images their records say they used), ``n`` (finished seeds), ``failed``, ``<metric>_mean``,
    ``<metric>_std`` (NaN for one seed), ``ranked`` (False where most seeds did not learn) and ``did_not_learn``
    (a count of seeds). Sorted by row, then fraction. ``attrs``: ``metric``, ``majority`` (the majority baseline's
    ``metric``, NaN without one) and ``dataset``.
    """
    if metric not in HEADLINE_METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(HEADLINE_METRICS)}")
    on = [r for r in records if r.spec.dataset == dataset]
    if not on:
        present = ", ".join(repr(d) for d in datasets_in(records)) or "no dataset"
        raise ConfigError(f"no records of dataset {dataset!r}: the records given are of {present}")
    fractions = fractions_in(on, dataset)
    at = {f: [without_fraction(r) for r in on if r.spec.train_fraction == f] for f in fractions}
    by_fraction = {f: group_experiments(runs) for f, runs in at.items()}
    rows: dict[str, Experiment] = {}
    for experiments in by_fraction.values():
        for e in experiments:
            rows.setdefault(e.id, e)
    names = labels(list(rows.values()))
    lines = []
    for fraction, experiments in by_fraction.items():
        for e in experiments:
            ok = e.ok
            mean, std = mean_std([r.score(metric) for r in ok])
            health = row_health(ok)
            images = [sum(r.dataset.class_counts["train"]) for r in ok if r.dataset is not None]
            lines.append(
                {
                    "row": f"{e.backbone} {names[e.id]}",
                    "backbone": e.backbone,
                    "protocol": names[e.id],
                    "experiment": e.id,
                    "fraction": fraction,
                    "train_images": float(np.mean(images)) if images else np.nan,
                    "n": len(ok),
                    "failed": len(e.runs) - len(ok),
                    f"{metric}_mean": mean,
                    f"{metric}_std": std,
                    "ranked": health.ranked,
                    "did_not_learn": len(health.did_not_learn),
                }
            )
    table = pd.DataFrame(lines).sort_values(["row", "fraction"], kind="stable").reset_index(drop=True)
    whole = [r for r in on if r.spec.train_fraction == fractions[-1]]  # the floor of the largest share's class counts
    base = majority_row(whole, dataset)
    table.attrs.update(metric=metric, dataset=dataset, majority=np.nan if base is None else base[f"{metric}_mean"])
    return table


def data_efficiency_figure(table: pd.DataFrame) -> Figure | None:
    """The curves of a :func:`data_efficiency` table; None where no point has a mean."""
    metric, dataset = table.attrs["metric"], table.attrs["dataset"]
    mean, std = f"{metric}_mean", f"{metric}_std"
    drawn = table[table[mean].notna()]
    if drawn.empty:
        return None
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(8.0, 4.8), layout="constrained")
        ax = fig.add_subplot()
        colours = mpl.colormaps["tab10"]
        for i, (row, points) in enumerate(drawn.groupby("row", sort=True)):
            colour = colours(i % 10)
            x, y = points["fraction"].to_numpy(float), points[mean].to_numpy(float)
            spread = points[std].fillna(0.0).to_numpy(float)
            learned = points["ranked"].to_numpy(bool)
            unlearned = "" if learned.all() else f" ({DID_NOT_LEARN_MARK} at {_shares(x[~learned])})"
            ax.plot(x, y, color=colour, linewidth=1.5, label=f"{row}{unlearned}", zorder=3)
            ax.fill_between(x, y - spread, y + spread, color=colour, alpha=0.15, linewidth=0, zorder=2)
            ax.scatter(x[learned], y[learned], color=colour, s=28, zorder=4)
            ax.scatter(x[~learned], y[~learned], facecolors="white", edgecolors=colour, s=46, linewidths=1.5, zorder=4)
        majority_line(ax, table.attrs.get("majority"))
        if not drawn["ranked"].all():
            ax.scatter([], [], facecolors="white", edgecolors="0.3", s=46, linewidths=1.5,
                       label=f"{DID_NOT_LEARN_MARK} did not learn on validation (most seeds)")  # fmt: skip
        _fraction_axis(ax, table)
        ax.set_ylabel(f"test {metric} (mean ± std over seeds)")
        ax.grid(True, which="major", alpha=0.25)
        ax.margins(y=0.1)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        ax.set_title(f"{dataset}: test {metric} vs share of the training split")
        seeds = ", ".join(map(str, sorted(set(drawn["n"].astype(int)))))
        fig.supxlabel(
            f"seeds per point: {seeds}  ·  band: ± one std over seeds  ·  subsets stratified by class, nested, the "
            "same images for every row and seed; validation and test whole",
            fontsize=8,
            color="0.3",
        )
    return fig


def _shares(fractions: np.ndarray) -> str:
    """``10%, 25%``: fractions as percentages (``12.5%`` where they need it)."""
    return ", ".join(f"{f * 100:g}%" for f in fractions)


def _fraction_axis(ax, table: pd.DataFrame) -> None:
    """A log x axis with a tick at each fraction, labelled with its share and the training images it holds."""
    fractions = sorted(table["fraction"].unique())
    images = table.groupby("fraction")["train_images"].median()
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(fractions))
    ax.xaxis.set_minor_locator(NullLocator())
    ticks = [f"{_shares(np.array([f]))}\n{images[f]:.0f} img" if pd.notna(images[f]) else _shares(np.array([f]))
             for f in fractions]  # fmt: skip
    ax.set_xticklabels(ticks)
    ax.set_xlim(fractions[0] / 1.25, fractions[-1] * 1.25)
    ax.set_xlabel("share of the training split (log scale; images trained on)")


def plot_data_efficiency(records: list[RunRecord], metric: str, out_dir: Path) -> dict[str, list[Path]]:
    """``<dataset>-data-efficiency.png``, ``.svg`` and ``.csv`` under ``out_dir`` for each dataset whose records
    hold more than one training fraction; by dataset, the files written (none for the others)."""
    written = {}
    for dataset in datasets_in(records):
        if len(fractions_in(records, dataset)) < 2:
            continue
        table = data_efficiency(records, dataset, metric)
        fig = data_efficiency_figure(table)
        if fig is None:
            continue
        stem = out_dir / f"{dataset}-data-efficiency"
        paths = save(fig, stem, ("png", "svg"), dpi=150)
        csv = stem.with_name(f"{stem.name}.csv")
        atomic_write_bytes(csv, table.to_csv(index=False, float_format="%.6g").encode())
        written[dataset] = [*paths, csv]
    return written


def _point(line: pd.Series, metric: str) -> str:
    """``0.812 ± 0.010``: a point's seed mean and std (the mean alone for one seed)."""
    mean, std = line[f"{metric}_mean"], line[f"{metric}_std"]
    return f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def _images(table: pd.DataFrame, fraction: float) -> str:
    images = table.loc[table["fraction"] == fraction, "train_images"].median()
    return f"{_shares(np.array([fraction]))} of the training split" + (
        f" ({images:.0f} images)" if pd.notna(images) else ""
    )


def efficiency_sentence(table: pd.DataFrame) -> str:
    """What a :func:`data_efficiency` table's figure shows, in one sentence: the best row at the smallest share, the
    leader at the largest, and which rows reach the leader's score (its seed mean) with less, from what share."""
    metric = table.attrs["metric"]
    mean = f"{metric}_mean"
    scored = table[table[mean].notna() & table["ranked"].astype(bool)]
    if scored.empty:
        return f"No row learned at any share of the training split: no {metric} to compare."
    least, most = scored["fraction"].min(), scored["fraction"].max()
    first = scored.loc[scored.loc[scored["fraction"] == least, mean].idxmax()]
    leader = scored.loc[scored.loc[scored["fraction"] == most, mean].idxmax()]
    if least == most:
        return f"Only at {_images(table, most)} did a row learn: {leader['row']} leads at {_point(leader, metric)}."
    target = leader[mean]
    reached = scored[(scored["fraction"] < most) & (scored[mean] >= target - 1e-9)]  # equal, up to float sums
    early = reached.groupby("row", sort=False)["fraction"].min()
    if early.empty:
        reach = f"no row reaches {target:.3f} with less than {_shares(np.array([most]))}"
    else:
        reach = f"{target:.3f} is reached with less data by " + ", ".join(
            f"{row} from {_shares(np.array([f]))}" for row, f in early.sort_values().items()
        )
    return (
        f"With {_images(table, least)}, the best row is {first['row']} at {_point(first, metric)} test {metric}; "
        f"with {_images(table, most)}, {leader['row']} leads at {_point(leader, metric)}, and {reach}."
    )
