"""A run's evaluation sets as stored: the typed results in its record, and the scores beside it they come from.

An evaluation set (:mod:`bench.data.eval_sets`) is scored like the test split, and kept to the same rule: every
stored number is recomputable from the saved scores alone. The scores are a sibling of the record's
``.probs.npz``, ``<record stem>.evalsets.npz`` (:func:`eval_scores_path`), one group of keys per set:

* ``<set>/ids`` and ``<set>/labels``: the images scored, their labels in the classes the set is scored in;
* ``<set>/<part>/probs``: float64 (N, K) probabilities in those classes, what the metrics are computed from;
* ``<set>/<part>/logits``: float32, the model's raw outputs (in the model's classes: an external set scored
  through a label map sums the softmax over the fine classes, so its ``probs`` have fewer columns).

A part is one corrupted copy of the test split (``<corruption>@<severity>``, e.g. ``pixelate@3``) or, for an
external set, :data:`EXTERNAL_PART`. The record's ``eval_sets`` block holds an :class:`EvalSetResult` per set:
every metric of the table per part, the full metric block (per class, confusion matrix) for an external set, and
what was done to make the set (library and skipped corruptions; label map and removed images).
``python -m bench.evaluation.rescore`` recomputes the block from the file (:func:`rescored_eval_sets`).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.errors import BenchError, ResultsError
from bench.evaluation.values import compute_metrics
from bench.files import atomic_write_bytes, load_npz_arrays

EXTERNAL_PART = "all"
"""The one part of an external set: all its images that were kept."""
SUFFIX = ".evalsets.npz"


def eval_scores_path(record_file: Path) -> Path:
    """The eval sets' scores beside a record (``<stem>.evalsets.npz``, next to ``<stem>.probs.npz``)."""
    return record_file.with_suffix(SUFFIX)


def part_name(corruption: str, severity: int) -> str:
    """A corrupted copy's part name: ``pixelate@3``."""
    return f"{corruption}@{severity}"


def split_part(part: str) -> tuple[str, int]:
    """``pixelate@3`` -> (``pixelate``, 3)."""
    corruption, _, severity = part.rpartition("@")
    return corruption, int(severity)


@dataclass(frozen=True, eq=False)
class EvalScores:
    """One set's saved scores: ``ids``, ``labels`` (N,), and per part ``probs`` float64 and ``logits`` float32."""

    ids: np.ndarray
    labels: np.ndarray
    probs: dict[str, np.ndarray]
    logits: dict[str, np.ndarray] = field(default_factory=dict)


def save_eval_scores(path: Path, sets: dict[str, EvalScores]) -> None:
    """Write every set's scores into one npz, atomically."""
    arrays: dict[str, np.ndarray] = {}
    for name, scores in sets.items():
        arrays[f"{name}/ids"] = np.asarray(scores.ids)
        arrays[f"{name}/labels"] = np.asarray(scores.labels, dtype=np.int64)
        for part, probs in scores.probs.items():
            arrays[f"{name}/{part}/probs"] = np.asarray(probs, dtype=np.float64)
            if part in scores.logits:
                arrays[f"{name}/{part}/logits"] = np.asarray(scores.logits[part], dtype=np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_eval_scores(path: Path) -> dict[str, EvalScores]:
    """Every set's scores from the file; a missing, damaged or malformed one is a one-line :class:`ResultsError`."""
    arrays = load_npz_arrays(path, "eval set scores file")
    sets: dict[str, EvalScores] = {}
    for key in (k for k in arrays if k.endswith("/ids")):
        name = key.removesuffix("/ids")
        if f"{name}/labels" not in arrays:
            raise ResultsError(f"{path}: eval set {name!r} has ids but no labels")
        parts = {k.split("/")[-2]: v for k, v in arrays.items() if k.startswith(f"{name}/") and k.endswith("/probs")}
        logits = {k.split("/")[-2]: v for k, v in arrays.items() if k.startswith(f"{name}/") and k.endswith("/logits")}
        n = len(arrays[key])
        for part, probs in parts.items():
            if probs.ndim != 2 or probs.shape[0] != n:
                raise ResultsError(f"{path}: {name}/{part}/probs {probs.shape} does not fit {n} images")
        sets[name] = EvalScores(arrays[key], arrays[f"{name}/labels"].astype(np.int64), parts, logits)
    return sets


@dataclass
class EvalSetResult:
    """One evaluation set of a run, as its record stores it (the module says where its numbers come from)."""

    name: str
    kind: Literal["corrupted", "external"]
    classes: list[str] = field(default_factory=list)
    """The classes the set is scored in (an external set's coarse side of its label map)."""
    positive: str | None = None
    n_images: int = 0
    file: str = ""
    parts: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Every metric of the table per part (``pixelate@3``; an external set's :data:`EXTERNAL_PART`)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """An external set's full metric block (as a record's ``test``: per class, confusion matrix)."""
    modality: str | None = None
    library: str | None = None
    severities: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Corruptions the library could not apply here, with its reason (the same for every run at this resolution)."""
    reference: str | None = None
    """The backbone whose row relative balanced errors divide by."""
    dataset: str | None = None
    split: str | None = None
    label_map: dict[str, str] = field(default_factory=dict)
    direction: str | None = None
    label_map_source: str | None = None
    removed: dict[str, int | None] = field(default_factory=dict)
    """What was removed before scoring: ``checked``, ``removed`` and by test (:mod:`bench.data.external_sets`)."""
    error: str | None = None
    """Why the set has no numbers, when it failed after the run was trained and tested (the run stays ``ok``)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: fields that are None or empty left out."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != {} and v != []}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSetResult:
        """A stored result (fields this version does not know are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def value(self, part: str, metric: str) -> float:
        """A part's metric; NaN where undefined (stored as null) or absent."""
        value = self.parts.get(part, {}).get(metric)
        return float("nan") if value is None else float(value)


def score_parts(
    scores: EvalScores, classes: list[str], positive: str | None, full: bool = False
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Each part's metric values from the saved probabilities as they are, and (``full``) the first part's whole
    metric block: what a record stores, and what a rescore recomputes."""
    parts, block = {}, {}
    for part, probs in scores.probs.items():
        metrics = compute_metrics(scores.labels, probs, classes, positive)
        parts[part] = dict(metrics.values)
        if full and not block:
            block = metrics.to_dict()
    return parts, block


def eval_results(record_eval_sets: dict[str, Any]) -> dict[str, EvalSetResult]:
    """A record's ``eval_sets`` block, typed."""
    return {name: EvalSetResult.from_dict(block) for name, block in (record_eval_sets or {}).items()}


def rescored_eval_sets(record_file: Path, stored: dict[str, Any]) -> dict[str, Any]:
    """The record's ``eval_sets`` block recomputed from its saved scores (a :class:`ResultsError` if they are gone)."""
    if not stored or all("error" in block for block in stored.values()):
        return stored
    path = eval_scores_path(record_file)
    if not path.is_file():
        raise ResultsError(f"{record_file}: its eval sets are recorded but {path.name} is missing")
    saved = load_eval_scores(path)
    out = {}
    for name, result in eval_results(stored).items():
        if result.error is not None:
            out[name] = stored[name]  # no scores were saved for it
            continue
        if name not in saved:
            raise ResultsError(f"{path}: no scores for the eval set {name!r} its record holds")
        try:
            parts, block = score_parts(saved[name], result.classes, result.positive, full=result.kind == "external")
        except BenchError as err:
            raise ResultsError(f"{path}: cannot rescore eval set {name!r}: {err}") from None
        result.parts, result.n_images = parts, len(saved[name].ids)
        if block:
            result.metrics = block
        out[name] = result.to_dict()
    return out
