"""One model's scores on one set: :func:`compute_metrics` applies the metric table to its predictions, and
:class:`MetricValues` holds the result, typed, from the run that made it to the record that stores it.

The conventions (argmax ties, the positive class, absent classes, NaN) are the metric table's
(:mod:`bench.evaluation.metrics`); this module only applies them to one whole set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.errors import DataError
from bench.evaluation.metrics import (
    METRICS,
    Draws,
    class_f1,
    confusion_matrices,
    positive_index,
    predictions,
    tied_rows,
    validate_predictions,
)


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class MetricValues:
    """One model's scores on a test set: every metric of the table that applies, and what they rest on.

    A record stores one for the test split and one for validation (with ``loss``, the kept epoch's), and each
    epoch of its history one for validation. :meth:`to_dict` and :meth:`from_dict` are the stored form's one
    writer and reader: an undefined value is NaN here and null in JSON.
    """

    classes: tuple[str, ...]
    positive: str | None
    """The positive class of a binary task; None for a multiclass one (and in scores made before it was stored)."""
    values: dict[str, float]
    """Each applicable metric of :data:`METRICS`, by name, in table order."""
    per_class: dict[str, ClassScores]
    confusion_matrix: tuple[tuple[int, ...], ...]
    """K x K, rows = true class, columns = predicted class (argmax, ties to the lowest index)."""
    argmax_ties: int | None
    """Rows whose top probability is shared by two classes: where ``balanced_accuracy_isic`` may differ (None in
    scores made before they were counted)."""
    loss: float | None = None
    """The mean cross-entropy on the set, where the scores come with one (a record's validation scores)."""

    @property
    def absent_classes(self) -> list[str]:
        return [name for name, c in self.per_class.items() if c.support == 0]

    def score(self, metric: str) -> float:
        """One metric's value; NaN where undefined or not scored."""
        return self.values.get(metric, math.nan)

    def to_dict(self) -> dict:
        """The JSON form records store (the keys records had before this type, plus the new ones)."""
        out: dict = dict(self.values)
        out |= {
            "absent_classes": self.absent_classes,
            "per_class": {name: vars(c).copy() for name, c in self.per_class.items()},
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
        }
        optional = {"argmax_ties": self.argmax_ties, "positive": self.positive, "loss": self.loss}
        return out | {name: value for name, value in optional.items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict) -> MetricValues:
        """The scores :meth:`to_dict` wrote (the classes are the keys of ``per_class``, in order)."""
        per_class = {name: ClassScores(*(_number(c[k]) for k in _CLASS_SCORES), c["support"]) for name, c in
                     data["per_class"].items()}  # fmt: skip
        values = {name: _number(v) for name, v in data.items() if name not in _STRUCTURE}
        order = {m.name: i for i, m in enumerate(METRICS)}
        return cls(
            classes=tuple(per_class),
            positive=data.get("positive"),
            values=dict(sorted(values.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))),
            per_class=per_class,
            confusion_matrix=tuple(tuple(row) for row in data["confusion_matrix"]),
            argmax_ties=data.get("argmax_ties"),
            loss=None if data.get("loss") is None else float(data["loss"]),
        )


_CLASS_SCORES = ("precision", "recall", "f1")
_STRUCTURE = frozenset({"absent_classes", "per_class", "confusion_matrix", "argmax_ties", "positive", "loss"})


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def compute_metrics(
    y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], positive: str | None = None
) -> MetricValues:
    """Score one model's predictions with every metric of :data:`METRICS` that applies to the task.

    ``positive`` names the positive class of a binary task (default ``classes[1]``). See the module
    docstring for every convention; the values are those of :class:`Draws` on the whole set.
    """
    classes = tuple(classes)
    if len(set(classes)) != len(classes):
        raise DataError(f"class names must be distinct, got {list(classes)}")
    y, p = validate_predictions(y_true, probs, n_classes=len(classes))
    k = len(classes)
    pos = positive_index(classes, positive)
    whole = Draws.whole(y)
    applicable = [m for m in METRICS if m.applies_to(k)]
    values = dict(zip((m.name for m in applicable), map(float, whole.scores(applicable, p, pos)[:, 0]), strict=True))
    cm = confusion_matrices(y, predictions(p), k, k, whole.idx)[0]
    support, predicted, hits = cm.sum(axis=1), cm.sum(axis=0), np.diagonal(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = hits / predicted, hits / support
    f1 = class_f1(cm)
    scores = zip(precision.tolist(), recall.tolist(), f1.tolist(), support.tolist(), strict=True)
    per_class = {name: ClassScores(pr, rc, f, int(n)) for name, (pr, rc, f, n) in zip(classes, scores, strict=True)}
    cells = tuple(tuple(int(v) for v in row) for row in cm)
    positive_name = classes[pos] if k == 2 else None
    return MetricValues(classes, positive_name, values, per_class, cells, int(tied_rows(p).sum()))
