"""Leaderboards: per dataset, one row per backbone x protocol x resolution, mean +- std over seeds.

Built from the stored records alone (no retraining). Failed runs are counted and shown as failed,
never silently dropped or scored as zero. A ``majority`` row (always predict the most frequent
training class) anchors every table: a backbone that does not beat it has learned nothing.

Rows on the accuracy-vs-latency Pareto front are marked: those are the only backbones worth picking
for *some* latency budget; every other row is beaten on both counts by one of them.

Two uncertainties, labelled apart because they answer different questions:

* **mean ± std over seeds**: how much a backbone's score moves when it is trained again;
* **95% CI over test images**: how much the finite test set leaves the score uncertain. Each seed's
  saved test probabilities are rescored on 1000 bootstrap resamples of the test images and averaged
  over seeds; the CI is the percentile interval. Every row of one dataset is rescored on the *same*
  resamples (a fixed seed), so the committed tables reproduce byte for byte.

Rows **tied with the leader** are marked ≈: the paired bootstrap of their seed-averaged sort metric
against rank 1's, on the same resamples, is not significant (two-sided p >= 0.05, one test per row, no
multiplicity correction; :meth:`bench.evaluation.bootstrap.Resampled.paired` documents the test). Only rows tested on
the same images as rank 1 (same ids and labels in ``.probs.npz``) can be compared; the others stay
unmarked, with the reason in the notes. The majority baseline is scored on rank 1's test images too,
and is marked when tied: that is an alarm, not a credit -- rank 1 has then not been shown to beat
always predicting the most frequent class.

A run whose ``.probs.npz`` is missing or unreadable does not stop the table: a warning names the file,
and its row's CI and tie mark are n/a, with the reason in the notes (never a path, so that the
Markdown does not depend on where the results folder is).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from rich.table import Table

from bench.errors import ConfigError, DataError, ResultsError
from bench.evaluation.bootstrap import resample_models
from bench.evaluation.metrics import HEADLINE_METRICS as HEADLINE
from bench.evaluation.metrics import compute_metrics, validate_predictions
from bench.runs.record import atomic_write_bytes, protocol_label, read_probs

GROUP = ["dataset", "backbone", "protocol", "resolution"]
MAJORITY_PROTOCOL = "baseline"  # the protocol cell of the majority row
PARETO_MARK = "★"
PARETO_NOTE = (
    f"{PARETO_MARK} Pareto-optimal: no other row is at least as accurate and at least as fast, and strictly better "
    "on one of the two."
)
CI_RESAMPLES = 1000
CI_SEED = 0  # fixed: the committed tables must reproduce byte for byte
TIE_ALPHA = 0.05
TIE_MARK = "≈"
UNCERTAINTY_NOTE = (
    "Metric cells: mean ± sample std over the n seeds (training variation). 95% CI: percentile bootstrap over "
    f"the test images ({CI_RESAMPLES} resamples, the same for every row; each seed's saved probabilities "
    "rescored, then averaged over seeds): the uncertainty from the finite test set."
)
NO_PROBS = "no saved test probabilities: 95% CI n/a"


@dataclass(frozen=True)
class LatencyAxis:
    """How inference speed enters the trade-off: the leaderboard column, its label, and its direction."""

    name: str
    column: str
    label: str
    lower_is_better: bool


LATENCY_AXES = {
    "p50": LatencyAxis("p50", "latency_ms", "latency, p50 at batch 1 (ms/image)", lower_is_better=True),
    "throughput": LatencyAxis("throughput", "throughput", "throughput at batch 1 (images/s)", lower_is_better=False),
}


def latency_axis(name: str) -> LatencyAxis:
    if name not in LATENCY_AXES:
        raise ConfigError(f"unknown latency measure {name!r}; choose one of {', '.join(LATENCY_AXES)}")
    return LATENCY_AXES[name]


def pareto_front(score: ArrayLike, cost: ArrayLike) -> np.ndarray:
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
    """
    s = np.asarray(score, dtype=float)
    c = np.asarray(cost, dtype=float)
    if s.shape != c.shape or s.ndim != 1:
        raise ValueError(f"score and cost must be 1-d and of one length, got shapes {s.shape} and {c.shape}")
    valid = np.isfinite(s) & np.isfinite(c)
    sv, cv = s[valid], c[valid]
    # [i, j]: does point j dominate point i?
    no_worse = (sv[None, :] >= sv[:, None]) & (cv[None, :] <= cv[:, None])
    better = (sv[None, :] > sv[:, None]) | (cv[None, :] < cv[:, None])
    front = np.zeros(s.shape, dtype=bool)
    front[valid] = ~(no_worse & better).any(axis=1)
    return front


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run record, with the headline test metrics, model size and batch-1 latency."""
    rows = []
    for r in records:
        spec = r["spec"]
        row = {
            "dataset": spec["dataset"],
            "backbone": spec["backbone"],
            "protocol": protocol_label(spec),
            "resolution": r["effective_resolution"],
            "seed": spec["seed"],
            "status": r["status"],
            "error": r.get("error"),
            "key": r["key"],
        }
        if r["status"] == "ok":
            row |= {m: r["test"].get(m) for m in HEADLINE}
            row |= {"params_m": r["backbone"]["params"] / 1e6, "gmacs": r["backbone"]["gmacs"]}
            b1 = next((lat for lat in r.get("latency", []) if lat.get("batch_size") == 1), None)
            if b1 is not None:
                row["latency_ms"] = b1.get("ms_per_image_p50")
                row["throughput"] = b1.get("throughput_img_s")
                row["latency_device"] = _device_label(b1.get("fingerprint") or r["environment"]["device"])
            row["train_s"] = r["timings_s"].get("train")
        rows.append(row)
    return pd.DataFrame(rows)


def _device_label(fp: dict) -> str:
    return str(fp.get("gpu_name") or fp.get("name") or fp.get("cpu_model") or fp.get("kind") or "unknown")


def _majority_source(records: list[dict], dataset: str) -> dict | None:
    """The record whose dataset summary (class counts) defines the majority baseline."""
    return next((r for r in records if r["spec"]["dataset"] == dataset and "dataset" in r), None)


def majority_row(records: list[dict], dataset: str) -> dict | None:
    """Test metrics of always predicting the training split's most frequent class."""
    rec = _majority_source(records, dataset)
    if rec is None:
        return None
    counts = rec["dataset"]["class_counts"]
    k = len(counts["train"])
    y = np.repeat(np.arange(k), counts["test"])
    probs = np.zeros((len(y), k))
    probs[:, int(np.argmax(counts["train"]))] = 1.0
    metrics = compute_metrics(y, probs, rec["dataset"]["classes"]).values
    return {
        "dataset": dataset,
        "backbone": "majority",
        "protocol": MAJORITY_PROTOCOL,
        "resolution": rec["dataset"]["resolution"],
        "n": 1,
        "failed": 0,
        **{f"{m}_mean": metrics[m] for m in HEADLINE},
        **{f"{m}_std": np.nan for m in HEADLINE},
    }


def leaderboard(
    records: list[dict], dataset: str, metric: str = "balanced_accuracy", latency: str = "p50"
) -> pd.DataFrame:
    """The aggregated table for ``dataset``, best mean ``metric`` first, ranked, majority row included.

    ``n`` counts the finished seeds behind each mean; std is the sample std (ddof=1), NaN for n < 2.
    ``pareto`` marks the rows on the front of mean ``metric`` against the ``latency`` measure (a key
    of :data:`LATENCY_AXES`), among backbone rows that have both numbers. ``<m>_ci95_low``/``_high``
    bound each headline metric's 95% test-image CI, ``p_vs_rank1`` is the paired bootstrap p-value of
    ``metric`` against rank 1, ``tied`` says p >= :data:`TIE_ALPHA`, and ``note`` says why a row has no
    CI or was not compared (see the module docstring). ``table.attrs["metric"]`` keeps the sort metric.
    """
    if metric not in HEADLINE:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(HEADLINE)}")
    axis = latency_axis(latency)
    runs = runs_frame(records)
    runs = runs[runs["dataset"] == dataset] if not runs.empty else runs
    if runs.empty:
        return pd.DataFrame()
    rows = []
    for keys, group in runs.groupby(GROUP, sort=False):
        ok = group[group["status"] == "ok"]
        row = dict(zip(GROUP, keys, strict=True)) | {"n": len(ok), "failed": len(group) - len(ok)}
        for m in HEADLINE:
            values = ok[m].astype(float) if m in ok else pd.Series(dtype=float)
            row[f"{m}_mean"] = values.mean() if len(values) else np.nan
            row[f"{m}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        for col in ("params_m", "gmacs", "latency_ms", "throughput", "train_s"):
            row[col] = ok[col].mean() if col in ok and len(ok) else np.nan
        devices = sorted(set(ok["latency_device"].dropna())) if "latency_device" in ok else []
        row["latency_device"] = " / ".join(devices)
        rows.append(row)
    base = majority_row(records, dataset)
    table = pd.DataFrame(rows + ([base] if base else []))
    key = f"{metric}_mean"
    table = table.sort_values(key, ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    table.insert(0, "rank", table[key].rank(ascending=False, method="min"))
    table.insert(1, "pareto", _pareto_column(table, key, axis))
    table = pd.concat([table, _uncertainty(records, table, dataset, metric)], axis=1)
    table.attrs["metric"] = metric
    return table


@dataclass(frozen=True)
class _Predictions:
    """A row's saved test predictions: one ``(N, K)`` array per seed, all on the same labelled images."""

    ids: np.ndarray
    labels: np.ndarray
    probs: tuple[np.ndarray, ...]

    def same_test(self, other: _Predictions) -> bool:
        return (
            np.array_equal(self.ids, other.ids)
            and np.array_equal(self.labels, other.labels)
            and self.probs[0].shape[1] == other.probs[0].shape[1]
        )


def _saved_probs(record: dict) -> dict | None:
    """A run's saved test predictions, checked; None, with a warning naming the file, where there are none."""
    if "_path" not in record:
        warnings.warn(
            f"run {record['key']}: not read from a results folder, so no saved test probabilities", stacklevel=2
        )
        return None
    path = Path(record["_path"]).with_suffix(".probs.npz")
    if not path.is_file():
        warnings.warn(f"{path}: missing, so its leaderboard row has no 95% CI", stacklevel=2)
        return None
    try:
        saved = read_probs(path)
        validate_predictions(saved["labels"], saved["probs"])
        return saved
    except ResultsError as err:
        problem = str(err)  # names the file
    except DataError as err:
        problem = f"{path}: {err}"
    warnings.warn(f"{problem}; its leaderboard row has no 95% CI", stacklevel=2)
    return None


def _row_predictions(runs: list[dict]) -> _Predictions | str:
    """The predictions of a row's seeds, or why it has none (a note for the table)."""
    saved = [_saved_probs(r) for r in runs]
    if any(s is None for s in saved):
        return NO_PROBS
    seeds = [_Predictions(s["ids"], s["labels"], (s["probs"],)) for s in saved]
    if not all(seeds[0].same_test(other) for other in seeds[1:]):
        return "its seeds were tested on different images: 95% CI n/a"
    return _Predictions(seeds[0].ids, seeds[0].labels, tuple(s.probs[0] for s in seeds))


def _majority_predictions(source: dict, on: _Predictions) -> _Predictions | str:
    """Always the training majority class of ``source``'s dataset summary, on the images of ``on``.

    Only where those images carry the test class counts the baseline's metrics were computed from.
    """
    counts = source["dataset"]["class_counts"]
    k = len(counts["train"])
    if np.bincount(on.labels, minlength=k).tolist() != list(counts["test"]):
        return "the compared rows' test labels do not match this baseline's test class counts: 95% CI n/a"
    probs = np.zeros((on.labels.size, k))
    probs[:, int(np.argmax(counts["train"]))] = 1.0
    return _Predictions(on.ids, on.labels, (probs,))


def _uncertainty(records: list[dict], table: pd.DataFrame, dataset: str, metric: str) -> pd.DataFrame:
    """Per row of the sorted ``table``: 95% CIs of the headline metrics, the tie test against rank 1, notes.

    Rows are grouped by test images; each group is resampled once for every headline metric (the same
    resamples whatever the group, since the seed is fixed), and everything is read off those scores.
    """
    found, notes = _predictions_by_row(records, table, dataset)
    ci_columns = [f"{m}_ci95_{end}" for m in HEADLINE for end in ("low", "high")]
    out = pd.DataFrame(np.nan, index=table.index, columns=[*ci_columns, "p_vs_rank1"])
    leader = table.index[0]
    for group in _same_test_groups(found):
        scores = resample_models(
            found[group[0]].labels, {str(i): found[i].probs for i in group}, HEADLINE, CI_RESAMPLES, CI_SEED
        )
        for i in group:
            for m in HEADLINE:
                ci = scores[m].ci(str(i), 0.95)
                out.loc[i, [f"{m}_ci95_low", f"{m}_ci95_high"]] = ci.low, ci.high
                if m == metric and ci.n_skipped:
                    notes[i].append(
                        f"95% CI from {ci.n_resamples - ci.n_skipped} of {ci.n_resamples} resamples "
                        f"({metric} is undefined on the others: a class is missing from them)"
                    )
            if i == leader:
                continue
            if leader in group:
                out.loc[i, "p_vs_rank1"] = scores[metric].paired(str(leader), str(i)).p_value
            else:
                why = "rank 1 has no saved test probabilities" if leader not in found else "tested on other images"
                notes[i].append(f"not compared with rank 1: {why}")
    out["tied"] = out["p_vs_rank1"] >= TIE_ALPHA
    out["note"] = ["; ".join(notes[i]) for i in table.index]
    return out


def _predictions_by_row(
    records: list[dict], table: pd.DataFrame, dataset: str
) -> tuple[dict[int, _Predictions], dict[int, list[str]]]:
    """Each row's test predictions where it has them, and the notes of the rows that have none.

    The majority baseline is scored on the images of the best-ranked row with predictions (rank 1's
    whenever it has them): that is where it is compared.
    """
    runs_of: dict[tuple, list[dict]] = {}
    for r in sorted(records, key=lambda r: r["spec"]["seed"]):
        if r["status"] == "ok" and r["spec"]["dataset"] == dataset:
            runs_of.setdefault((r["spec"]["backbone"], r["spec"]["protocol"], r["effective_resolution"]), []).append(r)
    found: dict[int, _Predictions] = {}
    notes: dict[int, list[str]] = {i: [] for i in table.index}
    majority = table["protocol"] == MAJORITY_PROTOCOL
    for i, row in table[~majority].iterrows():
        runs = runs_of.get((row["backbone"], row["protocol"], row["resolution"]))
        result = _row_predictions(runs) if runs else None  # None: every run failed, nothing to score
        if isinstance(result, str):
            notes[i].append(result)
        elif result is not None:
            found[i] = result
    reference = next((found[i] for i in table.index if i in found), None)
    for i in table.index[majority]:
        source = _majority_source(records, dataset)
        result = _majority_predictions(source, reference) if reference and source else NO_PROBS
        if isinstance(result, str):
            notes[i].append(result)
        else:
            found[i] = result
    return found, notes


def _same_test_groups(found: dict[int, _Predictions]) -> list[list[int]]:
    """Row indices grouped by the images they were tested on."""
    groups: list[list[int]] = []
    for i, predictions in found.items():
        group = next((g for g in groups if found[g[0]].same_test(predictions)), None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    return groups


def _pareto_column(table: pd.DataFrame, key: str, axis: LatencyAxis) -> np.ndarray:
    """The Pareto mask over backbone rows; the majority baseline is a reference line, never a choice."""
    cost = table[axis.column] if axis.lower_is_better else -table[axis.column]
    candidate = (table["protocol"] != MAJORITY_PROTOCOL).to_numpy()
    mask = np.zeros(len(table), dtype=bool)
    mask[candidate] = pareto_front(table.loc[candidate, key], cost[candidate])
    return mask


def latency_devices(table: pd.DataFrame) -> list[str]:
    """Distinct devices behind a table's latency column: more than one means they are not comparable."""
    return sorted(
        {d for cell in table.get("latency_device", []) if isinstance(cell, str) and cell for d in cell.split(" / ")}
    )


def format_mean_std(mean: float, std: float) -> str:
    """ "0.850 ± 0.010"; the mean alone when there is no std (one seed); "n/a" without a mean."""
    if pd.isna(mean):
        return "n/a"
    return f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def _fmt_ci(low: float, high: float) -> str:
    return "n/a" if pd.isna(low) else f"[{low:.3f}, {high:.3f}]"


def seeds_column(metric: str) -> str:
    """Header of a metric's "mean ± std over seeds" column in the displayed tables."""
    return f"{metric} (seeds: mean ± std)"


def ci_column(metric: str) -> str:
    """Header of the sort metric's test-image CI column in the displayed tables."""
    return f"{metric} 95% CI (test images)"


def display_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Human-readable columns: "mean ± std" over seeds with the sort metric's test-image CI beside it, seeds as
    n, failures spelled out, ≈ (tied with rank 1) and ★ (Pareto-optimal) after the rank."""
    metric = table.attrs["metric"]
    rank = table["rank"].map(lambda r: "" if pd.isna(r) else str(int(r)))
    out = pd.DataFrame(
        {
            "rank": rank
            + np.where(table["tied"], f" {TIE_MARK}", "")
            + np.where(table["pareto"], f" {PARETO_MARK}", ""),
            "backbone": table["backbone"],
            "protocol": table["protocol"],
            "res": table["resolution"].astype(int),
            "n": table["n"].astype(str)
            + np.where(table["failed"] > 0, " (+" + table["failed"].astype(str) + " failed)", ""),
        }
    )
    for m in HEADLINE:
        out[seeds_column(m)] = [
            format_mean_std(a, b) for a, b in zip(table[f"{m}_mean"], table[f"{m}_std"], strict=True)
        ]
        if m == metric:
            bounds = zip(table[f"{m}_ci95_low"], table[f"{m}_ci95_high"], strict=True)
            out[ci_column(m)] = [_fmt_ci(low, high) for low, high in bounds]
    if "params_m" in table:
        out["params (M)"] = table["params_m"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
        out["GMACs"] = table["gmacs"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    if "latency_ms" in table:
        out["latency b1 (ms/img)"] = table["latency_ms"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
        out["latency device"] = table["latency_device"].fillna("")
    return out


def table_notes(table: pd.DataFrame) -> list[str]:
    """What every rendering of the table says under it: the marks, the two uncertainties, and row caveats."""
    notes = [
        PARETO_NOTE,
        UNCERTAINTY_NOTE,
        f"{TIE_MARK} not significantly worse than rank 1 on {table.attrs['metric']}: paired bootstrap over the same "
        f"test images, seed-averaged, p ≥ {TIE_ALPHA} (two-sided, one test per row, no multiplicity correction).",
    ]
    if (table["tied"] & (table["protocol"] == MAJORITY_PROTOCOL)).any():
        notes.append(
            f"Alarm: the majority baseline is {TIE_MARK} rank 1, so rank 1 has not been shown to beat always "
            "predicting the most frequent class."
        )
    for row in table[table["note"] != ""].itertuples():
        notes.append(f"{row.backbone} ({row.protocol}, {int(row.resolution)} px): {row.note}.")
    return notes


def rich_table(table: pd.DataFrame, title: str) -> Table:
    shown = display_frame(table)
    rt = Table(title=title, caption="\n".join(table_notes(table)), header_style="bold")
    for col in shown.columns:
        rt.add_column(str(col), justify="left" if col in ("backbone", "protocol", "latency device") else "right")
    for row in shown.itertuples(index=False):
        rt.add_row(*map(str, row))
    return rt


def write_leaderboard(table: pd.DataFrame, out_dir: Path, dataset: str) -> list[Path]:
    """Markdown (for READMEs), CSV (numeric, for analysis) and LaTeX (for papers) under ``out_dir``."""
    md = out_dir / f"{dataset}.md"
    csv = out_dir / f"{dataset}.csv"
    tex = out_dir / f"{dataset}.tex"
    notes = "\n\n".join(table_notes(table))
    atomic_write_bytes(md, f"{display_frame(table).to_markdown(index=False)}\n\n{notes}\n".encode())
    atomic_write_bytes(csv, table.to_csv(index=False).encode())
    write_latex(table, tex, dataset)
    return [md, csv, tex]


_LATEX_SPECIALS = str.maketrans(
    {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    | {c: "\\" + c for c in "&%$#_{}"}
)
_LATEX_SYMBOLS = {"±": r"$\pm$", PARETO_MARK: r"$\star$", TIE_MARK: r"$\approx$", "≥": r"$\geq$"}


def _latex_symbols(text: object) -> str:
    """Already-escaped text with the table's symbols as math, which pdflatex typesets without extra packages."""
    out = str(text)
    for symbol, math in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, math)
    return out


def write_latex(table: pd.DataFrame, path: Path, dataset: str) -> None:
    """A booktabs ``table`` float, pdflatex-safe: ±, ≈, ≥ and ★ become math symbols.

    Needs ``\\usepackage{booktabs}`` and ``\\usepackage{graphicx}``: the table holds every column of the
    Markdown one, wider than a page, so it is scaled to ``\\linewidth`` (drop columns for larger type).
    Cells go through pandas' LaTeX escaping first, so backbone names such as ``test_resnet`` survive. The
    caption carries the notes of the Markdown table.
    """
    shown = display_frame(table)
    left = {"backbone", "protocol", "latency device"}
    notes = " ".join(_latex_symbols(note.translate(_LATEX_SPECIALS)) for note in table_notes(table))
    latex = (
        shown.style.hide(axis="index")
        .format(_latex_symbols, escape="latex")
        .format_index(_latex_symbols, escape="latex", axis=1)
        .to_latex(
            hrules=True,
            column_format="".join("l" if c in left else "r" for c in shown.columns),
            position_float="centering",
            caption=f"{dataset.translate(_LATEX_SPECIALS)}: test split. {notes}",
            label=f"tab:{dataset}-leaderboard",
        )
    )
    scaled = latex.replace(r"\begin{tabular}", r"\resizebox{\linewidth}{!}{\begin{tabular}").replace(
        r"\end{tabular}", r"\end{tabular}}"
    )
    atomic_write_bytes(path, scaled.encode())


def datasets_in(records: list[dict]) -> list[str]:
    return sorted({r["spec"]["dataset"] for r in records})
