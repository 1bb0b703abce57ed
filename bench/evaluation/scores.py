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
* ``ids`` and ``labels``: the test images, in order;
* ``val_ids``, ``val_labels``, ``val_logits``, ``val_probs``: the same four for the validation split, from the
  model as tested (the one selected on validation), so that a calibration fitted on validation (temperature
  scaling, :mod:`bench.evaluation.calibration`) never needs the test split. Files written before these were
  saved have none (``val = None``); no test metric reads them.

Files written before logits were saved hold ``ids``, ``labels`` and ``probs`` (float32 softmax values) only;
:meth:`TestScores.load` reads them with ``logits = None``, and their metrics are those of the saved ``probs``
as they are (``python -m bench.evaluation.rescore`` brings a record in line with its file).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.special import softmax

from bench.errors import ResultsError
from bench.files import atomic_write_bytes, load_npz_arrays

VAL_PREFIX = "val_"
"""The validation split's keys in the file: ``val_ids``, ``val_labels``, ``val_probs``, ``val_logits``."""


@dataclass(frozen=True, eq=False)
class TestScores:
    """One run's test predictions: ``ids`` (N,), ``labels`` int64 (N,), ``probs`` float64 (N, K), ``logits``."""

    __test__ = False  # not a pytest test class, despite the name

    ids: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    logits: np.ndarray | None = None
    """float32 (N, K); None for a file written before logits were saved."""
    val: TestScores | None = None
    """The validation split's scores from the same model (keys ``val_*``); None for a file written before them."""

    @classmethod
    def from_logits(
        cls, ids: list[str] | np.ndarray, labels: np.ndarray, logits: np.ndarray, val: TestScores | None = None
    ) -> TestScores:
        """Scores of float32 ``logits``: their softmax in float64 (rows sum to 1 within 1e-15, no saturation)."""
        logits = np.asarray(logits, dtype=np.float32)
        return cls(np.asarray(ids), np.asarray(labels, dtype=np.int64), softmax64(logits), logits, val)

    def save(self, path: Path) -> None:
        """Write the npz atomically (a killed process never leaves a half-written file)."""
        arrays = self._arrays()
        if self.val is not None:
            arrays |= {f"{VAL_PREFIX}{k}": v for k, v in self.val._arrays().items()}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> TestScores:
        """Read a saved file, today's or one without logits; a missing, damaged (empty, truncated, corrupt) or
        malformed one is a one-line :class:`ResultsError` naming it, which readers of many runs turn into a warning."""
        arrays = load_npz_arrays(path, "test scores file, damaged")
        val = {k.removeprefix(VAL_PREFIX): v for k, v in arrays.items() if k.startswith(VAL_PREFIX)}
        test = cls._checked(path, {k: v for k, v in arrays.items() if not k.startswith(VAL_PREFIX)}, "")
        return replace(test, val=cls._checked(path, val, VAL_PREFIX) if val else None)

    @classmethod
    def _checked(cls, path: Path, arrays: dict[str, np.ndarray], prefix: str) -> TestScores:
        """One split's arrays (keys without ``prefix``), checked for agreement; a :class:`ResultsError` if not."""
        missing = [prefix + k for k in ("ids", "labels", "probs") if k not in arrays]
        if missing:
            raise ResultsError(f"{path}: test scores file has no {', '.join(missing)}")
        probs, logits = arrays["probs"], arrays.get("logits")
        n = arrays["labels"].shape[0]
        if probs.ndim != 2 or probs.shape[0] != n or arrays["ids"].shape != (n,):
            raise ResultsError(
                f"{path}: {prefix}probs {probs.shape}, {prefix}labels {arrays['labels'].shape} and {prefix}ids disagree"
            )
        if logits is not None and logits.shape != probs.shape:
            raise ResultsError(f"{path}: {prefix}logits {logits.shape} and {prefix}probs {probs.shape} differ in shape")
        return cls(arrays["ids"], arrays["labels"].astype(np.int64), probs.astype(np.float64), logits)

    def _arrays(self) -> dict[str, np.ndarray]:
        """The split's own arrays by key (its ``val``, if any, apart)."""
        arrays = {"ids": self.ids, "labels": self.labels, "probs": self.probs}
        return arrays if self.logits is None else arrays | {"logits": self.logits}


def softmax64(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float64, whatever the logits' dtype."""
    return softmax(np.asarray(logits, dtype=np.float64), axis=-1)
