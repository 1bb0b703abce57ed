"""A leaderboard as people read it: Markdown (for READMEs), CSV (numeric), LaTeX (for papers) and a rich table.

Every rendering carries the same cells and the same notes under the table (:func:`table_notes`): the marks,
the two uncertainties, the legend of hash-labelled rows, and each row's caveats (a noisy latency left out,
a seed recorded twice, no CI), so no format says less than another.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from bench.evaluation.metrics import HEADLINE_METRICS as HEADLINE
from bench.evaluation.spread import format_mean_std
from bench.files import atomic_write_bytes
from bench.reports.columns import column_notes, display_columns, headline_columns
from bench.reports.leaderboard import MAJORITY_PROTOCOL, latency_sources
from bench.reports.row_health import DID_NOT_LEARN_MARK, NOT_CONVERGED_MARK, NOT_RANKED, health_summary, rank_marks
from bench.reports.uncertainty import CI_RESAMPLES, TIE_ALPHA
from bench.table_columns import Keep, add_column

PARETO_MARK = "★"
PARETO_NOTE = (
    f"{PARETO_MARK} Pareto-optimal: no other row is at least as accurate and at least as fast, and strictly better "
    "on one of the two."
)
TIE_MARK = "≈"
UNCERTAINTY_NOTE = (
    "Metric cells: mean ± sample std over the n seeds (training variation). 95% CI: percentile bootstrap over "
    f"the test images ({CI_RESAMPLES} resamples, the same for every row; each seed's saved probabilities "
    "rescored, then averaged over seeds): the uncertainty from the finite test set."
)


LATENCY_COLUMN = "latency b1 (ms/img)"


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
    n, failures spelled out, ≈ (tied with rank 1), ★ (Pareto-optimal) and the health marks (✗k/n seeds did not
    learn, ↗ not converged) after the rank, and "✗ did not learn" in place of the rank of a row not ranked."""
    metric = table.attrs["metric"]
    rank = table["rank"].map(lambda r: "" if pd.isna(r) else str(int(r)))
    rank = rank + np.where(table["tied"], f" {TIE_MARK}", "") + np.where(table["pareto"], f" {PARETO_MARK}", "")
    rank = rank + rank_marks(table)
    if "ranked" in table:
        rank = rank.where(table["ranked"], NOT_RANKED)
    out = pd.DataFrame(
        {
            "rank": rank,
            "backbone": table["backbone"],
            "protocol": table["protocol"],
            **({"source": table["source"]} if "source" in table else {}),
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
        out[LATENCY_COLUMN] = table["latency_ms"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
        out["latency device"] = table["latency_device"].fillna("")
    for header, cells in display_columns(table).items():  # the optional column groups asked for, if any
        out[header] = cells
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
    notes += health_summary(table)
    notes += [f"Row label {line}." for line in table.attrs.get("legend", [])]
    notes += _latency_source_notes(table)
    notes += column_notes(table)
    for row in table[table["note"] != ""].itertuples():
        notes.append(f"{row.backbone} ({row.protocol}, {int(row.resolution)} px): {row.note}.")
    return notes


def _latency_source_notes(table: pd.DataFrame) -> list[str]:
    """Where the latency column came from, when some rows took a ``bench latency`` pass's figure."""
    passes, runs = latency_sources(table)
    if not passes:
        return []
    rest = f"; {', '.join(runs)}: their runs' own figures, measured as each run ended" if runs else ""
    return [
        f"Latency: batch-1 p50 from the `bench latency` pass {', '.join(passes)} for the rows it measured "
        f"(same backbone, resolution, precision and device; min-max: the p50's 95% CI){rest}."
    ]


def rich_table(table: pd.DataFrame, dataset: str) -> Table:
    """The terminal's table of ``dataset``'s leaderboard: the row's name and marks (★ Pareto-optimal), the sort
    metric, its CI and the latency are what a narrow terminal keeps (:class:`bench.table_columns.Keep`), or, where
    column groups were asked for (``--columns``), the sort metric and each group's headline columns
    (:func:`bench.reports.columns.headline_columns`): what the user asked to see goes last. The column groups and
    the other metrics go after what tells rows apart, descriptive columns first. The dataset is the title's, and
    each row's when piped (a grouping column)."""
    shown = display_frame(table)
    metric = table.attrs["metric"]
    asked = headline_columns(table)
    answer = ["rank", "backbone", seeds_column(metric), *(asked or [ci_column(metric), LATENCY_COLUMN])]
    described = ["res", "n", "params (M)", "GMACs", "latency device"]
    first = [c for c in shown.columns if c in ("rank", "backbone", "protocol", "source", "res", "n")]
    ranked = [seeds_column(metric), ci_column(metric), LATENCY_COLUMN, *display_columns(table)]
    shown = shown[first + [c for c in ranked if c in shown] + [c for c in shown.columns if c not in first + ranked]]
    title = f"{dataset}: test split, sorted by {metric}"
    rt = Table(title=title, caption="\n".join(table_notes(table)), header_style="bold")
    add_column(rt, "dataset", Keep.ANSWER, grouping=True)
    for col in shown.columns:
        keep = Keep.ANSWER if col in answer else Keep.DETAIL if col in described else Keep.FIGURE
        left = ("backbone", "protocol", "source", "latency device", "worst group")
        add_column(rt, str(col), keep, justify="left" if col in left else "right")
    for row in shown.itertuples(index=False):
        rt.add_row(dataset, *map(str, row))
    return rt


def write_leaderboard(table: pd.DataFrame, out_dir: Path, dataset: str) -> list[Path]:
    """Markdown (for READMEs), CSV (numeric, for analysis) and LaTeX (for papers) under ``out_dir``.

    Named ``<dataset>.<ext>``; a table with optional column groups (``--columns``) is ``<dataset>+<group>...``, so
    it never replaces the default table (the one the README's generated blocks hold)."""
    stem = dataset + "".join(f"+{group}" for group in table.attrs.get("columns", []))
    md = out_dir / f"{stem}.md"
    csv = out_dir / f"{stem}.csv"
    tex = out_dir / f"{stem}.tex"
    notes = "\n\n".join(table_notes(table))
    atomic_write_bytes(md, f"{display_frame(table).to_markdown(index=False)}\n\n{notes}\n".encode())
    atomic_write_bytes(csv, table.to_csv(index=False).encode())
    write_latex(table, tex, dataset)
    return [md, csv, tex]


_LATEX_SPECIALS = str.maketrans(
    {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    | {c: "\\" + c for c in "&%$#_{}"}
)
_LATEX_SYMBOLS = {"±": r"$\pm$", PARETO_MARK: r"$\star$", TIE_MARK: r"$\approx$", "≥": r"$\geq$"} | {
    DID_NOT_LEARN_MARK: r"$\times$", NOT_CONVERGED_MARK: r"$\nearrow$", "→": r"$\to$"
}  # fmt: skip


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
    left = {"backbone", "protocol", "source", "latency device"}
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
