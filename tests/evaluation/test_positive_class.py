"""The positive class: named by the dataset entry, used by sensitivity, specificity, F1 and AUC, stored."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, recall_score, roc_auc_score

from bench.data.entries import parse_entry
from bench.errors import ConfigError, DataError
from bench.evaluation.values import compute_metrics

ENTRY = """name = "{name}"
title = "t"
layout = "npz"
path = "data/tiny.npz"
classes = {classes}
task = "{task}"
{positive}licence = "CC0"
citation = "synthetic"
[split]
policy = "official"
"""


def _entry(tmp_path: Path, classes: str = '["malignant", "benign"]', task: str = "binary", positive: str = ""):
    path = tmp_path / "mine.toml"
    path.write_text(ENTRY.format(name="mine", classes=classes, task=task, positive=positive))
    return parse_entry(path)


def test_an_entry_names_its_positive_class_or_gets_the_second(tmp_path: Path) -> None:
    assert _entry(tmp_path, positive='positive = "malignant"\n').positive == "malignant"
    assert _entry(tmp_path).positive is None  # classes[1], as before the field existed


@pytest.mark.parametrize(
    ("classes", "task", "positive", "problem"),
    [
        ('["malignant", "benign"]', "binary", 'positive = "melanoma"\n', "field 'positive' is 'melanoma', not one"),
        ('["a", "b", "c"]', "multiclass", 'positive = "a"\n', "field 'positive' is only for task 'binary'"),
    ],
)
def test_a_wrong_positive_class_is_a_one_line_error(tmp_path: Path, classes, task, positive, problem) -> None:
    with pytest.raises(ConfigError, match=problem) as err:
        _entry(tmp_path, classes, task, positive)
    assert "mine.toml" in str(err.value) and "\n" not in str(err.value)


def test_positive_label_0_scores_as_the_relabelled_set_with_default_positive() -> None:
    """malignant = 0, benign = 1 with positive malignant must give what malignant = 1 gives by default."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    logits = rng.normal(size=(300, 2)) + np.eye(2)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    mine = compute_metrics(y, probs, ["malignant", "benign"], positive="malignant")
    relabelled = compute_metrics(1 - y, probs[:, ::-1], ["benign", "malignant"])
    for name in ("sensitivity", "specificity", "f1", "auc", "accuracy", "balanced_accuracy"):
        assert mine.values[name] == pytest.approx(relabelled.values[name], abs=1e-12), name
    assert mine.values["sensitivity"] == pytest.approx(recall_score(y, probs.argmax(1), pos_label=0))
    assert mine.values["f1"] == pytest.approx(f1_score(y, probs.argmax(1), pos_label=0))
    assert mine.values["auc"] == pytest.approx(roc_auc_score(y == 0, probs[:, 0]), abs=1e-12)
    assert mine.values["sensitivity"] != compute_metrics(y, probs, ["malignant", "benign"]).values["sensitivity"]
    assert mine.to_dict()["positive"] == "malignant" and relabelled.to_dict()["positive"] == "malignant"


def test_a_positive_class_outside_the_classes_is_refused() -> None:
    with pytest.raises(DataError, match=r"positive class 'x' is not one of the classes \['a', 'b'\]"):
        compute_metrics(np.array([0, 1]), np.eye(2), ["a", "b"], positive="x")
    with pytest.raises(DataError, match="only binary tasks have one"):
        compute_metrics(np.array([0, 1, 2]), np.eye(3), ["a", "b", "c"], positive="a")


def test_a_run_scores_and_records_the_entry_s_positive_class(project: Path, tmp_path: Path, monkeypatch) -> None:
    """End to end: a dataset whose positive is label 0; the record says so and sklearn agrees on its file."""
    from bench.runs import runner
    from bench.runs.runner import run
    from bench.runs.spec import RunSpec

    quick = dataclasses.replace(runner.RUN_LATENCY, time_budget_s=0.05, warmup_iters=1, min_iters=2, max_iters=2)
    monkeypatch.setattr(runner, "RUN_LATENCY", quick)  # latency is not what this test is about

    toml = project / "datasets" / "tiny.toml"
    toml.write_text(toml.read_text().replace('task = "binary"\n', 'task = "binary"\npositive = "dark"\n'))
    spec = RunSpec(backbone="test_resnet", dataset="tiny", protocol="scratch", seed=0, epochs=1)
    record = run(spec, tmp_path / "results", torch.device("cpu"))
    assert record.status == "ok", record.error
    assert record.test.positive == "dark" and record.val.positive == "dark"
    stored = json.loads(next((tmp_path / "results" / "runs").rglob("*.json")).read_text())["test"]
    with np.load(next((tmp_path / "results" / "runs").rglob("*.probs.npz"))) as saved:
        assert saved["logits"].dtype == np.float32 and saved["probs"].dtype == np.float64
        labels, probs = saved["labels"], saved["probs"]
    pred = probs.argmax(axis=1)
    assert stored["sensitivity"] == pytest.approx(recall_score(labels, pred, pos_label=0), abs=1e-12)
    assert stored["specificity"] == pytest.approx(recall_score(labels, pred, pos_label=1), abs=1e-12)
    assert stored["auc"] == pytest.approx(roc_auc_score(labels == 0, probs[:, 0]), abs=1e-12)
