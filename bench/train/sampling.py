"""The order in which an epoch visits the training images: a shuffle, or class-balanced draws.

``balanced`` is for skewed data (HAM10000 is two-thirds naevi): each epoch draws as many images as the
split holds, with replacement, each with probability 1 / (classes present x its class's count), so every
class is drawn equally often in expectation. Class-weighting the loss (``class_weighted_loss``) reweights
instead of resampling (:func:`class_weights`); the two can be combined, though they then correct the imbalance
twice.
"""

from __future__ import annotations

import torch


def epoch_order(labels: torch.Tensor, sampler: str, gen: torch.Generator) -> torch.Tensor:
    """Indices into the split for one epoch (host tensor), drawn from ``gen`` (the run's checkpointed stream)."""
    n = len(labels)
    if sampler == "shuffle":
        return torch.randperm(n, generator=gen)
    host = labels.cpu()
    counts = torch.bincount(host).double()
    weights = 1.0 / counts[host]
    return torch.multinomial(weights, n, replacement=True, generator=gen)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency loss weights (sklearn's "balanced"): n / (k * count_c); absent classes get 0."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    return torch.where(counts > 0, labels.numel() / (num_classes * counts.clamp(min=1)), 0.0)
