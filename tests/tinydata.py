"""The tiny two-class image set the CLI tests train on, as arrays: one recipe for every copy a test makes."""

from __future__ import annotations

import numpy as np


def tiny_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """28x28 grayscale, two classes told apart by brightness, in the MedMNIST key layout (96/32/48 images)."""
    arrays = {}
    for split, n in (("train", 96), ("val", 32), ("test", 48)):
        labels = rng.integers(0, 2, size=(n, 1))
        images = np.where(labels[:, :, None] == 1, 170, 80) + rng.normal(0, 40, size=(n, 28, 28))
        arrays[f"{split}_images"] = images.clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    return arrays
