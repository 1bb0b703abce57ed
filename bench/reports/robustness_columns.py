"""The ``robustness`` and ``external`` column groups of a leaderboard, and the eval-set columns of ``bench export``.

Both read the evaluation sets a run was scored on (:mod:`bench.evaluation.eval_results`), from the numbers its
record stores (each recomputable from its ``.evalsets.npz``; ``python -m bench.evaluation.rescore`` keeps them
so), seed by seed, shown as the mean ± std over the row's seeds like every metric cell.

* ``robustness``: the row's balanced error on its corrupted test split, averaged over severities and then over
  corruptions (MedMNIST-C's mean BE; :mod:`bench.evaluation.robustness`); relative to the reference row (the
  set's ``reference`` backbone, by default ``resnet18``, at the row's protocol and resolution): each corruption's
  error over the reference's (seeds averaged first), averaged over the corruptions both have (MedMNIST-C's
  relative BE), and the same after subtracting each one's clean error (their rBE). A set named ``corrupted`` is
  used where a run has several corrupted sets, else the first.
* ``external``: per external set, balanced accuracy and AUC on its images, and how many images the leakage check
  removed before scoring.

A row without such a set shows n/a with the reason in the notes, never an empty cell.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.evaluation.eval_results import EXTERNAL_PART, EvalSetResult
from bench.evaluation.robustness import (
    METRIC,
    corruption_errors,
    mean_balanced_error,
    relative_balanced_error,
    relative_degradation,
)
from bench.evaluation.spread import format_mean_std, mean_std
from bench.runs.experiments import Experiment
from bench.runs.record import RunRecord

NOTE = "robustness_note"
EXTERNAL_METRICS = ("balanced_accuracy", "auc")
PREFERRED = "corrupted"


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Over the seeds that have the figure: a set that failed in one seed leaves that seed out."""
    return mean_std([x for x in values if not math.isnan(x)])


def corrupted_set(record: RunRecord) -> EvalSetResult | None:
    """The run's corrupted set the columns read: the one named ``corrupted``, else the first."""
    found = [r for r in record.eval_sets.values() if r.kind == "corrupted"]
    return next((r for r in found if r.name == PREFERRED), found[0] if found else None)


def _clean_error(record: RunRecord) -> float:
    return 1.0 - record.score(METRIC)


def _seed_errors(experiment: Experiment) -> list[tuple[dict[str, float], float]]:
    """Per finished seed with a corrupted set: each corruption's error, and the clean (test split) error."""
    out = []
    for record in experiment.ok:
        result = corrupted_set(record)
        if result is not None and result.parts:
            out.append((corruption_errors(result), _clean_error(record)))
    return out


def _averaged(seeds: list[tuple[dict[str, float], float]]) -> tuple[dict[str, float], float]:
    """Each corruption's error averaged over seeds (the corruptions every seed has), and the clean error's mean."""
    shared = set.intersection(*(set(e) for e, _ in seeds))
    errors = {c: float(np.mean([e[c] for e, _ in seeds])) for c in seeds[0][0] if c in shared}
    return errors, float(np.mean([clean for _, clean in seeds]))


def reference_row(experiment: Experiment, experiments: list[Experiment], backbone: str) -> Experiment | None:
    """The reference backbone's row beside ``experiment``: same protocol label and resolution, else the only one."""
    candidates = [e for e in experiments if e.backbone == backbone]
    here = (experiment.protocol_label, experiment.resolution)
    same = [e for e in candidates if (e.protocol_label, e.resolution) == here]
    if len(same) == 1:
        return same[0]
    return candidates[0] if len(candidates) == 1 else None


def robustness_cells(experiment: Experiment, experiments: list[Experiment]) -> dict[str, Any]:
    """A row's robustness cells (see the module); n/a cells with the reason in ``robustness_note``."""
    cells: dict[str, Any] = {
        "corrupted_be_mean": math.nan, "corrupted_be_std": math.nan, "corrupted_rel_be": math.nan,
        "corrupted_rbe": math.nan, "corrupted_reference": "", NOTE: "",
    }  # fmt: skip
    seeds = _seed_errors(experiment)
    if not seeds:
        return cells | {NOTE: "no corrupted eval set"}
    cells["corrupted_be_mean"], cells["corrupted_be_std"] = _mean_std([mean_balanced_error(e) for e, _ in seeds])
    result = corrupted_set(experiment.ok[0])
    backbone = (result.reference if result else None) or ""
    reference = reference_row(experiment, experiments, backbone)
    reference_seeds = _seed_errors(reference) if reference is not None else []
    if not reference_seeds:
        return cells | {NOTE: f"no {backbone} row with a corrupted eval set to be relative to"}
    errors, clean = _averaged(seeds)
    ref_errors, ref_clean = _averaged(reference_seeds)
    cells["corrupted_rel_be"] = relative_balanced_error(errors, ref_errors)
    cells["corrupted_rbe"] = relative_degradation(errors, clean, ref_errors, ref_clean)
    cells["corrupted_reference"] = f"{reference.backbone} ({reference.protocol_label})"
    skipped = sorted({c for r in experiment.ok if (s := corrupted_set(r)) for c in s.skipped})
    if skipped:
        cells[NOTE] = f"skipped by the library at this resolution: {', '.join(skipped)}"
    return cells


def external_names(experiments: list[Experiment | None]) -> list[str]:
    """The external sets any row was scored on, in first-seen order."""
    names: dict[str, None] = {}
    for experiment in experiments:
        for record in experiment.ok if experiment else ():
            names.update({n: None for n, r in record.eval_sets.items() if r.kind == "external"})
    return list(names)


def external_cells(experiment: Experiment, names: list[str]) -> dict[str, Any]:
    """Per external set: each of :data:`EXTERNAL_METRICS` as mean and std over seeds, and the images removed."""
    cells: dict[str, Any] = {}
    for name in names:
        results = [r.eval_sets[name] for r in experiment.ok if name in r.eval_sets]
        results = [r for r in results if r.error is None]  # a set that failed after training has no numbers
        for metric in EXTERNAL_METRICS:
            values = [r.value(EXTERNAL_PART, metric) for r in results]
            cells[f"ext_{name}_{metric}_mean"], cells[f"ext_{name}_{metric}_std"] = _mean_std(values)
        removed = {f"{r.removed.get('removed')} of {r.removed.get('checked')}" for r in results}
        cells[f"ext_{name}_removed"] = removed.pop() if len(removed) == 1 else ("varies" if removed else "")
    return cells


def display(table: pd.DataFrame, groups: list[str], cells) -> dict[str, list[str]]:
    """The groups' display cells by header (``cells(table, fmt)`` leaves the majority row empty)."""
    out: dict[str, list[str]] = {}
    if "robustness" in groups:
        out["mean BE (corruptions)"] = cells(
            table, lambda r: format_mean_std(r["corrupted_be_mean"], r["corrupted_be_std"])
        )
        out["rel. BE"] = cells(table, lambda r: format_mean_std(r["corrupted_rel_be"], math.nan))
        out["rBE"] = cells(table, lambda r: format_mean_std(r["corrupted_rbe"], math.nan))
    if "external" in groups:
        for name in table.attrs.get("external_sets", []):
            for metric, short in zip(EXTERNAL_METRICS, ("bal. acc.", "AUC"), strict=True):
                key = f"ext_{name}_{metric}"
                out[f"{name} {short}"] = cells(table, lambda r, k=key: format_mean_std(r[f"{k}_mean"], r[f"{k}_std"]))
            out[f"{name} removed"] = cells(table, lambda r, n=name: r[f"ext_{n}_removed"] or "n/a")
    return out


def notes(table: pd.DataFrame, groups: list[str], reasons) -> list[str]:
    """What the groups' cells mean (``reasons(table, column)``: one line per distinct n/a reason)."""
    out = []
    if "robustness" in groups:
        refs = sorted({r for r in table.get("corrupted_reference", pd.Series(dtype=str)).dropna() if r})
        out.append(
            "Robustness (MedMNIST-C corruptions of the test split at the run's resolution, seeds: mean ± std): mean BE "
            "= balanced error (1 - balanced accuracy) averaged over severities, then over corruptions; rel. BE = "
            "each corruption's BE over the reference row's, averaged (MedMNIST-C's relative BE); rBE = the same after "
            f"subtracting each row's clean BE. Reference: {', '.join(refs) or 'none found'}."
        )
        out += [f"Robustness: {line}." for line in reasons(table, NOTE)]
    if "external" in groups:
        out.append(
            "External (seeds: mean ± std): another dataset scored through a label map, after removing every image "
            "the row's dataset shares with it (exact, near-duplicate or same lesion; 'removed' counts them)."
        )
    return out


def run_eval_set_columns(record: RunRecord) -> dict[str, Any]:
    """``bench export``'s columns for one run: ``evalset_<name>_mean_balanced_error`` and ``..._be_<corruption>``
    for a corrupted set, ``evalset_<name>_<metric>``, ``..._n_images`` and ``..._removed`` for an external one (a
    ``:`` in the name written ``-``: ``evalset_external-isic_auc``)."""
    row: dict[str, Any] = {}
    for name, result in record.eval_sets.items():
        prefix = f"evalset_{name.replace(':', '-')}"  # a column name MLflow takes on every system
        if result.error is not None:
            row[f"{prefix}_error"] = result.error
            continue
        if result.kind == "corrupted":
            errors = corruption_errors(result)
            row[f"{prefix}_mean_balanced_error"] = mean_balanced_error(errors)
            row |= {f"{prefix}_be_{c}": e for c, e in errors.items()}
            row[f"{prefix}_skipped"] = ",".join(result.skipped) or None
        else:
            row |= {f"{prefix}_{m}": result.value(EXTERNAL_PART, m) for m in result.parts.get(EXTERNAL_PART, {})}
            row[f"{prefix}_n_images"] = result.n_images
            row[f"{prefix}_removed"] = result.removed.get("removed")
    return row
