"""Epoch orders: a shuffle visits every image once; balanced draws each class equally often, seeded."""

from __future__ import annotations

import torch

from bench.train.sampling import epoch_order

LABELS = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)


def test_shuffle_is_a_permutation():
    order = epoch_order(LABELS, "shuffle", torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(len(LABELS)))


def test_balanced_draws_every_class_about_equally_often():
    order = epoch_order(LABELS, "balanced", torch.Generator().manual_seed(0))
    counts = torch.bincount(LABELS[order], minlength=3)
    assert len(order) == len(LABELS)
    assert counts.tolist() != [900, 90, 10]
    assert all(abs(c - 1000 / 3) < 60 for c in counts.tolist()), counts  # binomial sd ~15
    assert len(set(order[LABELS[order] == 2].tolist())) <= 10  # the rare class is drawn with replacement


def test_balanced_is_deterministic_under_the_seed():
    a, b, c = (epoch_order(LABELS, "balanced", torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
