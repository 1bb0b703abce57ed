"""The MedMNIST records' AUC and accuracy equal MedMNIST's own evaluator on their saved scores files.

A reproduction of the MedMNIST v2 table is only comparable with the paper if its numbers are the ones the
paper's evaluator would give on the same predictions; this holds every committed PneumoniaMNIST and
DermaMNIST record (or a migrated copy, ``$BENCH_RECOMPUTE_DIR``) to it, and the two evaluators to each other on
synthetic scores, ties included.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from medmnist_evaluator import get_acc, get_auc
from test_recompute_records import RESULTS, scored_records

from bench.evaluation.values import compute_metrics

MEDMNIST = {"pneumoniamnist": "binary-class", "dermamnist": "multi-class"}
RECORDS = [p for p in scored_records(RESULTS) if json.loads(p.read_text())["spec"]["dataset"] in MEDMNIST]


def test_there_are_medmnist_records() -> None:
    assert len(RECORDS) >= 10


@pytest.mark.parametrize("path", RECORDS, ids=[str(p.relative_to(RESULTS)) for p in RECORDS])
def test_stored_auc_and_accuracy_are_medmnist_s(path) -> None:
    record = json.loads(path.read_text())
    task = MEDMNIST[record["spec"]["dataset"]]
    with np.load(path.with_suffix(".probs.npz")) as saved:
        labels, probs = saved["labels"], saved["probs"]
    assert record["test"]["auc"] == pytest.approx(get_auc(labels, probs, task), abs=1e-12)
    assert record["test"]["accuracy"] == pytest.approx(get_acc(labels, probs, task), abs=1e-12)


@pytest.mark.parametrize(("k", "decimals"), [(2, None), (2, 2), (7, None), (7, 1)])
def test_the_two_evaluators_agree_on_synthetic_scores(k: int, decimals: int | None) -> None:
    rng = np.random.default_rng(k)
    y = np.concatenate([np.arange(k), rng.integers(0, k, 200)])
    logits = rng.normal(size=(y.size, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if decimals is not None:  # ties between images and within rows (0.5/0.5: class 0 for both)
        probs = np.round(probs, decimals) + 1e-3
        probs /= probs.sum(axis=1, keepdims=True)
    task = "binary-class" if k == 2 else "multi-class"
    values = compute_metrics(y, probs, [str(i) for i in range(k)]).values
    assert values["auc"] == pytest.approx(get_auc(y, probs, task), abs=1e-12)
    assert values["accuracy"] == pytest.approx(get_acc(y, probs, task), abs=1e-12)
