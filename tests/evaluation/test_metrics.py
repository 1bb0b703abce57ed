"""Tests for :mod:`bench.evaluation.metrics`: hand-checked values, scikit-learn agreement, the absent-class rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from predictions import probs_for
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from bench.errors import DataError
from bench.evaluation.metrics import HEADLINE_METRICS
from bench.evaluation.values import compute_metrics

NAN = float("nan")


def binary_probs(positive: list[float]) -> np.ndarray:
    """Binary rows from the positive-class column, so AUC can be checked by counting pairs."""
    p = np.asarray(positive)
    return np.stack([1 - p, p], axis=1)


def same(actual: float, expected: float) -> bool:
    """Equal to 1e-12, with NaN equal to NaN: NaN is a documented *value* here, not a failure."""
    if math.isnan(expected):
        return math.isnan(actual)
    return actual == pytest.approx(expected, abs=1e-12)


# (id, y_true, probs, classes, {key: hand-computed value}). Each value is derived in the comment.
HAND_CASES = [
    (
        # pred = [0,0,1,1,0]; cm = [[2,1],[1,1]]. sens = 1/2, spec = 2/3, bal = (1/2+2/3)/2 = 7/12.
        # F1: class 0 P=R=2/3, class 1 P=R=1/2 -> macro 7/12. AUC: positive 0.7 beats all 3 negatives,
        # 0.3 beats only 0.1 -> 4 of 6 pairs.
        "binary",
        [0, 0, 0, 1, 1],
        binary_probs([0.1, 0.4, 0.6, 0.7, 0.3]),
        ["benign", "malignant"],
        {
            "accuracy": 3 / 5,
            "balanced_accuracy": 7 / 12,
            "balanced_accuracy_sklearn": 7 / 12,
            "macro_f1": 7 / 12,
            "auc": 4 / 6,
            "sensitivity": 1 / 2,
            "specificity": 2 / 3,
        },
    ),
    (
        # pred = [0,1,1,1,2,0]; cm = [[1,1,0],[0,2,0],[1,0,1]]. recall 1/2, 1, 1/2 -> bal 2/3.
        # precision 1/2, 2/3, 1 -> F1 1/2, 4/5, 2/3 -> macro (1/2 + 4/5 + 2/3) / 3 = 59/90.
        "three_class",
        [0, 0, 1, 1, 2, 2],
        probs_for([0, 1, 1, 1, 2, 0], 3),
        ["a", "b", "c"],
        {
            "accuracy": 4 / 6,
            "balanced_accuracy": 2 / 3,
            "balanced_accuracy_sklearn": 2 / 3,
            "macro_f1": 59 / 90,
        },
    ),
    (
        # Class "c" absent but predicted once: pred = [0,1,1,2]; recall 1/2, 1/2, 0/0.
        # ISIC mean over 3 classes is undefined -> NaN; sklearn averages the 2 present -> 1/2.
        "absent_class_predicted",
        [0, 0, 1, 1],
        probs_for([0, 1, 1, 2], 3),
        ["a", "b", "c"],
        {
            "accuracy": 2 / 4,
            "balanced_accuracy": NAN,
            "balanced_accuracy_sklearn": 1 / 2,
            "macro_f1": NAN,
            "auc": NAN,
        },
    ),
    (
        "perfect",
        [0, 1, 2, 2, 1],
        probs_for([0, 1, 2, 2, 1], 3, confidence=0.9),
        ["a", "b", "c"],
        {"accuracy": 1.0, "balanced_accuracy": 1.0, "macro_f1": 1.0, "auc": 1.0},
    ),
    (
        # Every positive scored below every negative: all pairs mis-ordered, AUC 0, every count 0.
        "all_wrong_binary",
        [0, 0, 1, 1],
        binary_probs([0.8, 0.9, 0.2, 0.1]),
        ["neg", "pos"],
        {
            "accuracy": 0.0,
            "balanced_accuracy": 0.0,
            "macro_f1": 0.0,
            "auc": 0.0,
            "sensitivity": 0.0,
            "specificity": 0.0,
        },
    ),
    (
        # Only positives: AUC and specificity undefined (no negative), the ISIC mean too; sklearn's
        # balanced accuracy is the recall of the one class present, 2/3.
        "single_class_y_true",
        [1, 1, 1],
        binary_probs([0.9, 0.6, 0.2]),
        ["neg", "pos"],
        {
            "accuracy": 2 / 3,
            "balanced_accuracy": NAN,
            "balanced_accuracy_sklearn": 2 / 3,
            "macro_f1": NAN,
            "auc": NAN,
            "sensitivity": 2 / 3,
            "specificity": NAN,
        },
    ),
]


@pytest.mark.parametrize(("case_id", "y", "probs", "classes", "expected"), HAND_CASES, ids=[c[0] for c in HAND_CASES])
def test_hand_computed_values(
    case_id: str, y: list[int], probs: np.ndarray, classes: list[str], expected: dict
) -> None:
    """Small cases worked by hand pin the definitions, independently of any library."""
    result = compute_metrics(np.array(y), probs, classes).to_dict()
    for key, value in expected.items():
        assert same(result[key], value), f"{case_id}: {key} = {result[key]}, expected {value}"


def random_case(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A model better than chance on ``n`` images with every one of ``k`` classes present."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    probs = np.exp(logits)
    return y, probs / probs.sum(axis=1, keepdims=True)


SKLEARN_CASES = [(2, 60, 0), (3, 90, 1), (7, 300, 2)]


@pytest.mark.parametrize(("k", "n", "seed"), SKLEARN_CASES)
def test_agrees_with_sklearn_when_every_class_is_present(k: int, n: int, seed: int) -> None:
    """With all classes present the conventions must reduce to scikit-learn's standard calls."""
    y, probs = random_case(n, k, seed)
    pred = probs.argmax(axis=1)
    result = compute_metrics(y, probs, [f"c{i}" for i in range(k)]).to_dict()
    auc = roc_auc_score(y, probs[:, 1]) if k == 2 else roc_auc_score(y, probs, multi_class="ovr")
    assert result["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert result["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert result["balanced_accuracy_sklearn"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert result["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert result["auc"] == pytest.approx(auc)
    assert result["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    assert result["absent_classes"] == []
    assert 0.5 < result["auc"] < 1.0  # the case is non-trivial, so agreement means something


def test_absent_class_keeps_its_row_and_is_named() -> None:
    """An absent class must stay visible: its confusion-matrix row, its per-class entry, its name."""
    result = compute_metrics(np.array([0, 0, 1, 1]), probs_for([0, 1, 1, 2], 3), ["a", "b", "c"]).to_dict()
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert result["absent_classes"] == ["c"]
    c = result["per_class"]["c"]
    # Predicted once, never true: precision 0/1, recall 0/0, F1 = 2*0 / (0 + 1 + 0) = 0.
    assert (c["precision"], c["support"], c["f1"]) == (0.0, 0, 0.0)
    assert math.isnan(c["recall"])


def test_absent_class_never_predicted_has_undefined_f1() -> None:
    """A class neither true nor predicted has no precision, recall or F1; macro F1 must not drop it."""
    result = compute_metrics(np.array([0, 1, 1]), probs_for([0, 1, 0], 3), ["a", "b", "c"]).to_dict()
    c = result["per_class"]["c"]
    assert all(math.isnan(c[key]) for key in ("precision", "recall", "f1"))
    assert math.isnan(result["macro_f1"])
    # The present classes still score normally: a has P=1/2, R=1; b has P=1, R=1/2.
    assert result["per_class"]["a"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }
    assert result["per_class"]["b"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }


# (id, y_true, pred, K, ISIC value, sklearn value): where the two balanced accuracies agree or differ.
BALANCED_CASES = [
    # recall 1/2, 1, 2/3 -> both (1/2 + 1 + 2/3) / 3 = 13/18.
    ("all_present", [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3, 13 / 18, 13 / 18),
    # recall 1, 1/2, 0/0 -> ISIC undefined; sklearn (1 + 1/2) / 2.
    ("absent_class_predicted", [0, 0, 1, 1], [0, 0, 2, 1], 3, NAN, 3 / 4),
    # recall 1/2, 1, 0/0 -> ISIC undefined; sklearn (1/2 + 1) / 2.
    ("absent_class_not_predicted", [0, 0, 1, 1], [0, 1, 1, 1], 3, NAN, 3 / 4),
]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize(
    ("case_id", "y", "pred", "k", "isic", "sklearn_value"), BALANCED_CASES, ids=[c[0] for c in BALANCED_CASES]
)
def test_balanced_accuracy_variants(
    case_id: str, y: list[int], pred: list[int], k: int, isic: float, sklearn_value: float
) -> None:
    """The two definitions agree when every class is present and part ways (NaN vs finite) otherwise."""
    result = compute_metrics(np.array(y), probs_for(pred, k), [str(i) for i in range(k)]).to_dict()
    assert same(result["balanced_accuracy"], isic)
    assert same(result["balanced_accuracy_sklearn"], sklearn_value)
    assert same(balanced_accuracy_score(y, pred), sklearn_value)


def test_confusion_matrix_rows_are_true_classes() -> None:
    """Three true negatives all called positive must land in row 0, column 1 (a transpose would not)."""
    result = compute_metrics(np.array([0, 0, 0, 1]), probs_for([1, 1, 1, 1], 2), ["neg", "pos"]).to_dict()
    assert result["confusion_matrix"] == [[0, 3], [0, 1]]
    assert (result["sensitivity"], result["specificity"]) == (1.0, 0.0)


def test_sensitivity_specificity_by_hand() -> None:
    """TP=3, FN=1, TN=4, FP=2: sensitivity 3/4, specificity 4/6, on column 1 as the positive class."""
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    pred = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    result = compute_metrics(np.array(y), probs_for(pred, 2), ["benign", "malignant"]).to_dict()
    assert result["sensitivity"] == pytest.approx(3 / 4)
    assert result["specificity"] == pytest.approx(4 / 6)
    assert result["confusion_matrix"] == [[4, 2], [1, 3]]


def test_binary_only_keys_and_json_round_trip() -> None:
    """Records are written as JSON, so the dict must serialise; sensitivity only makes sense for K=2."""
    y, probs = random_case(40, 3, seed=5)
    result = compute_metrics(y, probs, ["a", "b", "c"]).to_dict()
    assert "sensitivity" not in result and "specificity" not in result
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert set(HEADLINE_METRICS) <= set(result)
    assert HEADLINE_METRICS == ("accuracy", "balanced_accuracy", "macro_f1", "auc")


def test_scores_are_used_as_given_never_renormalised() -> None:
    """Rows within the tolerance are accepted and scored exactly as given, so sklearn on the saved file agrees.

    Both positives score 0.6 and the negative 0.6 too: a tie, AUC 1/2 on the column as saved. Renormalising
    (0.6 / (0.6 + p0)) would break the tie with p0 and give 0 or 1.
    """
    y = np.array([0, 1, 1])
    probs = np.array([[0.4, 0.6], [0.3999, 0.6], [0.4001, 0.6]])
    assert compute_metrics(y, probs, ["neg", "pos"]).values["auc"] == 0.5 == roc_auc_score(y, probs[:, 1])


GOOD_PROBS = probs_for([0, 1, 2], 3)

# (id, y_true, probs, classes, fragment of the one-line message)
INVALID_CASES = [
    ("fewer_labels_than_rows", [0, 1], GOOD_PROBS, "abc", "y_true has shape (2,) but probs has 3 rows"),
    ("probs_not_2d", [0, 1, 2], np.array([0.2, 0.3, 0.5]), "abc", "2-D"),
    ("columns_vs_classes", [0, 1, 2], GOOD_PROBS, "ab", "probs has 3 columns but the task has 2 classes"),
    ("logits", [0, 1, 2], np.log(GOOD_PROBS), "abc", "negative"),
    ("rows_not_summing_to_one", [0, 1, 2], GOOD_PROBS * 1.1, "abc", "probs row 0 sums to 1.1"),
    ("label_too_large", [0, 1, 3], GOOD_PROBS, "abc", "label 3 outside range(3)"),
    ("negative_label", [0, -1, 2], GOOD_PROBS, "abc", "label -1 outside range(3)"),
    ("fractional_label", [0, 1.5, 2], GOOD_PROBS, "abc", "integer class indices"),
    ("nan_probs", [0, 1, 2], np.where(GOOD_PROBS > 0.5, np.nan, GOOD_PROBS), "abc", "NaN"),
    ("empty", np.zeros(0, dtype=int), np.zeros((0, 3)), "abc", "no images"),
    ("duplicate_class_names", [0, 1, 2], GOOD_PROBS, "aba", "distinct"),
]


@pytest.mark.parametrize(
    ("case_id", "y", "probs", "classes", "fragment"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_inputs_raise_one_line_data_error(
    case_id: str, y: list, probs: np.ndarray, classes: str, fragment: str
) -> None:
    """A wrong input must stop with a message naming the problem, not produce a plausible number."""
    with pytest.raises(DataError) as excinfo:
        compute_metrics(np.asarray(y), probs, list(classes))
    assert fragment in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_integer_valued_float_labels_are_accepted() -> None:
    """Labels read back from CSV arrive as floats; integer-valued ones are legitimate."""
    result = compute_metrics(np.array([0.0, 1.0, 2.0]), GOOD_PROBS, list("abc")).to_dict()
    assert result["accuracy"] == 1.0
