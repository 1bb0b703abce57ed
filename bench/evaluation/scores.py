"""The saved test scores of a run (``<record>.probs.npz``): what every stored test metric is computed from.

A record's test metrics must be reproducible by anyone from this file alone, with a standard tool and no
transformation, so the file holds exactly what was scored:

* ``logits``: float32 ``(N, K)``, the model's outputs as the engine produced them (bf16 or fp16 autocast
  outputs are cast to float32 first);
* ``probs``: float64 ``(N, K)``, ``softmax(logits)`` computed in float64. A float32 softmax saturates to
  exactly 1.0 for confident images (up to 272 of 624 PneumoniaMNIST test images in the bf16 GPU runs), which
  ties them and makes the ROC curve depend on how the ties are broken; float64 keeps them apart, and the
  metrics are computed on these very numbers, so ``roc_auc_score(labels == p, probs[:, p])`` on the file is
  the stored binary AUC to the last bit's worth (1e-12);
* ``ids`` and ``labels``: the test images, in order.

Files written before logits were saved hold ``ids``, ``labels`` and ``probs`` (float32 softmax values) only;
:meth:`TestScores.load` reads them with ``logits = None``, and their metrics are those of the saved ``probs``
as they are (``python -m bench.evaluation.rescore`` brings a record in line with its file).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax

from bench.errors import ResultsError
from bench.files import atomic_write_bytes


@dataclass(frozen=True, eq=False)
class TestScores:
    """One run's test predictions: ``ids`` (N,), ``labels`` int64 (N,), ``probs`` float64 (N, K), ``logits``."""

    __test__ = False  # not a pytest test class, despite the name

    ids: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    logits: np.ndarray | None = None
    """float32 (N, K); None for a file written before logits were saved."""

    @classmethod
    def from_logits(cls, ids: list[str] | np.ndarray, labels: np.ndarray, logits: np.ndarray) -> TestScores:
        """Scores of float32 ``logits``: their softmax in float64 (rows sum to 1 within 1e-15, no saturation)."""
        logits = np.asarray(logits, dtype=np.float32)
        return cls(np.asarray(ids), np.asarray(labels, dtype=np.int64), softmax64(logits), logits)

    def save(self, path: Path) -> None:
        """Write the npz atomically (a killed process never leaves a half-written file)."""
        arrays = {"ids": self.ids, "labels": self.labels, "probs": self.probs}
        if self.logits is not None:
            arrays["logits"] = self.logits
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> TestScores:
        """Read a saved file, today's or one without logits; a missing or malformed one is a :class:`ResultsError`."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as err:
            raise ResultsError(f"{path}: unreadable test scores file ({err})") from None
        missing = [k for k in ("ids", "labels", "probs") if k not in arrays]
        if missing:
            raise ResultsError(f"{path}: test scores file has no {', '.join(missing)}")
        probs, logits = arrays["probs"], arrays.get("logits")
        n = arrays["labels"].shape[0]
        if probs.ndim != 2 or probs.shape[0] != n or arrays["ids"].shape != (n,):
            raise ResultsError(f"{path}: probs {probs.shape}, labels {arrays['labels'].shape} and ids disagree")
        if logits is not None and logits.shape != probs.shape:
            raise ResultsError(f"{path}: logits {logits.shape} and probs {probs.shape} differ in shape")
        return cls(arrays["ids"], arrays["labels"].astype(np.int64), probs.astype(np.float64), logits)


def softmax64(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float64, whatever the logits' dtype."""
    return softmax(np.asarray(logits, dtype=np.float64), axis=-1)
