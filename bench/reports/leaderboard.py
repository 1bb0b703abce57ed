"""Leaderboards: per dataset, one row per experiment, mean +- std over its seeds.

A row is one experiment (:mod:`bench.runs.experiments`): the runs of one experiment identity, one per seed.
Runs that differ in anything but the seed (epochs, a phase setting, weights, precision, data) are other
rows, labelled apart where they would look alike. Built from the stored records alone (no retraining).
Failed runs are counted and shown as failed, never silently dropped or scored as zero. A ``majority`` row
(always predict the most frequent training class) anchors every table: a backbone that does not beat it
has learned nothing.

Rows on the accuracy-vs-latency Pareto front are marked: those are the only backbones worth picking
for *some* latency budget; every other row is beaten on both counts by one of them.

**Latency cells** are the mean over seeds of each run's batch-1 p50, and ``latency_ms_std`` / ``_min`` /
``_max`` its spread. A figure the latency module flagged ``noisy`` (it never stabilised) is left out of the
mean and the spread, and the row's notes say so; a row whose every figure is noisy has no latency. Where a
``bench latency`` pass (:mod:`bench.reports.latency_pass`) in the records' results folder measured a row's
setting, the row takes the pass's figure instead (min and max: its p50's 95% CI), and ``latency_from`` says
which rows did. ``bench leaderboard`` calls :func:`leaderboard` as a script does, so both give one table.

The 95% CIs over test images and the tie marks are :mod:`bench.reports.uncertainty`'s; the renderings
(Markdown, CSV, LaTeX, rich) are :mod:`bench.reports.render`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bench.errors import ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS as HEADLINE
from bench.evaluation.values import compute_metrics
from bench.reports.column_groups import parse_columns
from bench.reports.columns import add_columns
from bench.reports.latency_pass import LatencyPass, pass_for, passes_of
from bench.reports.row_health import row_health
from bench.reports.uncertainty import uncertainty
from bench.runs.experiments import Experiment, group_experiments, labels, legend
from bench.runs.identity import InitialWeights
from bench.runs.record import RunRecord

MAJORITY_PROTOCOL = "baseline"  # the protocol cell of the majority row


@dataclass(frozen=True)
class LatencyAxis:
    """How inference speed enters the trade-off: the leaderboard column, its label, and its direction.

    ``spread``: the columns of its min and max over seeds, where the table has them (None: throughput).
    """

    name: str
    column: str
    label: str
    lower_is_better: bool
    spread: tuple[str, str] | None = None


LATENCY_AXES = {
    "p50": LatencyAxis(
        "p50", "latency_ms", "latency, p50 at batch 1 (ms/image)", True, ("latency_ms_min", "latency_ms_max")
    ),
    "throughput": LatencyAxis("throughput", "throughput", "throughput at batch 1 (images/s)", lower_is_better=False),
}


def latency_axis(name: str) -> LatencyAxis:
    if name not in LATENCY_AXES:
        raise ConfigError(f"unknown latency measure {name!r}; choose one of {', '.join(LATENCY_AXES)}")
    return LATENCY_AXES[name]


def pareto_front(score: ArrayLike, cost: ArrayLike, cost_high: ArrayLike | None = None) -> np.ndarray:
    """Boolean mask of the points no other point dominates, maximising ``score`` and minimising ``cost``.

    Point *j* dominates point *i* when ``score[j] >= score[i]`` and ``cost[j] <= cost[i]`` with at
    least one of the two strict. Hence:

    * exact ties (same score *and* same cost) do not dominate each other: all of them are on the front,
      since neither is a worse choice than the other;
    * a tie on one axis is broken by the other: equal score at a higher cost (or equal cost at a lower
      score) is dominated;
    * a point with a NaN (a failed backbone, a run without latency) is never on the front and
      dominates nothing;
    * a single finite point is the front.

    To maximise a speed such as throughput, pass ``cost=-throughput``. Quadratic in the number of
    points, which is the number of rows of one leaderboard: a few dozen.

    **Within the noise.** Given ``cost_high``, each cost is the interval ``[cost, cost_high]`` (a latency's
    min and max over seeds) and costs are compared as intervals: *j* is no slower than *i* unless *j*'s
    interval lies wholly above *i*'s (``cost[j] > cost_high[i]``), and strictly faster only when it lies
    wholly below (``cost_high[j] < cost[i]``). Two overlapping latencies are then equal, so the less accurate
    of the two is dominated: no point stays on the front by a latency gap smaller than the seeds' spread.
    With ``cost_high == cost`` (one seed) this is the rule above.
    """
    s = np.asarray(score, dtype=float)
    c = np.asarray(cost, dtype=float)
    high = c if cost_high is None else np.asarray(cost_high, dtype=float)
    if s.shape != c.shape or s.shape != high.shape or s.ndim != 1:
        raise ValueError(f"score and cost must be 1-d and of one length, got shapes {s.shape} and {c.shape}")
    valid = np.isfinite(s) & np.isfinite(c) & np.isfinite(high)
    sv, cv, hv = s[valid], c[valid], high[valid]
    # [i, j]: does point j dominate point i?
    no_worse = (sv[None, :] >= sv[:, None]) & (cv[None, :] <= hv[:, None])
    better = (sv[None, :] > sv[:, None]) | (hv[None, :] < cv[:, None])
    front = np.zeros(s.shape, dtype=bool)
    front[valid] = ~(no_worse & better).any(axis=1)
    return front


def majority_source(records: list[RunRecord], dataset: str) -> RunRecord | None:
    """The record whose dataset summary (class counts) defines the majority baseline."""
    return next((r for r in records if r.spec.dataset == dataset and r.dataset is not None), None)


def majority_row(records: list[RunRecord], dataset: str) -> dict | None:
    """Test metrics of always predicting the training split's most frequent class."""
    rec = majority_source(records, dataset)
    if rec is None or rec.dataset is None:
        return None
    counts = rec.dataset.class_counts
    k = len(counts["train"])
    y = np.repeat(np.arange(k), counts["test"])
    probs = np.zeros((len(y), k))
    probs[:, int(np.argmax(counts["train"]))] = 1.0
    metrics = compute_metrics(y, probs, rec.dataset.classes).values
    return {
        "dataset": dataset,
        "backbone": "majority",
        "protocol": MAJORITY_PROTOCOL,
        "resolution": rec.dataset.resolution,
        "experiment": "",
        "n": 1,
        "failed": 0,
        **{f"{m}_mean": metrics[m] for m in HEADLINE},
        **{f"{m}_std": np.nan for m in HEADLINE},
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    series = pd.Series(values, dtype=float)
    return (series.mean() if len(series) else np.nan), (series.std(ddof=1) if len(series) > 1 else np.nan)


def _latency_cells(ok: tuple[RunRecord, ...], passes: Sequence[LatencyPass] = ()) -> tuple[dict, list[str]]:
    """Mean and spread of the runs' batch-1 latency, noisy figures left out (and named in the notes); or a
    ``bench latency`` pass's figure, where one measured the runs' setting."""
    found = pass_for(ok, passes)
    if found is not None:
        low, high = found.ci95 or (found.figure.ms_p50, found.figure.ms_p50)
        return {
            "latency_ms": found.figure.ms_p50,
            "latency_ms_std": np.nan,
            "latency_ms_min": low,
            "latency_ms_max": high,
            "throughput": found.figure.throughput if found.figure.throughput is not None else np.nan,
            "latency_noisy": 0,
            "latency_device": found.device,
            "latency_from": f"latency/{found.path.name}",
        }, []
    figures = [(r.spec.seed, r.latency_b1()) for r in ok]
    measured = [(s, f) for s, f in figures if f is not None and f.ms_p50 is not None]
    kept = [f for _, f in measured if not f.noisy]
    ms = [f.ms_p50 for f in kept]
    cells = {
        "latency_ms": np.mean(ms) if ms else np.nan,
        "latency_ms_std": np.std(ms, ddof=1) if len(ms) > 1 else np.nan,
        "latency_ms_min": min(ms) if ms else np.nan,
        "latency_ms_max": max(ms) if ms else np.nan,
        "throughput": np.mean([f.throughput for f in kept if f.throughput is not None] or [np.nan]),
        "latency_noisy": len(measured) - len(kept),
        "latency_device": " / ".join(sorted({f.device for f in kept})),
        "latency_from": "runs",
    }
    notes = []
    noisy = [(s, f) for s, f in measured if f.noisy]
    if noisy:
        seeds = ", ".join(str(s) for s, _ in noisy)
        reason = noisy[0][1].noisy_reason or "it did not stabilise"
        if kept:
            notes.append(f"latency of seed {seeds} is noisy ({reason}): left out of the latency mean")
        else:
            notes.append(f"latency of every seed is noisy ({reason}): latency n/a")
    return cells, notes


def source_label(weights: InitialWeights) -> str:
    """An experiment's initial weights as a table cell: ``none`` (random init), ``ImageNet`` (the library's
    pretrained weights), ``file <sha256 prefix>``, or the source run (``run:ham10000/resnet18/scratch``)."""
    kind = weights.source
    if kind == "random-init":
        return "none"
    if kind == "default-pretrained":
        return "ImageNet"
    if kind == "file":
        return f"file {str(weights.sha256)[:8]}"
    if kind == "run":
        return f"run:{weights.run}"
    return kind


def _sources_differ(rows: list[dict]) -> bool:
    """Whether the table needs a source column: its rows differ in initial weights beyond what their protocol
    says. A protocol already tells random init (``pretrained = false``) from the library's weights, so the
    column appears once some row starts from a file or another run (and the rows do not all share it)."""
    sources = {r["source"] for r in rows}
    return len(sources) > 1 and any(s not in ("none", "ImageNet") for s in sources)


def _row(experiment: Experiment, label: str, passes: Sequence[LatencyPass]) -> tuple[dict, list[str]]:
    ok = experiment.ok
    row = {
        "dataset": experiment.dataset,
        "backbone": experiment.backbone,
        "protocol": label,
        "source": source_label(experiment.identity.weights),
        "resolution": experiment.resolution,
        "experiment": experiment.id,
        "n": len(ok),
        "failed": len(experiment.runs) - len(ok),
    }
    for m in HEADLINE:
        row[f"{m}_mean"], row[f"{m}_std"] = _mean_std([r.score(m) for r in ok])
    row["params_m"] = np.mean([r.backbone.params / 1e6 for r in ok if r.backbone] or [np.nan])
    row["gmacs"] = np.mean([r.backbone.gmacs for r in ok if r.backbone] or [np.nan])
    latency, notes = _latency_cells(ok, passes)
    row |= latency
    row["train_s"] = np.mean([r.timings_s["train"] for r in ok if "train" in r.timings_s] or [np.nan])
    row["epochs_run"] = np.mean([r.epochs_run for r in ok] or [np.nan])
    health = row_health(ok)
    row |= health.cells()
    notes.extend(health.notes)
    if experiment.note:
        notes.insert(0, experiment.note)
    return row, notes


def dataset_experiments(records: list[RunRecord], dataset: str) -> list[Experiment]:
    """The experiments on ``dataset``: the rows of its leaderboard, in record order."""
    return group_experiments(r for r in records if r.spec.dataset == dataset)


def leaderboard(
    records: list[RunRecord],
    dataset: str,
    metric: str = "balanced_accuracy",
    latency: str = "p50",
    passes: Sequence[LatencyPass] | None = None,
    columns: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """The aggregated table for ``dataset``, best mean ``metric`` first, ranked, majority row included.

    One row per experiment; ``experiment`` is its id, ``protocol`` its label (:func:`bench.runs.experiments.labels`),
    ``source`` its initial weights (:func:`source_label`; only where some row starts from a file or another run).
    ``n`` counts the finished seeds behind each mean; std is the sample std (ddof=1), NaN for n < 2.
    ``ranked`` is False for a row most of whose seeds did not learn on validation; it sorts below the ranked rows
    with no rank, is off the Pareto front and is not tie-tested (:mod:`bench.reports.row_health`, which also gives
    ``did_not_learn``, ``not_converged`` and ``loss_alarm``, counts of seeds). ``epochs_run``: mean epochs trained.
    ``pareto`` marks the rows on the front of mean ``metric`` against the ``latency`` measure (a key
    of :data:`LATENCY_AXES`), among backbone rows that have both numbers. The CI, tie and ``p_vs_rank1``
    columns are :func:`bench.reports.uncertainty.uncertainty`'s; ``note`` says what a row's cells leave out
    or why it has no CI. ``passes``: ``bench latency`` figures that stand for the runs' own where they measured
    the same setting (``latency_from``: the pass's file, else ``runs``, whether or not their figures settled);
    None (the default): the passes of the results folders the records were read from
    (:func:`bench.reports.latency_pass.passes_of`), as ``bench leaderboard`` takes them; ``()``: none.
    ``table.attrs``: ``metric`` (the sort metric) and ``legend`` (what hash labels stand for). ``columns``: optional
    column groups to add, ``"calibration,subgroups"`` or a list (:data:`bench.reports.column_groups.COLUMN_GROUPS`;
    None: the default columns only), each cell from the rows' saved probabilities
    (:func:`bench.reports.columns.add_columns`).
    ``records`` must be RunRecords (a folder's path is refused, naming :func:`bench.load_records` that reads it)
    and ``dataset`` one of theirs: anything else is a one-line :class:`ConfigError`, never an empty table.
    """
    records = _as_records(records)
    if dataset not in datasets_in(records):
        present = ", ".join(repr(d) for d in datasets_in(records))
        given = f"the records given are of {present}" if records else "no records were given"
        raise ConfigError(f"no records of dataset {dataset!r}: {given}")
    if metric not in HEADLINE:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(HEADLINE)}")
    groups = parse_columns(columns)
    axis = latency_axis(latency)
    passes = passes_of(records) if passes is None else passes
    experiments = dataset_experiments(records, dataset)
    if not experiments:
        return pd.DataFrame()
    names = labels(experiments)
    built = [_row(e, names[e.id], passes) for e in experiments]
    rows, notes = [r for r, _ in built], {e.id: n for e, (_, n) in zip(experiments, built, strict=True)}
    base = majority_row(records, dataset)
    table = pd.DataFrame(rows + ([base | {"source": ""}] if base else []))
    if not _sources_differ(rows):
        table = table.drop(columns="source")
    key = f"{metric}_mean"
    # Rows that did not learn go below the ranked ones (the majority baseline among those), unranked.
    table["ranked"] = table["ranked"].astype("boolean").fillna(True).astype(bool)
    table = table.sort_values(["ranked", key], ascending=False, na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    table.insert(0, "rank", table[key].where(table["ranked"]).rank(ascending=False, method="min"))
    table.insert(1, "pareto", _pareto_column(table, key, axis))
    by_id = {e.id: e for e in experiments}
    row_experiments = {i: by_id.get(exp) for i, exp in table["experiment"].items()}
    unranked = set(table.index[~table["ranked"]])
    extra = uncertainty(row_experiments, majority_source(records, dataset), metric, unranked)
    extra["note"] = [
        "; ".join([*notes.get(table.loc[i, "experiment"], []), *([n] if n else [])]) for i, n in extra["note"].items()
    ]
    table = pd.concat([table, extra], axis=1)
    if groups:
        table = add_columns(table, row_experiments, groups)
    table.attrs["metric"] = metric
    table.attrs["legend"] = legend(experiments)
    return table


def _pareto_column(table: pd.DataFrame, key: str, axis: LatencyAxis) -> np.ndarray:
    """The Pareto mask over ranked backbone rows; the majority baseline is a reference line, never a choice, and
    a row that did not learn is no choice either."""
    cost = table[axis.column] if axis.lower_is_better else -table[axis.column]
    candidate = ((table["protocol"] != MAJORITY_PROTOCOL) & table["ranked"]).to_numpy()
    mask = np.zeros(len(table), dtype=bool)
    mask[candidate] = pareto_front(table.loc[candidate, key], cost[candidate])
    return mask


def latency_sources(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Where a table's latency column came from: the ``bench latency`` pass files some rows took (``latency/...``)
    and the backbones of the rows that kept their runs' own figures."""
    sources = table["latency_from"].fillna("") if "latency_from" in table else pd.Series(dtype=str)
    passes = sorted({s for s in sources if s.startswith("latency/")})
    return passes, table.loc[sources == "runs", "backbone"].tolist()


def latency_devices(table: pd.DataFrame) -> list[str]:
    """Distinct devices behind a table's latency column: more than one means they are not comparable."""
    return sorted(
        {d for cell in table.get("latency_device", []) if isinstance(cell, str) and cell for d in cell.split(" / ")}
    )


def _as_records(records: object) -> list[RunRecord]:
    """``records`` as a list of RunRecords, or a one-line ConfigError saying what was passed instead."""
    if isinstance(records, str | Path):
        raise ConfigError(
            f"records must be a list of RunRecord, not the path {str(records)!r}: "
            f"pass bench.load_records({str(records)!r}) to read a results folder"
        )
    items = list(records) if isinstance(records, Iterable) and not isinstance(records, bytes | dict) else None
    wrong = next((r for r in items if not isinstance(r, RunRecord)), None) if items is not None else records
    if items is None or wrong is not None:
        raise ConfigError(
            f"records must be a list of RunRecord (from bench.load_records), got {type(records).__name__}"
            + ("" if items is None else f" with an item of type {type(wrong).__name__}")
        )
    return items


def datasets_in(records: list[RunRecord]) -> list[str]:
    return sorted({r.spec.dataset for r in records})
