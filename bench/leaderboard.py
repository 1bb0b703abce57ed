"""Leaderboards: per dataset, one row per backbone x protocol x resolution, mean +- std over seeds.

Built from the stored records alone (no retraining). Failed runs are counted and shown as failed,
never silently dropped or scored as zero. A ``majority`` row (always predict the most frequent
training class) anchors every table: a backbone that does not beat it has learned nothing.

Rows on the accuracy-vs-latency Pareto front are marked: those are the only backbones worth picking
for *some* latency budget; every other row is beaten on both counts by one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from rich.table import Table

from bench.errors import ConfigError
from bench.metrics import HEADLINE_METRICS as HEADLINE
from bench.metrics import compute_metrics
from bench.results import atomic_write_bytes

GROUP = ["dataset", "backbone", "protocol", "resolution"]
MAJORITY_PROTOCOL = "baseline"  # the protocol cell of the majority row
PARETO_MARK = "★"
PARETO_NOTE = (
    f"{PARETO_MARK} Pareto-optimal: no other row is at least as accurate and at least as fast, and strictly better "
    "on one of the two."
)


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
            "protocol": spec["protocol"],
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


def majority_row(records: list[dict], dataset: str) -> dict | None:
    """Test metrics of always predicting the training split's most frequent class."""
    rec = next((r for r in records if r["spec"]["dataset"] == dataset and "dataset" in r), None)
    if rec is None:
        return None
    counts = rec["dataset"]["class_counts"]
    k = len(counts["train"])
    y = np.repeat(np.arange(k), counts["test"])
    probs = np.zeros((len(y), k))
    probs[:, int(np.argmax(counts["train"]))] = 1.0
    metrics = compute_metrics(y, probs, rec["dataset"]["classes"])
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
    of :data:`LATENCY_AXES`), among backbone rows that have both numbers.
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
    return table


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


def _fmt(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "n/a"
    return f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def display_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Human-readable columns: "mean ± std" strings, seeds as n, failures spelled out, ★ after Pareto ranks."""
    rank = table["rank"].map(lambda r: "" if pd.isna(r) else str(int(r)))
    out = pd.DataFrame(
        {
            "rank": rank + np.where(table["pareto"], f" {PARETO_MARK}", ""),
            "backbone": table["backbone"],
            "protocol": table["protocol"],
            "res": table["resolution"].astype(int),
            "n": table["n"].astype(str)
            + np.where(table["failed"] > 0, " (+" + table["failed"].astype(str) + " failed)", ""),
        }
    )
    for m in HEADLINE:
        out[m] = [_fmt(a, b) for a, b in zip(table[f"{m}_mean"], table[f"{m}_std"], strict=True)]
    if "params_m" in table:
        out["params (M)"] = table["params_m"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
        out["GMACs"] = table["gmacs"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    if "latency_ms" in table:
        out["latency b1 (ms/img)"] = table["latency_ms"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
        out["latency device"] = table["latency_device"].fillna("")
    return out


def rich_table(table: pd.DataFrame, title: str) -> Table:
    shown = display_frame(table)
    rt = Table(title=title, header_style="bold")
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
    atomic_write_bytes(md, f"{display_frame(table).to_markdown(index=False)}\n\n{PARETO_NOTE}\n".encode())
    atomic_write_bytes(csv, table.to_csv(index=False).encode())
    write_latex(table, tex, dataset)
    return [md, csv, tex]


_LATEX_SPECIALS = str.maketrans(
    {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    | {c: "\\" + c for c in "&%$#_{}"}
)


def write_latex(table: pd.DataFrame, path: Path, dataset: str) -> None:
    """A booktabs ``table`` float, pdflatex-safe: ± and ★ become math symbols.

    Needs ``\\usepackage{booktabs}`` and ``\\usepackage{graphicx}``: the table holds every column of the
    Markdown one, wider than a page, so it is scaled to ``\\linewidth`` (drop columns for larger type).
    Cells go through pandas' LaTeX escaping first, so backbone names such as ``test_resnet`` survive.
    """
    shown = display_frame(table)
    left = {"backbone", "protocol", "latency device"}
    latex = (
        shown.style.hide(axis="index")
        .format(lambda v: str(v).replace("±", r"$\pm$").replace(PARETO_MARK, r"$\star$"), escape="latex")
        .format_index(escape="latex", axis=1)
        .to_latex(
            hrules=True,
            column_format="".join("l" if c in left else "r" for c in shown.columns),
            position_float="centering",
            caption=(
                f"{dataset.translate(_LATEX_SPECIALS)}: test split, mean $\\pm$ sample std over the n seeds. "
                "$\\star$ Pareto-optimal: no other row is at least as accurate and at least as fast, and strictly "
                "better on one of the two."
            ),
            label=f"tab:{dataset}-leaderboard",
        )
    )
    scaled = latex.replace(r"\begin{tabular}", r"\resizebox{\linewidth}{!}{\begin{tabular}").replace(
        r"\end{tabular}", r"\end{tabular}}"
    )
    atomic_write_bytes(path, scaled.encode())


def datasets_in(records: list[dict]) -> list[str]:
    return sorted({r["spec"]["dataset"] for r in records})
