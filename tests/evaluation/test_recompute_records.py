"""Every committed run record's test metrics, recomputed from its saved scores file by scikit-learn alone.

The stored numbers are only worth quoting if anyone can recompute them from the ``.probs.npz`` beside the
record with a standard tool and no transformation. This test does that for every record under ``results/``
(or under ``$BENCH_RECOMPUTE_DIR``, to check a migrated copy), and shows on copies that it notices a saved
file or a stored metric altered by one rank or one image.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import confusion_matrix
from sklearn_oracle import sklearn_metric

from bench.evaluation.rescore import rescore
from bench.evaluation.scores import TestScores
from bench.evaluation.values import compute_metrics

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("BENCH_RECOMPUTE_DIR", REPO / "results"))
RECOMPUTED = ("accuracy", "balanced_accuracy", "macro_f1", "auc")  # the headline metrics, written out
BINARY_ONLY = ("sensitivity", "specificity")


def scored_records(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("**/*.json") if p.with_suffix(".probs.npz").is_file())


def recompute(record_path: Path) -> list[str]:
    """What in the record's ``test`` block scikit-learn does not reproduce from the saved file (1e-12)."""
    record = json.loads(record_path.read_text())
    with np.load(record_path.with_suffix(".probs.npz")) as saved:
        labels, probs = saved["labels"], saved["probs"]
        logits = saved["logits"] if "logits" in saved.files else None
    test, classes = record["test"], record["dataset"]["classes"]
    positive = classes.index(test.get("positive", classes[1])) if len(classes) == 2 else 1
    problems = []
    if logits is not None and not np.array_equal(probs, softmax(logits.astype(np.float64), axis=1)):
        problems.append("probs are not the float64 softmax of the saved logits")
    for name in RECOMPUTED + (BINARY_ONLY if len(classes) == 2 else ()):
        expected = sklearn_metric(name, labels, probs, positive)
        stored = math.nan if test.get(name) is None else test[name]
        if not (math.isnan(stored) and math.isnan(expected)) and not abs(stored - expected) <= 1e-12:
            problems.append(f"{name}: stored {stored!r}, scikit-learn {expected!r}")
    matrix = confusion_matrix(labels, probs.argmax(axis=1), labels=list(range(len(classes)))).tolist()
    if test["confusion_matrix"] != matrix:
        problems.append(f"confusion matrix: stored {test['confusion_matrix']}, scikit-learn {matrix}")
    return problems


RECORDS = scored_records(RESULTS)


def test_there_are_records_to_recompute() -> None:
    assert len(RECORDS) >= 30, f"only {len(RECORDS)} records with saved scores under {RESULTS}"


@pytest.mark.parametrize("path", RECORDS, ids=[str(p.relative_to(RESULTS)) for p in RECORDS])
def test_stored_metrics_are_recomputed_by_scikit_learn(path: Path) -> None:
    assert recompute(path) == []


def _copy(record: Path, into: Path) -> Path:
    shutil.copy(record.with_suffix(".probs.npz"), into / "r.probs.npz")
    return Path(shutil.copy(record, into / "r.json"))


def _one_rank_swap(labels: np.ndarray, score: np.ndarray) -> tuple[int, int]:
    """Two images next to each other in score order, of different classes and different scores."""
    order = np.argsort(score, kind="stable")
    for a, b in zip(order[:-1], order[1:], strict=True):
        if labels[a] != labels[b] and score[a] != score[b]:
            return int(a), int(b)
    raise AssertionError("no adjacent pair to swap")


def _alter_saved(path: Path, change) -> None:
    with np.load(path) as saved:
        arrays = {k: saved[k].copy() for k in saved.files}
    change(arrays)
    if "logits" in arrays:
        del arrays["logits"]  # the probabilities are what is scored; the logits check is its own test
    np.savez(path, **arrays)


def _alter_stored(path: Path, name: str, delta: float) -> None:
    record = json.loads(path.read_text())
    record["test"][name] += delta
    path.write_text(json.dumps(record))


# Mutants of a binary (positive column ranked) and a multiclass record, each off by one rank or one image.
SAMPLES = {
    "binary": "reference/runs/pneumoniamnist/resnet18",
    "multiclass": "reproduction/runs/dermamnist/resnet18",
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
@pytest.mark.parametrize("mutation", ["swap one rank in the file", "relabel one image", "stored auc", "stored acc"])
def test_a_change_of_one_rank_or_one_image_is_caught(tmp_path: Path, kind: str, mutation: str) -> None:
    source = sorted((REPO / "results" / SAMPLES[kind]).glob("*.json"))[0]
    record = _copy(source, tmp_path)
    rescore(record)  # as the migration leaves it, so that only the mutation can make it fail
    assert recompute(record) == []
    npz = record.with_suffix(".probs.npz")
    with np.load(npz) as saved:
        labels, probs = saved["labels"], saved["probs"]
    n, k = probs.shape
    column = 1 if k == 2 else int(labels[0])
    if mutation == "swap one rank in the file":
        a, b = _one_rank_swap(labels == column, probs[:, column])

        def change(arrays):
            arrays["probs"][[a, b]] = arrays["probs"][[b, a]]

        _alter_saved(npz, change)
    elif mutation == "relabel one image":
        _alter_saved(npz, lambda arrays: arrays["labels"].__setitem__(0, (labels[0] + 1) % k))
    elif mutation == "stored auc":  # one rank of one class's column: 1 / (P N), over K classes if multiclass
        positives = int((labels == column).sum())
        _alter_stored(record, "auc", 1 / (positives * (n - positives)) / (1 if k == 2 else k))
    else:
        _alter_stored(record, "accuracy", 1 / n)
    assert recompute(record), mutation


def test_altered_logits_are_caught(tmp_path: Path) -> None:
    """A file with logits must hold exactly their float64 softmax: one changed logit is noticed."""
    logits = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    labels = np.arange(20) % 2
    scores = TestScores.from_logits([f"i{i}" for i in range(20)], labels, logits)
    scores.save(tmp_path / "r.probs.npz")
    test = compute_metrics(labels, scores.probs, ["a", "b"]).to_dict()
    (tmp_path / "r.json").write_text(json.dumps({"test": test, "dataset": {"classes": ["a", "b"]}}))
    assert recompute(tmp_path / "r.json") == []
    with np.load(tmp_path / "r.probs.npz") as saved:
        arrays = {k: saved[k].copy() for k in saved.files}
    arrays["logits"][3, 0] += 0.5
    np.savez(tmp_path / "r.probs.npz", **arrays)
    assert recompute(tmp_path / "r.json") == ["probs are not the float64 softmax of the saved logits"]
