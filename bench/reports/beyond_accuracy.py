"""The report's sections beyond accuracy: calibration, subgroups, robustness and external sets, each shown only
where the records hold it.

Each section is one of the leaderboard's optional column groups (:mod:`bench.reports.columns`), added to the
report's own leaderboards (nothing ranked again) and shown per dataset as a short table of the rows' cells, with
the group's notes under it:

* **calibration** (from the rows' saved test probabilities): ECE and Brier before and after temperature scaling
  (fitted on validation; cross-fitted on test halves, marked, where the files hold no validation scores), NLL,
  the temperature,
  and the reliability diagrams (:mod:`bench.reports.reliability`);
* **subgroups** (from the dataset's metadata): each row's worst group and the largest gap between groups, and the
  subgroup-gap plot (:mod:`bench.reports.subgroup_plot`);
* **robustness** (a corrupted eval set): mean balanced error over corruptions, balanced accuracy under corruption,
  relative BE and rBE, and the robustness-vs-latency plot (:mod:`bench.reports.robustness_plot`);
* **external** (external eval sets): balanced accuracy and AUC on each set, and the images removed first.

A section appears when some row of some dataset has a figure for it; a dataset where no row has one gets a line
saying why (the group's own n/a reason), not an empty table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.evaluation.spread import format_mean_std
from bench.reports.answer import backbone_rows, row_names, usual_setting
from bench.reports.calibration_columns import NOTE as CALIBRATION_NOTE
from bench.reports.calibration_columns import scaled_cell
from bench.reports.column_files import subgroup_display
from bench.reports.columns import add_columns, column_notes, display_columns
from bench.reports.html_blocks import escape, figure, notes, slug, table
from bench.reports.leaderboard import LatencyAxis, dataset_experiments
from bench.reports.reliability import write_reliability
from bench.reports.render import LATENCY_COLUMN, display_frame, seeds_column
from bench.reports.robustness_plot import SCORE, plot_robustness
from bench.reports.subgroup_plot import WORST_CELL, left_out_line, plot_subgroups, plotted_rows
from bench.runs.record import RunRecord

TITLES = {
    "calibration": "Calibration",
    "subgroups": "Subgroups",
    "robustness": "Robustness to corruptions",
    "external": "External test sets",
}
WHAT = {
    "calibration": "How far the predicted probabilities are from the observed frequencies, before and after "
    "temperature scaling fitted on validation (‡: cross-fitted on test halves, for runs that saved no validation "
    "scores): lower is better.",
    "subgroups": "Each row's worst patient group and the largest gap between the groups of one attribute, from the "
    "dataset's metadata; the plot sets each row's worst group (◆) against its whole test split (●), with 95% CIs.",
    "robustness": "The test split corrupted (MedMNIST-C: noise, blur, contrast, ... at several severities): the "
    "balanced error averaged over corruptions, and against latency.",
    "external": "Another dataset scored through a label map, after removing the images it shares with the training "
    "dataset.",
}
TEXT = ("row", "worst group", "gap between")  # the sections' left-aligned columns
GROUP_TEXT = ("backbone", "protocol", "attribute", "group", "compared", "note")
HELD_BY = {  # the numeric cell that says a row holds the group
    "calibration": "ece_mean",
    "subgroups": "largest_gap_mean",
    "robustness": "corrupted_be_mean",
}


@dataclass(frozen=True)
class Beyond:
    """The report's leaderboards with every candidate group added (by dataset), the groups some row holds, and the
    figures drawn for them (by dataset)."""

    tables: dict[str, pd.DataFrame]
    groups: tuple[str, ...]
    robustness: dict[str, list[Path]] = field(default_factory=dict)
    reliability: dict[str, list[Path]] = field(default_factory=dict)
    subgroups: dict[str, list[Path]] = field(default_factory=dict)
    speed: str = "latency_ms"  # the leaderboard column of the latency axis the plots use


def candidate_groups(records: list[RunRecord]) -> tuple[str, ...]:
    """The groups worth computing for ``records``: calibration and subgroups where a finished run saved its test
    probabilities, robustness and external where a finished run was scored on such an eval set."""
    ok = [r for r in records if r.ok]
    kinds = {result.kind for r in ok for result in r.eval_sets.values()}
    saved = any(r.path is not None and r.probs_path().is_file() for r in ok)
    wanted = {
        "calibration": saved,
        "subgroups": saved,
        "robustness": "corrupted" in kinds,
        "external": "external" in kinds,
    }
    return tuple(g for g, yes in wanted.items() if yes)


def holds(table: pd.DataFrame, group: str) -> bool:
    """Whether some row of ``table`` has a figure of ``group``."""
    if group == "external":
        sets = table.attrs.get("external_sets", [])
        return any(table[f"ext_{name}_balanced_accuracy_mean"].notna().any() for name in sets)
    column = HELD_BY[group]
    return column in table and bool(table[column].notna().any())


def beyond_accuracy(
    records: list[RunRecord], tables: dict[str, pd.DataFrame], axis: LatencyAxis, plots_dir: Path
) -> Beyond:
    """Every dataset's leaderboard in ``tables`` with the candidate groups added, and the figures of the held ones
    under ``plots_dir``: ``<dataset>-reliability.png``, ``<dataset>-subgroups.png|svg`` and
    ``<dataset>-robustness.png|svg``."""
    candidates = candidate_groups(records)
    if not candidates:
        return Beyond({}, ())
    grown = {}
    for dataset, board in tables.items():
        by_id = {e.id: e for e in dataset_experiments(records, dataset)}
        rows = {i: by_id.get(exp) for i, exp in board["experiment"].items()}
        grown[dataset] = add_columns(board, rows, candidates)
    groups = tuple(g for g in candidates if any(holds(t, g) for t in grown.values()))
    beyond = Beyond(grown, groups, speed=axis.column)
    for dataset, grown_table in grown.items():
        if "calibration" in groups and holds(grown_table, "calibration"):
            experiments = {e.id: e for e in dataset_experiments(records, dataset)}
            beyond.reliability[dataset] = write_reliability(grown_table, experiments, plots_dir, dataset)
        if "subgroups" in groups and holds(grown_table, "subgroups"):
            beyond.subgroups[dataset] = plot_subgroups(grown_table, dataset, plots_dir)
        if "robustness" in groups and holds(grown_table, "robustness"):
            beyond.robustness[dataset] = plot_robustness(grown_table, dataset, axis, plots_dir)
    return beyond


def only(board: pd.DataFrame, group: str) -> pd.DataFrame:
    """``board`` as if only ``group`` had been asked for: its display cells and notes are that group's alone."""
    out = board.copy()
    out.attrs = dict(board.attrs) | {"columns": [group]}
    return out


def _scaled(row: pd.Series, figure_name: str, reason: str) -> str:
    if pd.isna(row[f"{figure_name}_scaled_mean"]):
        return reason
    return scaled_cell(row[f"{figure_name}_scaled_mean"], row[f"{figure_name}_scaled_std"], row[CALIBRATION_NOTE])


def section_frame(board: pd.DataFrame, group: str) -> pd.DataFrame:
    """The section's table for one dataset: each backbone row's leaderboard rank (with its marks) and name
    (:func:`bench.reports.answer.row_names`), then the group's cells; a column n/a in every row is left out (the
    notes say why), and so is the majority baseline (it has no cells)."""
    metric = board.attrs["metric"]
    shown = display_frame(board)
    cells = pd.DataFrame(display_columns(only(board, group)), index=board.index)
    keep = board["experiment"].fillna("") != ""
    out = pd.DataFrame({"leaderboard rank": shown["rank"], "row": row_names(board)}, index=board.index)
    if group == "calibration":
        after = cells["ECE after temp. scaling"]
        out = out.join(cells[["ECE (15 bins)", "ECE after temp. scaling", "Brier"]])
        out["Brier after temp. scaling"] = [_scaled(board.loc[i], "brier", after[i]) for i in board.index]
        out["NLL"] = cells["NLL"]
        out["temperature"] = [
            format_mean_std(m, s) for m, s in zip(board["temperature_mean"], board["temperature_std"], strict=True)
        ]
    elif group == "subgroups":
        out = out.join(cells[["worst group", "worst-group bal. acc.", "largest gap"]])
        out["gap between"] = board["largest_gap_groups"].fillna("")
        out[seeds_column(metric)] = shown[seeds_column(metric)]
    elif group == "robustness":
        out["balanced_accuracy (clean test)"] = shown[seeds_column("balanced_accuracy")]
        out["mean BE (corruptions)"] = cells["mean BE (corruptions)"]
        out[SCORE] = [
            format_mean_std(1 - m, s) if not math.isnan(m) else "n/a"
            for m, s in zip(board["corrupted_be_mean"], board["corrupted_be_std"], strict=True)
        ]
        out = out.join(cells[["rel. BE", "rBE"]])
        if LATENCY_COLUMN in shown:
            out[LATENCY_COLUMN] = shown[LATENCY_COLUMN]
    else:
        out["balanced_accuracy (test split)"] = shown[seeds_column("balanced_accuracy")]
        out = out.join(cells)
    out = out.loc[keep].reset_index(drop=True)
    empty = [c for c in out.columns[2:] if out[c].map(lambda v: str(v) == "" or str(v).startswith("n/a")).all()]
    return out.drop(columns=empty)


def _why_not(alone: pd.DataFrame, group: str) -> str:
    """Why no row of a dataset has the group's figures: the group's own n/a reasons, or a plain line."""
    prefix = f"{group.capitalize()}: "
    found = [line.removeprefix(prefix) for line in column_notes(alone) if line.startswith(prefix)]
    return "; ".join(found) or "no row was scored on an external set"


def _robustness_figure(board: pd.DataFrame, dataset: str, paths: list[Path], speed: str) -> list[str]:
    """The robustness-vs-latency plot, and the rows it leaves out for want of a latency."""
    shown = [figure(p, f"{dataset}: {SCORE} against latency", "robustness") for p in paths if p.suffix == ".png"]
    untimed = board[board["corrupted_be_mean"].notna() & board[speed].isna()]
    if len(untimed):
        named = ", ".join(f"{r.backbone} ({r.protocol})" for r in untimed.itertuples())
        shown.append(notes([f"Not in the plot, for want of a batch-1 latency: {named}."]))
    return shown


def _subgroup_figure(board: pd.DataFrame, dataset: str, paths: list[Path]) -> list[str]:
    """The subgroup-gap plot, and the rows it leaves out for want of a worst group (with the reason)."""
    shown = [figure(p, f"{dataset}: worst-group {WORST_CELL.removeprefix('worst_group_')} against the whole test split",
                    "subgroups") for p in paths if p.suffix == ".png"]  # fmt: skip
    line = left_out_line(plotted_rows(board)[1]) if shown else ""
    return [*shown, notes([line] if line else [])]


def sections_html(beyond: Beyond) -> list[str]:
    """One ``<section>`` per held group, in the column groups' order: per dataset its table and the group's n/a
    reasons there (or one line where no row holds the group), then once what the cells mean."""
    parts = []
    for group in beyond.groups:
        body = [f'<h2 id="{group}">{escape(TITLES[group])}</h2>', f'<p class="sub">{escape(WHAT[group])}</p>']
        meaning: list[str] = []
        reason = f"{group.capitalize()}: "
        for dataset, board in beyond.tables.items():
            alone = only(board, group)
            if not holds(board, group):
                body.append(f'<p class="note"><b>{escape(dataset)}</b>: {escape(_why_not(alone, group))}</p>')
                continue
            protocol, resolution = usual_setting(backbone_rows(board))
            body.append(
                f'<h3 id="{group}-{slug(dataset)}">{escape(dataset)} <span class="note">({escape(protocol)} at '
                f"{resolution} px unless named)</span></h3>"
            )
            if group == "robustness":
                body += _robustness_figure(board, dataset, beyond.robustness.get(dataset, []), beyond.speed)
            if group == "subgroups":
                body += _subgroup_figure(board, dataset, beyond.subgroups.get(dataset, []))
            body.append(table(section_frame(board, group), f"section {group}", TEXT))
            lines = column_notes(alone)
            body.append(notes(line for line in lines if line.startswith(reason)))
            meaning = meaning or [line for line in lines if not line.startswith(reason)]
            detail = board.attrs.get("subgroups")
            if group == "subgroups" and detail is not None and len(detail):
                body.append(
                    "<details><summary>Every group of every row: size, balanced accuracy and AUC with 95% CIs over "
                    f"the group's images</summary>{table(subgroup_display(detail), 'groups', GROUP_TEXT)}</details>"
                )
            pngs = [p for p in beyond.reliability.get(dataset, []) if p.suffix == ".png"]
            if group == "calibration" and pngs:
                body.append(
                    "<details><summary>Reliability diagrams: one panel per row, seeds pooled</summary>"
                    f"{figure(pngs[0], f'{dataset}: reliability diagrams', 'reliability')}</details>"
                )
        body.append(notes(meaning))
        parts.append(f'<section class="beyond">{"".join(body)}</section>')
    return parts
