"""The metric table against scikit-learn as oracle, the argmax tie rule, and the consumers that read the table."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn_oracle import sklearn_metric

from bench.config import from_mapping
from bench.errors import ConfigError
from bench.evaluation.bootstrap import bootstrap_ci
from bench.evaluation.metrics import (
    HEADLINE_METRICS,
    METRIC_NAMES,
    METRICS,
    SELECTABLE_METRICS,
    get_metric,
    predictions,
)
from bench.evaluation.values import compute_metrics
from bench.protocol.spec import Protocol, get_protocol


def same(actual: float, expected: float) -> bool:
    """Equal to 1e-12, NaN equal to NaN (NaN is a documented value)."""
    return math.isnan(actual) if math.isnan(expected) else abs(actual - expected) <= 1e-12


def model(y: np.ndarray, k: int, strength: float, seed: int, decimals: int | None = None) -> np.ndarray:
    """Softmax rows of a model better than chance; rounded to ``decimals`` to make exact ties."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(y.size, k))
    logits[np.arange(y.size), y] += strength
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if decimals is not None:
        probs = np.round(probs, decimals)
        probs[:, -1] = 1 - probs[:, :-1].sum(axis=1)  # still rows of probabilities, ties kept
    return probs


Y2 = np.random.default_rng(1).integers(0, 2, 80)
Y3 = np.random.default_rng(2).integers(0, 3, 90)
Y7 = np.concatenate([np.arange(7), np.random.default_rng(3).integers(0, 7, 293)])
# (id, y_true, probs, positive): each metric of the table is held to scikit-learn on every case that it applies to.
CASES = [
    ("binary", Y2, model(Y2, 2, 1.0, 1), 1),
    ("binary, positive is label 0", Y2, model(Y2, 2, 1.0, 1), 0),
    ("binary, scores tied in tenths", Y2, model(Y2, 2, 0.5, 2, decimals=1), 1),
    ("binary, single class in y_true", np.ones(9, dtype=int), model(np.ones(9, dtype=int), 2, 1.0, 3), 1),
    ("binary, positive never true nor predicted", np.zeros(6, dtype=int), np.tile([0.9, 0.1], (6, 1)), 1),
    ("three classes", Y3, model(Y3, 3, 1.0, 4), 1),
    ("three classes, argmax ties", Y3, model(Y3, 3, 0.3, 5, decimals=1), 1),
    ("three classes, one absent", Y3 % 2, model(Y3 % 2, 3, 1.0, 6), 1),
    ("seven classes", Y7, model(Y7, 7, 1.5, 7), 1),
]
PAIRS = [(case, metric.name) for case in CASES for metric in METRICS if metric.applies_to(case[2].shape[1])]


@pytest.mark.parametrize(("case", "name"), PAIRS, ids=[f"{c[0]}: {n}" for c, n in PAIRS])
def test_every_metric_equals_scikit_learn(case, name) -> None:
    case_id, y, probs, positive = case
    classes = [f"c{i}" for i in range(probs.shape[1])]
    stored = compute_metrics(y, probs, classes, classes[positive] if len(classes) == 2 else None).values[name]
    assert same(stored, sklearn_metric(name, y, probs, positive)), (case_id, stored)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_confusion_matrix_and_per_class_equal_scikit_learn(case) -> None:
    _, y, probs, _ = case
    k = probs.shape[1]
    result = compute_metrics(y, probs, [f"c{i}" for i in range(k)])
    pred = probs.argmax(axis=1)
    assert [list(r) for r in result.confusion_matrix] == confusion_matrix(y, pred, labels=list(range(k))).tolist()
    expected = precision_recall_fscore_support(y, pred, labels=list(range(k)), zero_division=np.nan)
    for i, c in enumerate(result.per_class.values()):
        got = (c.precision, c.recall, c.f1, c.support)
        assert all(same(float(g), float(e[i])) for g, e in zip(got, expected, strict=True)), (i, got)


@pytest.mark.parametrize("name", ["accuracy", "balanced_accuracy_isic", "macro_f1", "auc", "f1", "specificity"])
def test_every_resample_equals_scikit_learn(name: str) -> None:
    """The bootstrap scores each resample with the table's formula; sklearn on each resample must agree.

    Scores are tied (tenths) and a class of 2 images is missed by some resamples: skipping must agree too.
    """
    y = np.concatenate([np.repeat([0, 1], 20), [1, 1]]) if name in ("f1", "specificity") else np.r_[Y3[:40], 2, 2]
    k = int(y.max()) + 1
    probs = model(y, k, 0.8, seed=4, decimals=1)
    fast = bootstrap_ci(y, probs, name, n_resamples=60, seed=11)
    slow = bootstrap_ci(y, probs, lambda yy, pp: sklearn_metric(name, yy, pp), n_resamples=60, seed=11)
    assert tuple(fast) == pytest.approx(tuple(slow), abs=1e-12)
    assert fast.n_skipped == slow.n_skipped


def test_argmax_ties_go_to_the_lowest_class_index() -> None:
    """The stated rule: a tied row is predicted as the lowest tied class (numpy's argmax), in every metric."""
    probs = np.array([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    assert predictions(probs).tolist() == [0, 1, 0, 0]
    assert predictions(probs, ties="undecided").tolist() == [3, 3, 0, 3]
    result = compute_metrics(np.array([0, 1, 0, 2]), probs, list("abc"))
    assert result.confusion_matrix == ((2, 0, 0), (0, 1, 0), (1, 0, 0))
    assert result.argmax_ties == 3


def test_isic_challenge_balanced_accuracy_counts_tied_rows_undecided() -> None:
    """Two rows of class a are tied a/b: right for a under the lowest-index rule, wrong for the ISIC scorer.

    Lowest index: recall a 2/2, b 1/2 (the tied b row goes to a), c 1/1 -> 5/6. Undecided: a 0/2, b 1/2, c 1/1.
    """
    y = np.array([0, 0, 1, 1, 2])
    probs = np.array([[0.45, 0.45, 0.1], [0.45, 0.45, 0.1], [0.45, 0.45, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    values = compute_metrics(y, probs, list("abc")).values
    assert values["balanced_accuracy"] == pytest.approx(5 / 6)
    assert values["balanced_accuracy_isic"] == pytest.approx(1 / 2)
    untied = compute_metrics(y, probs + np.array([1e-3, -1e-3, 0]), list("abc")).values  # no tie: they agree
    assert untied["balanced_accuracy_isic"] == untied["balanced_accuracy"] == pytest.approx(5 / 6)


def test_the_table_declares_each_metric_once_and_consumers_read_it() -> None:
    assert len(set(METRIC_NAMES)) == len(METRICS)
    assert HEADLINE_METRICS == ("accuracy", "balanced_accuracy", "macro_f1", "auc")
    assert all(m.higher_is_better for m in METRICS)
    assert set(SELECTABLE_METRICS) == {m.name for m in METRICS if "binary" in m.tasks and "multiclass" in m.tasks}
    # A reproduction's published figures are named by the table's headline metrics, nothing else.
    from bench.runs.sweep import Published

    assert Published("d", "m", "s", {"auc": 0.9, "accuracy": 0.8}).values() == {"accuracy": 0.8, "auc": 0.9}
    with pytest.raises(ConfigError, match="figures.*'sensitivity'"):
        Published("d", "m", "s", {"sensitivity": 0.9})


@pytest.mark.parametrize("name", ["loss", *SELECTABLE_METRICS])
def test_protocols_select_on_any_metric_of_every_task(name: str) -> None:
    protocol = dataclasses.replace(get_protocol("scratch"), select_on=name)
    assert protocol.select_on == name


@pytest.mark.parametrize("name", ["sensitivity", "acuracy"])
def test_protocols_refuse_other_select_on(name: str) -> None:
    data = dataclasses.asdict(get_protocol("scratch")) | {"select_on": name}
    with pytest.raises(ConfigError, match=rf"p.toml: field 'select_on' is '{name}'; choose loss, accuracy"):
        from_mapping(Protocol, data, "p.toml")


def test_metric_lookup_rejects_unknown_and_misapplied_names() -> None:
    """A typo in a sweep file, or sensitivity asked of a 7-class task, must be a clear ConfigError."""
    with pytest.raises(ConfigError, match="unknown metric 'acuracy'; known: accuracy, balanced_accuracy"):
        get_metric("acuracy")
    with pytest.raises(ConfigError, match="sensitivity is defined for binary tasks only; this task has 7 classes"):
        bootstrap_ci(Y7, model(Y7, 7, 1.0, 1), "sensitivity", n_resamples=5)
