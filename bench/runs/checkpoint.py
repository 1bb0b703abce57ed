"""Per-run checkpoints at epoch boundaries, so a killed sweep loses at most one epoch of one run.

A checkpoint is a plain dict of tensors and numbers written atomically with ``torch.save`` and read
back with ``torch.load(weights_only=True)``: no pickled code is ever executed. It carries the run key,
so a checkpoint left by a different config is refused instead of silently resumed.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from bench.errors import ResultsError
from bench.files import atomic_write_bytes


class RunCheckpoint:
    """The checkpoint file of one run (``<record stem>.ckpt`` beside its record)."""

    def __init__(self, path: Path, key: str):
        self.path = path
        self.key = key
        self.resumed_at_epoch: int | None = None  # set when load() found a state to resume

    def load(self) -> dict | None:
        """The saved training state, or None when there is none to resume."""
        if not self.path.exists():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file: say which, never guess
            raise ResultsError(
                f"{self.path}: unreadable checkpoint ({type(err).__name__}); delete it to restart"
            ) from None
        if payload.get("key") != self.key:
            raise ResultsError(
                f"{self.path}: checkpoint is from a different config (key {str(payload.get('key'))[:12]}, "
                f"expected {self.key[:12]}); delete it to restart the run"
            )
        self.resumed_at_epoch = int(payload["fit"]["state"]["epoch_no"])
        return payload["fit"]

    def save(self, fit_state: dict) -> None:
        buf = io.BytesIO()
        torch.save({"key": self.key, "fit": fit_state}, buf)
        atomic_write_bytes(self.path, buf.getvalue())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
