"""Leaderboards: per dataset, one row per backbone x protocol x resolution, mean +- std over seeds.

Built from the stored records alone (no retraining). Failed runs are counted and shown as failed,
never silently dropped or scored as zero. A ``majority`` row (always predict the most frequent
training class) anchors every table: a backbone that does not beat it has learned nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from bench.errors import ConfigError
from bench.metrics import HEADLINE_METRICS as HEADLINE
from bench.metrics import compute_metrics
from bench.results import atomic_write_bytes

GROUP = ["dataset", "backbone", "protocol", "resolution"]


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
        "protocol": "baseline",
        "resolution": rec["dataset"]["resolution"],
        "n": 1,
        "failed": 0,
        **{f"{m}_mean": metrics[m] for m in HEADLINE},
        **{f"{m}_std": np.nan for m in HEADLINE},
    }


def leaderboard(records: list[dict], dataset: str, metric: str = "balanced_accuracy") -> pd.DataFrame:
    """The aggregated table for ``dataset``, best mean ``metric`` first, ranked, majority row included.

    ``n`` counts the finished seeds behind each mean; std is the sample std (ddof=1), NaN for n < 2.
    """
    if metric not in HEADLINE:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(HEADLINE)}")
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
        for col in ("params_m", "gmacs", "latency_ms", "train_s"):
            row[col] = ok[col].mean() if col in ok and len(ok) else np.nan
        devices = sorted(set(ok["latency_device"].dropna())) if "latency_device" in ok else []
        row["latency_device"] = " / ".join(devices)
        rows.append(row)
    base = majority_row(records, dataset)
    table = pd.DataFrame(rows + ([base] if base else []))
    key = f"{metric}_mean"
    table = table.sort_values(key, ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    table.insert(0, "rank", table[key].rank(ascending=False, method="min"))
    return table


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
    """Human-readable columns: "mean ± std" strings, seeds as n, failures spelled out."""
    out = pd.DataFrame(
        {
            "rank": table["rank"].map(lambda r: "" if pd.isna(r) else str(int(r))),
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
    """Markdown (for READMEs) and CSV (numeric, for analysis) under ``out_dir``."""
    md = out_dir / f"{dataset}.md"
    csv = out_dir / f"{dataset}.csv"
    atomic_write_bytes(md, (display_frame(table).to_markdown(index=False) + "\n").encode())
    atomic_write_bytes(csv, table.to_csv(index=False).encode())
    return [md, csv]


def datasets_in(records: list[dict]) -> list[str]:
    return sorted({r["spec"]["dataset"] for r in records})
