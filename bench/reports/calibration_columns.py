"""The ``calibration`` column group of a leaderboard: ECE, Brier and NLL per row, before and after temperature
scaling, each the mean ± std over the row's seeds (:mod:`bench.evaluation.calibration` defines every number).

Each seed's saved test scores are scored as saved; the temperature is fitted on that seed's saved validation
scores (``val_*`` in its ``.probs.npz``) and applied to its test logits. A seed whose file has no validation
scores (every record written before they were saved, the committed mission records among them) is cross-fitted
on its test halves instead (:func:`bench.evaluation.calibration.cross_fitted_logits`: no image scaled by a
temperature its own label helped fit); its row's after-scaling cells carry :data:`CROSS_FIT_MARK` and the notes
say why. A row with no saved test scores at all has every cell n/a, and says so.
"""

from __future__ import annotations

import numpy as np

from bench.errors import BenchError
from bench.evaluation.calibration import CROSS_FITTED, NO_VALIDATION, CalibrationReport, calibrate, log_probs
from bench.evaluation.scores import TestScores
from bench.evaluation.spread import format_mean_std, mean_std
from bench.runs.record import RunRecord

FIGURES = ("ece", "ece_equal_mass", "brier", "nll")
"""Each one's before-scaling column is ``<figure>_mean``/``_std``, after it ``<figure>_scaled_mean``/``_std``."""
NOTE = "calibration_note"
CROSS_FIT_MARK = "‡"
"""Beside an after-scaling cell whose temperature was cross-fitted on test halves (no validation scores)."""


def calibration_of(saved: TestScores) -> CalibrationReport:
    """One seed's report: its test scores, and its validation scores (if saved) to fit the temperature on."""
    val = saved.val
    val_logits = None if val is None else val.logits if val.logits is not None else log_probs(val.probs)
    return calibrate(saved.labels, saved.probs, saved.logits, None if val is None else val.labels, val_logits)


def calibration_cells(saved: list[TestScores] | str) -> dict:
    """A row's calibration cells from its seeds' saved scores, or every cell n/a for the reason ``saved`` gives."""
    cells: dict = {}
    if isinstance(saved, str):
        for figure in FIGURES:
            for suffix in ("", "_scaled"):
                cells |= {f"{figure}{suffix}_mean": np.nan, f"{figure}{suffix}_std": np.nan}
        return cells | {"temperature_mean": np.nan, "temperature_std": np.nan, NOTE: f"every cell n/a: {saved}"}
    reports = [calibration_of(s) for s in saved]
    for figure in FIGURES:
        cells[f"{figure}_mean"], cells[f"{figure}_std"] = mean_std([getattr(r.before, figure) for r in reports])
    unscaled = [r.not_scaled for r in reports if r.scaled is None]
    if unscaled:
        for figure in FIGURES:
            cells |= {f"{figure}_scaled_mean": np.nan, f"{figure}_scaled_std": np.nan}
        cells |= {"temperature_mean": np.nan, "temperature_std": np.nan}
        seeds = "" if len(unscaled) == len(reports) else f" for {len(unscaled)} of {len(reports)} seeds"
        return cells | {NOTE: f"ECE after temperature scaling n/a: {unscaled[0]}{seeds}"}
    for figure in FIGURES:
        values = [getattr(r.scaled, figure) for r in reports]
        cells[f"{figure}_scaled_mean"], cells[f"{figure}_scaled_std"] = mean_std(values)
    cells["temperature_mean"], cells["temperature_std"] = mean_std([r.temperature for r in reports])
    crossed = sum(r.fitted_on == CROSS_FITTED for r in reports)
    if crossed:
        seeds = "" if crossed == len(reports) else f" for {crossed} of {len(reports)} seeds"
        return cells | {NOTE: f"{CROSS_FIT_MARK} temperature {CROSS_FITTED}{seeds}: {NO_VALIDATION}"}
    return cells | {NOTE: ""}


def scaled_cell(mean: float, std: float, note: str) -> str:
    """An after-scaling cell: ``mean ± std``, marked where its temperature was cross-fitted on test halves."""
    cell = format_mean_std(mean, std)
    return f"{cell} {CROSS_FIT_MARK}" if CROSS_FITTED in note else cell


def scaled_cell_reason(note: str) -> str:
    """The short reason an after-scaling cell shows in place of a number."""
    if NO_VALIDATION in note:
        return "n/a: no val"  # short, so that a 120-column terminal shows it; the notes say it in full
    return "n/a" if note else ""


def run_calibration(record: RunRecord) -> dict[str, float | str | None]:
    """``bench export``'s calibration columns for one run, from its saved scores: ``test_ece``,
    ``test_ece_equal_mass``, ``test_brier``, ``test_nll``, the same after temperature scaling
    (``test_<figure>_scaled``), the ``temperature`` and where it was fitted (``temperature_fitted_on``:
    validation, or cross-fitted on test halves for a file without validation scores); none for a run without a
    readable scores file (a failed run, a missing or damaged file: the leaderboard's notes name those)."""
    path = record.probs_path() if record.ok and record.path is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        report = calibration_of(TestScores.load(path))
    except BenchError:
        return {}
    columns = {f"test_{figure}": getattr(report.before, figure) for figure in FIGURES}
    if report.scaled is not None:
        columns |= {f"test_{figure}_scaled": getattr(report.scaled, figure) for figure in FIGURES}
        columns |= {"temperature": report.temperature, "temperature_fitted_on": report.fitted_on}
    return columns
