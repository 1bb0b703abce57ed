"""Synthetic predictions for the metric and statistics tests: rows with a chosen argmax, noisy models."""

from __future__ import annotations

import numpy as np


def probs_for(pred: np.ndarray, k: int, confidence: float = 0.7) -> np.ndarray:
    """Softmax-like rows whose argmax is ``pred``."""
    pred = np.asarray(pred)
    probs = np.full((pred.size, k), (1 - confidence) / (k - 1))
    probs[np.arange(pred.size), pred] = confidence
    return probs


def noisy_model(y: np.ndarray, k: int, strength: float, seed: int) -> np.ndarray:
    """Probabilities of a model whose logit for the true class is raised by ``strength``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(y.size, k))
    logits[np.arange(y.size), y] += strength
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def binary_right_with(y: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Binary probabilities whose prediction is right exactly where ``correct`` is True."""
    return probs_for(np.where(correct, y, 1 - y), 2)
