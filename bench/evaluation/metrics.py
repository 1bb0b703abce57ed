"""The metric table: every test metric declared once, with the one formula each is scored by.

Each :class:`Metric` of :data:`METRICS` names its formula, the tasks it applies to, whether leaderboards show
it (:data:`HEADLINE_METRICS`) and whether higher is better. A formula is vectorised over stacked confusion
matrices (or, for AUC, over draw counts of the images), so one function gives both the stored value
(:func:`bench.evaluation.values.compute_metrics`, the whole test set) and every bootstrap resample
(:mod:`bench.evaluation.bootstrap`).
Everything that names metrics -- records, leaderboards, the bootstrap, ``select_on``, the CLI -- reads this
table. scikit-learn is the oracle the tests hold every formula to.

Conventions
-----------
* ``y_true`` holds integer labels in ``range(K)``; ``probs`` is ``(N, K)`` with rows summing to 1 (within
  :data:`PROB_SUM_TOLERANCE`). Scores are used **exactly as given**, never renormalised, so that a standard
  tool on the saved file (:mod:`bench.evaluation.scores`) reproduces every stored number.
* **Argmax ties**: the prediction is ``probs.argmax(axis=1)``, the *lowest class index* among classes sharing
  the top probability (numpy's rule). The ISIC challenge scorer instead counts such a row as *undecided*
  (right for no class); ``balanced_accuracy_isic`` scores that way, so a HAM10000 number can be quoted as
  the challenge scores it. The two differ only when ``argmax_ties`` (stored with the metrics) is not 0.
* **Positive class** (binary tasks): the dataset entry's ``positive`` (default ``classes[1]``). Sensitivity
  is its recall, specificity the other class's, ``f1`` its F1 and ``auc`` the ROC AUC of its probability
  column against ``y_true == positive``. Records store its name as ``positive``.
* Per-class quantities cover **all K classes of the task**, so a class with no test image keeps its
  confusion-matrix row and ``per_class`` entry.

``balanced_accuracy`` is the ISIC challenges' definition (mean over the K categories of ``TP / positives``);
``balanced_accuracy_sklearn`` averages over the classes *present* only: equal if all occur.

Absent classes (the one rule)
-----------------------------
A class with no image in ``y_true`` has no recall and no ROC curve. Every score averaging a per-class
quantity over the K classes -- ``balanced_accuracy`` (and ``_isic``), ``macro_f1``, ``auc`` -- is then
**NaN**, never quietly an average over fewer classes, and ``absent_classes`` names the culprits. Binary
``auc`` is NaN when ``y_true`` holds one class; ``sensitivity``/``specificity`` when it has no
positive/negative image; ``f1`` when the positive class is neither present nor predicted. ``per_class``:
precision is NaN for a class never predicted, recall for a class absent, F1 only for a class neither present
nor predicted (scikit-learn's ``2TP / (2TP + FP + FN)`` otherwise). ``accuracy`` and
``balanced_accuracy_sklearn`` are always finite. Records write NaN as JSON null."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.errors import ConfigError, DataError

Ties = Literal["lowest", "undecided"]
ALL_TASKS: frozenset[str] = frozenset({"binary", "multiclass"})
BINARY: frozenset[str] = frozenset({"binary"})

CountsFormula = Callable[[np.ndarray, int], np.ndarray]
"""``(confusion matrices (..., K, C), positive index) -> (...)``: rows are true classes; ``C = K`` columns, or
``K + 1`` under the undecided tie rule (the last column holds the undecided rows, right for no class)."""
RankingFormula = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]
"""``(labels (N,), probs (N, K), draw counts (B, N), positive index) -> (B,)``."""

PROB_SUM_TOLERANCE = 1e-3
"""How far a row of ``probs`` may sum from 1: softmax outputs (float16 ones included), not logits."""


@dataclass(frozen=True)
class Metric:
    """One metric: its name in records, what it means, and the one formula every consumer scores it with."""

    name: str
    description: str
    """One line, no final full stop: ``bench leaderboard --help`` lists each sort metric with it."""
    tasks: frozenset[str]
    of_counts: CountsFormula | None = None
    of_ranking: RankingFormula | None = None
    ties: Ties = "lowest"
    headline: bool = False
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if (self.of_counts is None) == (self.of_ranking is None):
            raise ValueError(f"metric {self.name!r} needs exactly one formula")

    def applies_to(self, n_classes: int) -> bool:
        return ("binary" if n_classes == 2 else "multiclass") in self.tasks

    def check_applies(self, n_classes: int) -> None:
        if not self.applies_to(n_classes):
            only = " or ".join(sorted(self.tasks))
            raise ConfigError(f"{self.name} is defined for {only} tasks only; this task has {n_classes} classes")


def _recall(cm: np.ndarray) -> np.ndarray:
    """Per-class recall ``(..., K)``; NaN for a class with no image (undecided rows count as misses)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diagonal(cm, axis1=-2, axis2=-1) / cm.sum(axis=-1)


def class_f1(cm: np.ndarray) -> np.ndarray:
    """Per-class ``2TP / (2TP + FP + FN)`` ``(..., K)``; NaN for a class neither present nor predicted."""
    k = cm.shape[-2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * np.diagonal(cm, axis1=-2, axis2=-1) / (cm.sum(axis=-1) + cm.sum(axis=-2)[..., :k])


def _accuracy(cm: np.ndarray, positive: int) -> np.ndarray:
    return np.trace(cm, axis1=-2, axis2=-1) / cm.sum(axis=(-2, -1))


def _balanced_accuracy(cm: np.ndarray, positive: int) -> np.ndarray:
    return _recall(cm).mean(axis=-1)


def _balanced_accuracy_sklearn(cm: np.ndarray, positive: int) -> np.ndarray:
    return np.nanmean(_recall(cm), axis=-1)


def _macro_f1(cm: np.ndarray, positive: int) -> np.ndarray:
    return np.where(cm.sum(axis=-1) > 0, class_f1(cm), np.nan).mean(axis=-1)


def _f1(cm: np.ndarray, positive: int) -> np.ndarray:
    return class_f1(cm)[..., positive]


def _sensitivity(cm: np.ndarray, positive: int) -> np.ndarray:
    return _recall(cm)[..., positive]


def _specificity(cm: np.ndarray, positive: int) -> np.ndarray:
    return _recall(cm)[..., 1 - positive]


def weighted_binary_auc(counts: np.ndarray, score: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC AUC ``(B,)`` of resamples given as draw counts ``(B, N)``: P(a positive outscores a negative).

    The Mann-Whitney form with ties counting 1/2 is the trapezoidal area scikit-learn computes. Negatives
    are sorted by score once; per resample, a running sum of their counts gives, for every positive, the
    drawn negatives below its score and those equal to it. NaN without a positive or a negative image.
    """
    negatives = np.flatnonzero(~positive)
    negatives = negatives[np.argsort(score[negatives], kind="stable")]
    positives = np.flatnonzero(positive)
    below = np.searchsorted(score[negatives], score[positives], side="left")
    up_to = np.searchsorted(score[negatives], score[positives], side="right")
    cumulative = np.zeros((counts.shape[0], negatives.size + 1), dtype=np.int64)
    np.cumsum(counts[:, negatives], axis=1, out=cumulative[:, 1:])
    drawn = counts[:, positives]
    twice_wins = (drawn * (cumulative[:, below] + cumulative[:, up_to])).sum(axis=1)  # a tie counts 1 of 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return twice_wins / (2.0 * drawn.sum(axis=1) * cumulative[:, -1])


def _auc(y: np.ndarray, probs: np.ndarray, counts: np.ndarray, positive: int) -> np.ndarray:
    """Binary: the positive column against ``y == positive``; else the macro mean of the K one-vs-rest AUCs."""
    if probs.shape[1] == 2:
        return weighted_binary_auc(counts, probs[:, positive], y == positive)
    return np.mean([weighted_binary_auc(counts, probs[:, c], y == c) for c in range(probs.shape[1])], axis=0)


METRICS: tuple[Metric, ...] = (
    Metric("accuracy", "share of images whose argmax is the true class", ALL_TASKS, _accuracy, headline=True),
    Metric(
        "balanced_accuracy",
        "mean recall over all K classes (ISIC definition); NaN when a class is absent",
        ALL_TASKS,
        _balanced_accuracy,
        headline=True,
    ),
    Metric(
        "balanced_accuracy_sklearn",
        "mean recall over the classes present (sklearn.metrics.balanced_accuracy_score)",
        ALL_TASKS,
        _balanced_accuracy_sklearn,
    ),
    Metric(
        "balanced_accuracy_isic",
        "balanced_accuracy as the ISIC challenge scorer computes it: argmax-tied rows undecided, never right",
        ALL_TASKS,
        _balanced_accuracy,
        ties="undecided",
    ),
    Metric("macro_f1", "mean F1 over all K classes; NaN when a class is absent", ALL_TASKS, _macro_f1, headline=True),
    Metric(
        "auc",
        "ROC AUC: binary on the positive class's column, else macro one-vs-rest; NaN when a class is absent",
        ALL_TASKS,
        of_ranking=_auc,
        headline=True,
    ),
    Metric("f1", "F1 of the positive class", BINARY, _f1),
    Metric("sensitivity", "recall of the positive class", BINARY, _sensitivity),
    Metric("specificity", "recall of the negative class", BINARY, _specificity),
)
"""Every metric a record stores, in display order."""

METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)

HEADLINE_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.headline)
"""The metrics leaderboards show, in display order."""

SELECTABLE_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.tasks == ALL_TASKS)
"""The metrics a protocol may select its best epoch on (``select_on``): those defined for every task."""


def get_metric(name: str) -> Metric:
    """The table's entry for ``name``; an unknown name is a :class:`ConfigError` listing the known ones."""
    for metric in METRICS:
        if metric.name == name:
            return metric
    raise ConfigError(f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}")


def predictions(probs: np.ndarray, ties: Ties = "lowest") -> np.ndarray:
    """Predicted class per row: the argmax, ties to the lowest index; ``undecided`` gives tied rows label K."""
    pred = probs.argmax(axis=1)
    if ties == "undecided":
        pred = np.where(tied_rows(probs), probs.shape[1], pred)
    return pred


def tied_rows(probs: np.ndarray) -> np.ndarray:
    """Rows whose top probability is shared by two or more classes."""
    return (probs == probs.max(axis=1, keepdims=True)).sum(axis=1) > 1


def confusion_matrices(y: np.ndarray, pred: np.ndarray, k: int, columns: int, idx: np.ndarray) -> np.ndarray:
    """Confusion matrices ``(B, K, columns)`` (rows = true class) of the resamples ``idx`` ``(B, N)``, one bincount."""
    b = idx.shape[0]
    cells = (y * columns + pred)[idx] + (np.arange(b) * (k * columns))[:, None]
    return np.bincount(cells.ravel(), minlength=b * k * columns).reshape(b, k, columns)


class Draws:
    """A block of resamples ``idx`` ``(B, N)`` of one labelled test set (``arange(N)`` once: the set itself).

    What the formulas need is made once: the draw counts for every model, the confusion matrices once per
    model and tie rule, whatever the number of metrics.
    """

    def __init__(self, y: np.ndarray, idx: np.ndarray) -> None:
        self.y = y
        self.idx = idx
        self._counts: np.ndarray | None = None

    @classmethod
    def whole(cls, y: np.ndarray) -> Draws:
        return cls(y, np.arange(y.shape[0])[None, :])

    @property
    def counts(self) -> np.ndarray:
        """How often each of the N images is drawn in each resample, ``(B, N)``."""
        if self._counts is None:
            b, n = self.idx.shape[0], self.y.shape[0]
            flat = (self.idx + n * np.arange(b)[:, None]).ravel()
            self._counts = np.bincount(flat, minlength=b * n).reshape(b, n)
        return self._counts

    def scores(self, metrics: Sequence[Metric], probs: np.ndarray, positive: int = 1) -> np.ndarray:
        """Scores ``(len(metrics), B)`` of one model's validated ``probs``; ``positive`` matters for binary tasks."""
        k = probs.shape[1]
        matrices: dict[str, np.ndarray] = {}
        out = np.empty((len(metrics), self.idx.shape[0]))
        for j, metric in enumerate(metrics):
            metric.check_applies(k)
            if metric.of_ranking is not None:
                out[j] = metric.of_ranking(self.y, probs, self.counts, positive)
                continue
            if metric.ties not in matrices:
                columns = k + 1 if metric.ties == "undecided" else k
                pred = predictions(probs, metric.ties)
                matrices[metric.ties] = confusion_matrices(self.y, pred, k, columns, self.idx)
            assert metric.of_counts is not None
            out[j] = metric.of_counts(matrices[metric.ties], positive)
        return out


def validate_predictions(
    y_true: np.ndarray, probs: np.ndarray, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Check saved predictions and return ``(labels as int64, probs as float64)``, the values unchanged.

    Raises :class:`DataError` with a one-line message for anything that would otherwise produce a
    wrong number quietly: mismatched shapes, logits instead of probabilities, labels out of range.
    """
    probs = np.asarray(probs)
    y = np.asarray(y_true)
    if probs.ndim != 2:
        raise DataError(f"probs must be a 2-D (images, classes) array, got shape {probs.shape}")
    n, k = probs.shape
    if n_classes is not None and k != n_classes:
        raise DataError(f"probs has {k} columns but the task has {n_classes} classes")
    if k < 2:
        raise DataError(f"probs has {k} column(s); a classification task needs at least 2")
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"y_true has shape {y.shape} but probs has {n} rows; expected shape ({n},)")
    if n == 0:
        raise DataError("no images to score: y_true and probs are empty")
    if not np.issubdtype(probs.dtype, np.number) or not np.all(np.isfinite(probs)):
        raise DataError("probs contains NaN, infinite or non-numeric values")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.mod(y, 1) == 0):
            raise DataError(f"y_true must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    outside = (y < 0) | (y >= k)
    if outside.any():
        raise DataError(f"y_true holds label {y[outside][0]} outside range({k})")
    probs = probs.astype(np.float64)
    if probs.min() < 0:
        raise DataError(f"probs has negative entries (min {probs.min():.3g}); expected softmax outputs")
    sums = probs.sum(axis=1)
    bad = np.abs(sums - 1.0) > PROB_SUM_TOLERANCE
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"probs row {row} sums to {sums[row]:.4g}, not 1 (logits instead of softmax?)")
    return y, probs


def positive_index(classes: Sequence[str], positive: str | None) -> int:
    """Index of the positive class of a binary task (default ``classes[1]``); 1, unused, for a multiclass one."""
    if positive is None:
        return 1
    if len(classes) != 2:
        raise DataError(
            f"positive class {positive!r} given for a {len(classes)}-class task: only binary tasks have one"
        )
    if positive not in classes:
        raise DataError(f"positive class {positive!r} is not one of the classes {list(classes)}")
    return list(classes).index(positive)
