"""Did a run learn at all? A test on its validation predictions, so a training failure is named, never ranked.

A model that outputs the class prior (every image called the majority class) or whose validation score is no
better than a label shuffle gives has not learned to decide, whatever its test number. Such a run is told
from the **validation** split alone (never test, which stays the one look after selection), from the kept
epoch's validation confusion matrix, which every record stores: the (true, predicted) pairs are recoverable
from it, so committed records are checked without their models.

The rule (:func:`check_learned`):

* **one class predicted for every validation image**: did not learn (balanced accuracy is then exactly chance,
  ``1/K``, whatever the labels);
* otherwise a **one-sided permutation test** of validation balanced accuracy: the true labels are shuffled
  against the fixed predictions :data:`PERMUTATIONS` times (seeded, so a record's verdict never changes), and
  ``p = (1 + #{shuffled >= observed}) / (1 + PERMUTATIONS)``. ``p >= ALPHA`` (0.05): the validation score is not
  above chance by a margin the validation set's size can distinguish, so the run did not learn. A small
  validation set therefore needs a clearer margin: a perfect score on 4 images has p = 1/6.

Balanced accuracy here averages recall over the classes present in validation (a class with no validation
image has no recall); shuffling keeps every class's count, so chance is ``1/K_present`` under every shuffle.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

PERMUTATIONS = 2000
PERMUTATION_SEED = 0  # fixed: a record's verdict is the same on every machine and every read
ALPHA = 0.05
_CHUNK = 250  # permutations per block, to bound memory on a large validation split

LearnedStatus = Literal["learned", "did not learn", "not assessed"]


@dataclass(frozen=True)
class LearnedCheck:
    """The verdict on one run's validation predictions; ``reason`` says it in a sentence a table can quote."""

    status: LearnedStatus
    reason: str
    balanced_accuracy: float | None = None  # over the classes present in validation
    p_value: float | None = None  # of the permutation test; None where none was run
    n: int = 0  # validation images

    @property
    def did_not_learn(self) -> bool:
        return self.status == "did not learn"


def check_learned(
    confusion_matrix: Sequence[Sequence[int]] | None,
    classes: Sequence[str],
    permutations: int = PERMUTATIONS,
    seed: int = PERMUTATION_SEED,
    alpha: float = ALPHA,
) -> LearnedCheck:
    """Whether the predictions behind a validation ``confusion_matrix`` (K x K, rows true, columns predicted)
    show learning: see the module docstring for the rule. ``classes`` name the rows, for the reason."""
    cm = _matrix(confusion_matrix, len(classes))
    if cm is None:
        return LearnedCheck("not assessed", "no validation confusion matrix in the record")
    n = int(cm.sum())
    present = cm.sum(axis=1) > 0
    if present.sum() < 2:
        return LearnedCheck("not assessed", f"validation holds fewer than two classes ({n} images)", n=n)
    observed = balanced_accuracy_present(cm)
    predicted = np.flatnonzero(cm.sum(axis=0))
    if predicted.size == 1:
        only = classes[int(predicted[0])]
        reason = f"predicts one class ({only}) for all {n} validation images"
        return LearnedCheck("did not learn", reason, observed, 1.0, n)
    p = permutation_p_value(tuple(map(tuple, cm.tolist())), permutations, seed)
    chance = f"chance {1 / int(present.sum()):.3f} (one-sided permutation test, p = {p:.2g}, n = {n})"
    if p >= alpha:
        reason = f"validation balanced accuracy {observed:.3f} not above {chance}"
        return LearnedCheck("did not learn", reason, observed, p, n)
    return LearnedCheck("learned", f"validation balanced accuracy {observed:.3f} above {chance}", observed, p, n)


@functools.lru_cache(maxsize=4096)
def permutation_p_value(cm: tuple[tuple[int, ...], ...], permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """One-sided p of the balanced accuracy of ``cm`` against ``permutations`` shuffles of its true labels.

    Cached: a leaderboard asks for every record's verdict, and the answer for one matrix never changes.
    """
    matrix = np.asarray(cm, dtype=np.int64)
    k = matrix.shape[0]
    support = matrix.sum(axis=1)
    present = support > 0
    # The (true, predicted) pairs ordered by predicted class, so that a shuffle's hits on class c are a sum over
    # one slice of columns: shuffling the true labels against fixed predictions is the permutation.
    predicted = np.repeat(np.arange(k), matrix.sum(axis=0))
    truth = np.concatenate([np.repeat(np.arange(k), matrix[:, c]) for c in range(k)])
    observed = balanced_accuracy_present(matrix)
    starts = np.flatnonzero(np.r_[True, predicted[1:] != predicted[:-1]])
    columns = predicted[starts]
    weight = np.where(present, 1 / np.maximum(support, 1), 0.0)[columns] / present.sum()
    rng = np.random.default_rng(seed)
    at_least = 0
    for start in range(0, permutations, _CHUNK):
        block = min(_CHUNK, permutations - start)
        shuffled = rng.permuted(np.broadcast_to(truth, (block, truth.size)), axis=1)
        hits = np.add.reduceat(shuffled == predicted, starts, axis=1)
        at_least += int((hits @ weight >= observed - 1e-12).sum())
    return (1 + at_least) / (1 + permutations)


def balanced_accuracy_present(cm: np.ndarray) -> float:
    """Mean recall over the classes present in a K x K confusion matrix (rows true)."""
    support = cm.sum(axis=1)
    present = support > 0
    return float((np.diagonal(cm)[present] / support[present]).mean())


def _matrix(confusion_matrix: Sequence[Sequence[int]] | None, k: int) -> np.ndarray | None:
    """The matrix as a K x K array of counts, or None where it is missing or not one."""
    if not confusion_matrix:
        return None
    try:
        cm = np.asarray(confusion_matrix, dtype=np.int64)
    except (TypeError, ValueError):
        return None
    if cm.shape != (k, k) or (cm < 0).any() or cm.sum() == 0:
        return None
    return cm
