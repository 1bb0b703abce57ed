"""Training health from a history: a budget that ran out before convergence, and a training loss that exploded."""

from __future__ import annotations

import math

import pytest

from bench.train.history import check_convergence, check_train_loss

# epochs' selection scores, the kept epoch, select_on, expected status, a phrase of the reason
CONVERGENCE = [
    pytest.param([0.9, 0.8, 0.7], 3, "loss", "not converged", "kept its last epoch (3 of 3) with validation loss "
                 "still improving (0.8 → 0.7)", id="loss still falling at the end"),
    pytest.param([0.9, 0.7, 0.8], 2, "loss", "converged", "kept epoch 2 of 3: validation loss peaked before the end",
                 id="best before the end"),
    pytest.param([0.9, 0.7, 0.6999], 3, "loss", "converged", "within 0.1% of the best before",
                 id="last kept, but flat within the tolerance"),
    pytest.param([0.6, 0.7, 0.75], 3, "balanced_accuracy", "not converged",
                 "validation balanced_accuracy still improving (0.7 → 0.75)", id="a metric still rising"),
    pytest.param([0.6, 0.8, 0.75], 2, "auc", "converged", "kept epoch 2 of 3", id="a metric that peaked"),
    pytest.param([0.6, 0.8, 0.8], 3, "auc", "converged", "within 0.1%", id="a tie at the top is no improvement"),
    pytest.param([0.5], 1, "loss", "not assessed", "one epoch trained", id="one epoch: nothing to compare"),
    pytest.param([math.nan, 0.5], 2, "auc", "not assessed", "no earlier validation auc", id="no earlier value"),
]  # fmt: skip


@pytest.mark.parametrize("scores, kept, select_on, status, phrase", CONVERGENCE)
def test_convergence(scores, kept, select_on, status, phrase):
    check = check_convergence(list(range(1, len(scores) + 1)), scores, kept, select_on)
    assert check.status == status
    assert phrase in check.reason


# mean training loss per epoch, classes, the alarm (None: none)
LOSSES = [
    pytest.param([0.69, 0.6, 0.5], 2, None, id="a normal start near ln 2"),
    pytest.param([15.6, 0.7, 0.69], 2, "training loss exploded: 15.6 in epoch 1, 22.5x ln 2", id="VGG-16 on ISIC"),
    pytest.param([2.0, 1.9], 2, None, id="below 3x ln 2 (2.08)"),
    pytest.param([1.0, 0.8, 3.5], 2, "training loss exploded: 3.5 in epoch 3, 3.5x epoch 1's 1", id="later blow-up"),
    pytest.param([0.5, 1.9, 0.4], 2, None, id="later, judged against ln 2 when epoch 1 was below it"),
    pytest.param([0.7, math.nan], 2, "training loss became nan in epoch 2", id="non-finite"),
    pytest.param([5.0, 4.0], 7, None, id="seven classes: ln 7 = 1.95, 3x = 5.84"),
    pytest.param([], 2, None, id="no epoch"),
]


@pytest.mark.parametrize("losses, k, alarm", LOSSES)
def test_train_loss_alarm(losses, k, alarm):
    assert check_train_loss(losses, k) == alarm
