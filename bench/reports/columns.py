"""Optional leaderboard column groups: ``bench leaderboard --columns calibration,subgroups``.

Each group is declared once in :data:`bench.reports.column_groups.COLUMN_GROUPS` (its name and what it adds);
the CLI option, the Python argument (``bench.leaderboard(..., columns=...)``), the error for an unknown name
and the help text all read it. A group adds numeric cells to the table (:func:`add_columns`), display cells
(:func:`display_columns`) and lines under it (:func:`column_notes`). Every cell is computed from the rows'
saved ``.probs.npz`` files, seed by seed, and shown as the mean ± std over the row's seeds, as the headline
metric cells are. A cell that cannot be computed says ``n/a`` with its reason, in the cell where short and
in the notes in full.

* ``calibration`` (:mod:`bench.reports.calibration_columns`): ECE (15 equal-width bins) before and after
  temperature scaling fitted on validation (cross-fitted on test halves, ‡, where a run saved no validation
  scores), Brier, NLL, ECE with 15 equal-mass bins; the temperature.
* ``subgroups`` (:mod:`bench.reports.subgroup_columns`): the worst group's balanced accuracy (which group, its
  size and 95% CI) and the largest gap between groups of one attribute, from the dataset's metadata.
* ``robustness`` and ``external`` (:mod:`bench.reports.robustness_columns`): the rows' evaluation sets, from the
  numbers their records store (each recomputable from the run's ``.evalsets.npz``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.errors import ResultsError
from bench.evaluation.calibration import N_BINS
from bench.evaluation.scores import TestScores
from bench.evaluation.spread import format_mean_std
from bench.evaluation.subgroups import MIN_GROUP_SIZE
from bench.reports.calibration_columns import NOTE as CALIBRATION_NOTE
from bench.reports.calibration_columns import calibration_cells, scaled_cell, scaled_cell_reason
from bench.reports.robustness_columns import display as robustness_display
from bench.reports.robustness_columns import external_cells, external_names, robustness_cells
from bench.reports.robustness_columns import notes as robustness_notes
from bench.reports.subgroup_columns import METRIC, NO_METADATA, GroupTables, detail_frame, subgroup_cells
from bench.reports.subgroup_columns import NOTE as SUBGROUPS_NOTE
from bench.runs.experiments import Experiment

NO_SCORES = "no saved test probabilities"


def saved_scores(experiment: Experiment) -> list[TestScores] | str:
    """Each finished seed's saved scores, or why the row has none (the leaderboard's CI warns about the file)."""
    saved = []
    for record in experiment.ok:
        path = None if record.path is None else record.probs_path()
        if path is None or not path.is_file():
            return NO_SCORES
        try:
            saved.append(TestScores.load(path))
        except ResultsError:
            return f"{NO_SCORES} (a seed's file is unreadable)"
    if not saved:
        return "no finished seed"
    if any(not np.array_equal(s.ids, saved[0].ids) for s in saved[1:]):
        return "its seeds were tested on different images"
    return saved


def add_columns(table: pd.DataFrame, rows: dict[int, Experiment | None], groups: Sequence[str]) -> pd.DataFrame:
    """``table`` with the numeric cells of ``groups`` (parsed names) for each row (``rows``: the leaderboard's
    row index to its experiment, None for the majority baseline, whose cells stay empty).

    ``table.attrs["columns"]`` lists the groups; with ``subgroups``, ``table.attrs["subgroups"]`` is the detail
    table, one line per row and group.
    """
    tables = GroupTables()
    cells: dict[int, dict] = {}
    details = []
    experiments = [e for e in rows.values() if e is not None]
    external = external_names(experiments) if "external" in groups else []
    for i, experiment in rows.items():
        if experiment is None:
            continue
        cells[i] = {}
        if "robustness" in groups:
            cells[i] |= robustness_cells(experiment, experiments)
        if "external" in groups:
            cells[i] |= external_cells(experiment, external)
        if not {"calibration", "subgroups"} & set(groups):
            continue  # the eval-set groups read the records; only these two read the saved test probabilities
        saved = saved_scores(experiment)
        if "calibration" in groups:
            cells[i] |= calibration_cells(saved)
        if "subgroups" in groups:
            row, detail = subgroup_cells(experiment, saved, tables)
            cells[i] |= row
            labels = {"backbone": experiment.backbone, "protocol": table.loc[i, "protocol"]}
            details.append((labels | {"resolution": experiment.resolution, "experiment": experiment.id}, detail))
    extra = pd.DataFrame.from_dict(cells, orient="index").reindex(table.index)
    out = pd.concat([table, extra], axis=1)
    out.attrs = dict(table.attrs) | {"columns": list(groups), "external_sets": external}
    if "subgroups" in groups:
        out.attrs["subgroups"] = detail_frame(details)
    return out


def _is_baseline(table: pd.DataFrame) -> pd.Series:
    return table["experiment"].fillna("") == ""


def _cells(table: pd.DataFrame, fmt) -> list[str]:
    return ["" if base else fmt(row) for base, (_, row) in zip(_is_baseline(table), table.iterrows(), strict=True)]


def display_columns(table: pd.DataFrame) -> dict[str, list[str]]:
    """The requested groups' display cells, in group order, by header."""
    out: dict[str, list[str]] = {}
    groups = table.attrs.get("columns", [])
    if "calibration" in groups:
        out[f"ECE ({N_BINS} bins)"] = _cells(table, lambda r: format_mean_std(r["ece_mean"], r["ece_std"]))
        out["ECE after temp. scaling"] = _cells(
            table,
            lambda r: (
                scaled_cell(r["ece_scaled_mean"], r["ece_scaled_std"], r[CALIBRATION_NOTE])
                if pd.notna(r["ece_scaled_mean"])
                else scaled_cell_reason(r[CALIBRATION_NOTE]) or "n/a"
            ),
        )
    if "subgroups" in groups:
        out["worst-group bal. acc."] = _cells(table, _worst_cell)  # short words: a 120-column terminal shows it
        out["worst group"] = _cells(
            table, lambda r: f"{r['worst_group']} (n={int(r['worst_group_n'])})" if r["worst_group"] else ""
        )
        out["largest gap"] = _cells(
            table,
            lambda r: (
                f"{format_mean_std(r['largest_gap_mean'], r['largest_gap_std'])} ({r['largest_gap_attribute']})"
                if r["largest_gap_attribute"]
                else "n/a"
            ),
        )
    out |= robustness_display(table, groups, _cells)
    if "calibration" in groups:
        out["Brier"] = _cells(table, lambda r: format_mean_std(r["brier_mean"], r["brier_std"]))
        out["NLL"] = _cells(table, lambda r: format_mean_std(r["nll_mean"], r["nll_std"]))
        out[f"ECE ({N_BINS} equal-mass bins)"] = _cells(
            table, lambda r: format_mean_std(r["ece_equal_mass_mean"], r["ece_equal_mass_std"])
        )
    return out


def headline_columns(table: pd.DataFrame) -> list[str]:
    """The headers that answer each requested group's question (ECE before and after scaling, the worst group's
    score, the corrupted split's balanced error, each external set's balanced accuracy): what a narrow terminal
    keeps of a table asked for with ``--columns``, before the test-image CI and the latency."""
    groups = table.attrs.get("columns", [])
    out = [f"ECE ({N_BINS} bins)", "ECE after temp. scaling"] if "calibration" in groups else []
    out += ["worst-group bal. acc."] if "subgroups" in groups else []
    out += ["mean BE (corruptions)"] if "robustness" in groups else []
    out += [f"{name} bal. acc." for name in table.attrs.get("external_sets", [])] if "external" in groups else []
    return out


def _worst_cell(row: pd.Series) -> str:
    if pd.notna(row[f"worst_group_{METRIC}_mean"]):
        return format_mean_std(row[f"worst_group_{METRIC}_mean"], row[f"worst_group_{METRIC}_std"])
    return "n/a: no meta" if row[SUBGROUPS_NOTE] == NO_METADATA else "n/a"  # short; the notes say it in full


def _reasons(table: pd.DataFrame, column: str) -> list[str]:
    """One line per distinct reason in ``column``: the reason and the rows it holds for (or every row)."""
    rows = table[~_is_baseline(table)]
    lines = []
    for reason, which in rows.groupby(rows[column].fillna(""), sort=False):
        if not reason:
            continue
        names = (
            "every row"
            if len(which) == len(rows)
            else ", ".join(f"{r.backbone} ({r.protocol})" for r in which.itertuples())
        )
        lines.append(f"{reason} ({names})")
    return lines


def column_notes(table: pd.DataFrame) -> list[str]:
    """What the requested groups' cells mean, and why any of them is n/a."""
    groups = table.attrs.get("columns", [])
    notes = []
    if "calibration" in groups:
        notes.append(
            f"Calibration (seeds: mean ± std, from the saved test probabilities): ECE, top-label, {N_BINS} equal-width "
            f"bins as torchmetrics bins them (and {N_BINS} equal-mass bins); Brier, multi-class: mean over images of "
            "the sum over classes of (p - one-hot)², in [0, 2]; NLL in nats from the logits. Temperature scaling: one "
            "T fitted on the validation split's saved scores, then the test ECE again; where a run saved no "
            "validation scores, ‡: cross-fitted on test, each class-stratified half scaled by the T fitted on the "
            "other (no image by a T its own label helped fit)."
        )
        notes += [f"Calibration: {line}." for line in _reasons(table, CALIBRATION_NOTE)]
    if "subgroups" in groups:
        notes.append(
            f"Subgroups (from the dataset's metadata, test images matched by id): worst group = the group of lowest "
            f"{METRIC} among those with {MIN_GROUP_SIZE}+ test images, every class present and known metadata "
            "(seeds: mean ± std); largest gap = the attribute whose best and worst such groups differ most (per "
            "seed, then mean ± std). Every group, the small and incomplete ones with the reason, is in the "
            "subgroups table written beside this one, with 95% CIs over each group's images."
        )
        notes += [f"Subgroups: {line}." for line in _reasons(table, SUBGROUPS_NOTE)]
    return notes + robustness_notes(table, groups, _reasons)
