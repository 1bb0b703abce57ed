"""Halving a batch until it fits: the one out-of-memory back-off that prediction and latency timing share.

A batch that does not fit in memory is not an error of the model or the data: the same work fits in smaller
batches (timm's ``benchmark.py`` and ``validate.py`` share one such helper for the same reason). The caller
says what one attempt is and what frees the failed attempt's memory; the failed batch sizes are recorded
where the caller wants them (a latency record says which sizes did not fit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def halving(
    batch: int,
    attempt: Callable[[int], T],
    oom: tuple[type[BaseException], ...],
    release: Callable[[], None] = lambda: None,
    failed: list[int] | None = None,
) -> tuple[T, int]:
    """``attempt(batch)``, then on an ``oom`` error at half the batch, and so on down to 1; the result and the
    batch that fitted. ``release`` runs after every failed attempt, outside the ``except`` block, so the failed
    attempt's frames and the tensors they hold are gone by then; when batch 1 fails too, a fresh ``oom[0]`` is
    raised after the release (the original would keep those frames alive)."""
    tried: list[int] = [] if failed is None else failed
    while True:
        try:
            return attempt(batch), batch
        except oom:
            tried.append(batch)
        release()
        if batch == 1:
            raise oom[0](f"out of memory at every batch size down to 1 (tried {tried})")
        batch //= 2
