"""Published anchors next to measured results: does the harness reproduce a paper's table?

A sweep that reproduces a paper lists the paper's figures under ``[[published]]`` (dataset, metric values,
the tolerance the reproduction must meet, the source). :func:`reproduction_table` sets every backbone's
seed mean +- std from the stored records beside them, with the difference and whether it is within the
tolerance, so the README's comparison is generated from records rather than typed in. A sweep's runs are
found by experiment identity and seed, so other runs in the same folder never enter its rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from bench.errors import ConfigError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.evaluation.spread import format_mean_std
from bench.files import atomic_write_bytes
from bench.runs.experiments import group_experiments, labels
from bench.runs.planned import sweep_records, sweep_runs
from bench.runs.record import RunRecord
from bench.runs.sweep import Published, Sweep
from bench.table_columns import Keep, add_column

COMMAND = "bench reproduction --sweep {sweep} --results-dir {results_dir}"
VERDICT = "within tolerance"


def sweep_table(records: list[RunRecord], sweep: Sweep) -> pd.DataFrame:
    """:func:`reproduction_table` over the records of ``sweep``'s own runs (other runs in the folder are ignored)."""
    return reproduction_table(sweep_records(records, sweep_runs(sweep.expand())), sweep.published)


def reproduction_table(records: list[RunRecord], published: tuple[Published, ...]) -> pd.DataFrame:
    """One row per published anchor x experiment that has finished runs on its dataset.

    Columns per published metric: ``<m>_mean``, ``<m>_std`` (sample std over seeds, NaN for one seed),
    ``<m>_published``, ``<m>_delta`` (mean - published) and ``<m>_within`` (|delta| <= tolerance). A backbone
    with several experiments on a dataset has one row each, its ``backbone`` cell naming the experiment.
    """
    if not published:
        raise ConfigError("this sweep lists no [[published]] results to compare with")
    rows = []
    for anchor in published:
        experiments = [e for e in group_experiments(r for r in records if r.spec.dataset == anchor.dataset) if e.ok]
        names = labels(experiments)
        per_backbone = {b: sum(e.backbone == b for e in experiments) for b in {e.backbone for e in experiments}}
        for e in sorted(experiments, key=lambda e: (e.backbone, names[e.id])):
            mine = e.ok
            row = {
                "dataset": anchor.dataset,
                "backbone": e.backbone if per_backbone[e.backbone] == 1 else f"{e.backbone} ({names[e.id]})",
                "protocol": names[e.id],
                "experiment": e.id,
                "n": len(mine),
                "seeds": ",".join(str(r.spec.seed) for r in mine),
                "published_model": anchor.model,
                "source": anchor.source,
                "tolerance": anchor.tolerance,
            }
            for metric, value in anchor.values().items():
                scores = np.array([r.score(metric) for r in mine], dtype=float)
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
    out[VERDICT] = [("yes" if w else "no") + f" (±{t:g})" for w, t in zip(within, table["tolerance"], strict=True)]
    return out


def rich_table(table: pd.DataFrame, sweep: str) -> Table:
    """The terminal's comparison: a narrow terminal keeps each row's dataset, backbone and verdict (:class:`Keep`),
    then the metric cells, which wrap at words there (the measured mean ± std, then the published value and Δ)."""
    shown = display_frame(table)
    rich = Table(title=f"{sweep}: published vs measured (test split)", header_style="bold")
    for col in shown.columns:
        keep = Keep.ANSWER if col in ("dataset", "backbone", VERDICT) else Keep.DETAIL if col == "n" else Keep.FIGURE
        justify = "left" if col in ("dataset", "backbone") else "right"
        add_column(rich, str(col), keep, wraps=keep == Keep.FIGURE, justify=justify)
    for row in shown.itertuples(index=False):
        rich.add_row(*map(str, row))
    return rich


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
