"""Published anchors next to measured results: does the harness reproduce a paper's table?

A sweep that reproduces a paper lists the paper's figures under ``[[published]]`` (dataset, metric values,
the tolerance the reproduction must meet, the source). :func:`reproduction_table` sets every backbone's
seed mean +- std from the stored records beside them, with the difference and whether it is within the
tolerance, so the README's comparison is generated from records rather than typed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench.errors import ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.reports.leaderboard import format_mean_std
from bench.runs.record import atomic_write_bytes

if TYPE_CHECKING:
    from bench.runs.sweep import Sweep

COMMAND = "bench reproduction --sweep {sweep} --results-dir {results_dir}"


@dataclass(frozen=True)
class Published:
    """One published result: ``model`` on ``dataset``, test-split figures, and the tolerance a reproduction needs."""

    dataset: str
    model: str
    source: str
    accuracy: float | None = None
    auc: float | None = None
    balanced_accuracy: float | None = None
    macro_f1: float | None = None
    tolerance: float = 0.02  # largest |measured mean - published| that counts as reproduced

    def values(self) -> dict[str, float]:
        return {m: v for m in HEADLINE_METRICS if (v := getattr(self, m)) is not None}


def sweep_table(records: list[dict], sweep: Sweep) -> pd.DataFrame:
    """:func:`reproduction_table` over the records of ``sweep``'s own runs (other runs in the folder are ignored)."""
    from bench.gates.check import identity, sweep_records

    wanted = {identity(s.to_dict()) for s in sweep.expand()}
    return reproduction_table(sweep_records(records, wanted), sweep.published)


def reproduction_table(records: list[dict], published: tuple[Published, ...]) -> pd.DataFrame:
    """One row per published anchor x backbone that has finished runs on its dataset.

    Columns per published metric: ``<m>_mean``, ``<m>_std`` (sample std over seeds, NaN for one seed),
    ``<m>_published``, ``<m>_delta`` (mean - published) and ``<m>_within`` (|delta| <= tolerance).
    """
    if not published:
        raise ConfigError("this sweep lists no [[published]] results to compare with")
    ok = [r for r in records if r["status"] == "ok"]
    rows = []
    for anchor in published:
        runs = [r for r in ok if r["spec"]["dataset"] == anchor.dataset]
        for backbone in sorted({r["spec"]["backbone"] for r in runs}):
            mine = [r for r in runs if r["spec"]["backbone"] == backbone]
            row = {
                "dataset": anchor.dataset,
                "backbone": backbone,
                "protocol": " / ".join(sorted({r["spec"]["protocol"] for r in mine})),
                "n": len(mine),
                "seeds": ",".join(str(s) for s in sorted(r["spec"]["seed"] for r in mine)),
                "published_model": anchor.model,
                "source": anchor.source,
                "tolerance": anchor.tolerance,
            }
            for metric, value in anchor.values().items():
                scores = np.array([r["test"][metric] for r in mine], dtype=float)
                mean = scores.mean()
                row |= {
                    f"{metric}_mean": mean,
                    f"{metric}_std": scores.std(ddof=1) if len(scores) > 1 else np.nan,
                    f"{metric}_published": value,
                    f"{metric}_delta": mean - value,
                    f"{metric}_within": bool(abs(mean - value) <= anchor.tolerance),
                }
            rows.append(row)
    return pd.DataFrame(rows)


def display_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One readable cell per metric, "measured mean ± std (published, Δ)", and a verdict per row."""
    metrics = [m for m in HEADLINE_METRICS if f"{m}_published" in table]
    out = table[["dataset", "backbone", "n"]].copy()
    for m in metrics:
        out[m] = [
            f"{format_mean_std(mean, std)} ({pub:.3f}, Δ {delta:+.3f})"
            for mean, std, pub, delta in zip(
                table[f"{m}_mean"], table[f"{m}_std"], table[f"{m}_published"], table[f"{m}_delta"], strict=True
            )
        ]
    within = table[[f"{m}_within" for m in metrics]].astype(bool).all(axis=1)
    out["within tolerance"] = [
        ("yes" if w else "no") + f" (±{t:g})" for w, t in zip(within, table["tolerance"], strict=True)
    ]
    return out


def reproduction_markdown(table: pd.DataFrame, command: str) -> str:
    """The comparison for the README, ending with the ``command`` that wrote it."""
    anchors = table.drop_duplicates(["published_model", "source"])
    sources = "; ".join(f"{m}: {s}" for m, s in zip(anchors["published_model"], anchors["source"], strict=True))
    shown = display_frame(table).to_markdown(index=False, disable_numparse=True)  # keep "+0.028" as written
    return (
        f"{shown}\n\nCells: measured test-split mean ± sample std over the n seeds (published value, Δ = measured "
        f"mean - published). Published: {sources}.\n\nCommand: `{command}`\n"
    )


def write_reproduction(table: pd.DataFrame, path: Path, command: str) -> Path:
    """:func:`reproduction_markdown` at ``path`` and the numeric table as a CSV beside it."""
    atomic_write_bytes(path, reproduction_markdown(table, command).encode())
    atomic_write_bytes(path.with_suffix(".csv"), table.to_csv(index=False).encode())
    return path
