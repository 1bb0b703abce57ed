"""A run's evaluation sets, end to end: checked when planned, scored after the test split, saved beside the record.

The sets a run scores are its dataset entry's and its sweep group's (:func:`run_eval_sets`). Planning checks
them all before anything trains (:func:`check_eval_sets`): a missing library, an unknown corruption, a dataset
that is not external or has no label map is one line, exit 2. After the one look at the test split, the runner
hands the selected model here (:func:`score_eval_sets`): each corrupted copy of the test split and each external
set is predicted, scored with the metric table, its scores saved in ``<stem>.evalsets.npz`` and its results
returned for the record's ``eval_sets`` block (:mod:`bench.evaluation.eval_results`). A set that fails then (its
data gone since planning) holds the reason as its ``error`` and the run stays ``ok``: the model was trained and
tested. Nothing here is in the run's identity or key (:mod:`bench.data.eval_sets` says why).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.data.corruptions import CorruptionUnavailable, corrupt, corruption_names, require_library
from bench.data.entries import DatasetEntry, get_dataset_entry
from bench.data.eval_sets import EvalSetSpec, merge_eval_sets, with_modality
from bench.data.external_sets import check_external, external_split, label_map
from bench.data.loading import LoadedDataset, Split
from bench.errors import BenchError, ConfigError
from bench.evaluation.eval_results import (
    EXTERNAL_PART,
    EvalScores,
    EvalSetResult,
    eval_scores_path,
    part_name,
    save_eval_scores,
    score_parts,
)
from bench.evaluation.scores import softmax64
from bench.runs.resolve import ResolvedRun
from bench.runs.spec import RunSpec
from bench.runs.unfinished import ENVIRONMENT_FAILURES, reason

Predict = Callable[[Split], np.ndarray]
"""The selected model's float32 logits of a split (the runner's ``predict`` with its pipeline and engine)."""


def run_eval_sets(spec: RunSpec, entry: DatasetEntry) -> tuple[EvalSetSpec, ...]:
    """The sets ``spec`` scores: its entry's and its group's (a group's replacing the entry's of the same name),
    each corrupted one with its modality resolved."""
    sets = merge_eval_sets(entry.eval_sets, spec.eval_sets, entry.name)  # type: ignore[arg-type]  (EvalSetSpec)
    return tuple(with_modality(s, entry.modality, entry.name) for s in sets)


def check_eval_sets(runs: list[ResolvedRun]) -> None:
    """Every run's sets can be scored: a one-line :class:`ConfigError` naming the set and the run if one cannot."""
    checked: set[tuple] = set()
    for run in runs:
        spec, entry = run.spec, run.dataset
        try:
            for eval_set in run_eval_sets(spec, entry):
                if (entry.name, eval_set) not in checked:
                    _check(entry, eval_set)
                    checked.add((entry.name, eval_set))
        except ConfigError as err:
            raise ConfigError(f"{spec.label}: {err}") from None


def _check(entry: DatasetEntry, eval_set: EvalSetSpec) -> None:
    try:
        if eval_set.kind == "corrupted":
            corruption_names(str(eval_set.modality), eval_set.corruptions)
        else:
            external = get_dataset_entry(str(eval_set.dataset))
            check_external(entry, external)
            label_map(entry, external, eval_set.label_map)
    except ConfigError as err:
        raise ConfigError(f"eval set {eval_set.name!r}: {err}") from None


def score_eval_sets(
    spec: RunSpec, data: LoadedDataset, predict: Predict, record_file: Path
) -> dict[str, EvalSetResult]:
    """Score every set of the run with the selected model, save their scores beside ``record_file``, and return
    the record's ``eval_sets`` by name (``{}`` with no set: no file is written)."""
    sets = run_eval_sets(spec, data.entry)
    if not sets:
        return {}
    path = eval_scores_path(record_file)
    results: dict[str, EvalSetResult] = {}
    saved = {}
    for eval_set in sets:
        try:
            if eval_set.kind == "corrupted":
                result, scores = _corrupted(eval_set, data, predict)
            else:
                result, scores = _external(eval_set, spec, data, predict)
        except ENVIRONMENT_FAILURES:
            raise  # the machine's, not the set's: the run stays to do (bench.runs.unfinished)
        except BenchError as err:  # the trained and tested model stands; the set says why it has no numbers
            results[eval_set.name] = EvalSetResult(eval_set.name, eval_set.kind, error=reason(err))
            continue
        result.file = path.name
        results[eval_set.name], saved[eval_set.name] = result, scores
    if saved:
        save_eval_scores(path, saved)
    return results


def _corrupted(eval_set: EvalSetSpec, data: LoadedDataset, predict: Predict) -> tuple[EvalSetResult, EvalScores]:
    """Each corruption of the set at each severity, applied to the test split's images and predicted."""
    library = require_library()
    test = data.test
    images = test.images[0 : len(test)].cpu()
    labels = test.labels.cpu()
    probs, logits, skipped = {}, {}, {}
    modality = str(eval_set.modality)
    for corruption in corruption_names(modality, eval_set.corruptions):
        try:  # every severity first: a corruption the library fails at one severity is skipped whole
            copies = {s: corrupt(images, test.ids, modality, corruption, s) for s in eval_set.severities or ()}
        except CorruptionUnavailable as err:
            skipped[corruption] = str(err)
            continue
        for severity, pixels in copies.items():
            out = predict(Split(images=torch.from_numpy(pixels), labels=labels, ids=test.ids))
            probs[part_name(corruption, severity)], logits[part_name(corruption, severity)] = softmax64(out), out
    scores = EvalScores(np.asarray(test.ids), labels.numpy(), probs, logits)
    classes = list(data.classes)
    positive = (data.entry.positive or classes[1]) if len(classes) == 2 else None
    parts, _ = score_parts(scores, classes, positive)
    result = EvalSetResult(
        name=eval_set.name, kind="corrupted", classes=classes, positive=positive, n_images=len(test), file="",
        parts=parts, modality=modality, library=library, severities=list(eval_set.severities or ()),
        skipped=skipped, reference=eval_set.reference,
    )  # fmt: skip
    return result, scores


def _external(
    eval_set: EvalSetSpec, spec: RunSpec, data: LoadedDataset, predict: Predict
) -> tuple[EvalSetResult, EvalScores]:
    """The external dataset's images the model's dataset does not share, predicted and scored through the map."""
    model, external = data.entry, get_dataset_entry(str(eval_set.dataset))
    check_external(model, external)
    mapping = label_map(model, external, eval_set.label_map)
    found = external_split(model, spec.data_root, external, str(eval_set.split), data.resolution, mapping)
    out = predict(found.split)
    probs = mapping.probs(softmax64(out), model.classes)
    labels = found.split.labels.numpy()
    scores = EvalScores(np.asarray(found.split.ids), labels, {EXTERNAL_PART: probs}, {EXTERNAL_PART: out})
    parts, block = score_parts(scores, list(mapping.classes), mapping.positive, full=True)
    result = EvalSetResult(
        name=eval_set.name, kind="external", classes=list(mapping.classes), positive=block.get("positive"),
        n_images=len(labels), file="", parts=parts, metrics=block, dataset=external.name, split=eval_set.split,
        label_map=mapping.mapping, direction=mapping.direction, label_map_source=mapping.source, removed=found.removed,
    )  # fmt: skip
    return result, scores
