"""A finished run's training health: did it learn, did it converge, did its training loss explode.

Scores say how good a model is; these say whether the score is a fact about the backbone or about a training
failure, so tables can name a failure instead of ranking it. All three come from what a record stores beside its
scores, the validation split and the history, never the test split:

* **learned** (:func:`bench.evaluation.learned.check_learned`): the kept epoch's validation predictions are not
  one class for every image, and their balanced accuracy is above chance by a one-sided permutation test;
* **converged** (:func:`bench.train.history.check_convergence`): the kept epoch is not the last one with the
  selection metric still improving;
* **loss alarm** (:func:`bench.train.history.check_train_loss`): the training loss never became non-finite or
  exploded; ``stopped`` says why training ended before its budget when a non-finite loss stopped it.

The runner stores :class:`RunHealth` in each new record (``health``); a record written before it existed gets
the same verdict derived when read (:meth:`bench.runs.record.RunRecord.training_health`), so committed records are
judged without retraining and without rewriting their files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.evaluation.learned import LearnedStatus, check_learned
from bench.evaluation.values import MetricValues
from bench.train.history import ConvergedStatus, EpochLog, check_convergence, check_train_loss, selection_scores


@dataclass(frozen=True)
class RunHealth:
    """The verdicts on one finished run, each with the sentence a table quotes."""

    learned: LearnedStatus
    learned_reason: str
    converged: ConvergedStatus
    converged_reason: str
    loss_alarm: str | None = None  # the training loss exploded or became non-finite (named), else None
    stopped: str | None = None  # why training ended before its budget, other than early stopping
    learned_p: float | None = None  # the permutation test's p, where one ran

    @property
    def did_not_learn(self) -> bool:
        return self.learned == "did not learn"

    @property
    def not_converged(self) -> bool:
        return self.converged == "not converged"


def run_health(
    val: MetricValues, history: Sequence[EpochLog], select_on: str, kept_epoch: int, classes: Sequence[str],
    stopped: str | None = None,
) -> RunHealth:  # fmt: skip
    """The verdicts from a record's parts: the kept epoch's validation metrics ``val`` (its
    ``confusion_matrix``), the per-epoch ``history``, the selection metric and kept epoch, the class names."""
    learned = check_learned(val.confusion_matrix, classes)
    epochs = [h.epoch for h in history]
    converged = check_convergence(epochs, selection_scores(history, select_on), kept_epoch, select_on)
    losses = [float(h.train_loss) for h in history]
    alarm = check_train_loss(losses, len(classes)) if losses else None
    return RunHealth(
        learned.status, learned.reason, converged.status, converged.reason, alarm or stopped, stopped, learned.p_value
    )
