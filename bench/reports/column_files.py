"""The files the optional column groups add beside a leaderboard (``bench leaderboard --columns ...``).

* ``subgroups``: ``leaderboards/<dataset>.subgroups.md`` and ``.csv``, every group of every row (size, balanced
  accuracy and AUC as mean ± std over seeds with 95% CIs over the group's images, and why a group is not
  compared), the detail behind the worst-group and gap cells;
* ``calibration``: ``plots/<dataset>-reliability.png``, one reliability diagram per row
  (:mod:`bench.reports.reliability`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.files import atomic_write_bytes
from bench.reports.leaderboard import dataset_experiments
from bench.reports.reliability import write_reliability
from bench.reports.subgroup_plot import plot_subgroups
from bench.runs.record import RunRecord


def _mean_std(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "n/a"
    return f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def subgroup_display(detail: pd.DataFrame) -> pd.DataFrame:
    """The detail table as people read it: one line per row and group, figures as in the leaderboards."""
    out = (
        detail[["backbone", "protocol", "resolution", "attribute", "group", "n"]]
        .rename(columns={"resolution": "res"})
        .copy()
    )
    for metric in ("balanced_accuracy", "auc"):
        out[f"{metric} (seeds: mean ± std)"] = [
            _mean_std(m, s) for m, s in zip(detail[f"{metric}_mean"], detail[f"{metric}_std"], strict=True)
        ]
        bounds = zip(detail[f"{metric}_ci95_low"], detail[f"{metric}_ci95_high"], strict=True)
        out[f"{metric} 95% CI (group's images)"] = ["" if pd.isna(lo) else f"[{lo:.3f}, {hi:.3f}]" for lo, hi in bounds]
    out["compared"] = detail["comparable"].map({True: "yes", False: "no"})
    out["note"] = detail["note"]
    return out


def write_column_files(table: pd.DataFrame, records: list[RunRecord], results_dir: Path, dataset: str) -> list[Path]:
    """The groups' files for one dataset's ``table`` (made with ``columns=``); the paths written."""
    groups = table.attrs.get("columns", [])
    paths: list[Path] = []
    detail = table.attrs.get("subgroups")
    if "subgroups" in groups and detail is not None and len(detail):
        md = results_dir / "leaderboards" / f"{dataset}.subgroups.md"
        csv = md.with_suffix(".csv")
        note = (
            "Groups from the dataset's metadata, test images matched by id. Compared (worst group, gap): 30+ images, "
            "every class present, known metadata. 95% CI: percentile bootstrap over the group's test images (1000 "
            "resamples, seeds averaged)."
        )
        atomic_write_bytes(md, f"{subgroup_display(detail).to_markdown(index=False)}\n\n{note}\n".encode())
        atomic_write_bytes(csv, detail.to_csv(index=False).encode())
        paths += [md, csv]
    if "subgroups" in groups:  # the gap plot, as `bench report` draws it; nothing where no row has a worst group
        paths += plot_subgroups(table, dataset, results_dir / "plots")
    if "calibration" in groups:
        experiments = {e.id: e for e in dataset_experiments(records, dataset)}
        paths += write_reliability(table, experiments, results_dir / "plots", dataset)
    return paths
