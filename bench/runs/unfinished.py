"""A run its environment stopped: reported, never recorded, so the next sweep runs it again.

Only a failure of the run itself (a diverged loss, bad data, a bad config) is its result, written as a
``failed`` record that later sweeps skip until ``--retry-failed``. A full disk, a folder that cannot be
written, memory running out or a lost worker say nothing about the run: recording them would make a
passing problem stick, so the runner raises :class:`RunUnfinished` instead and the executor reports the
run as ``unfinished`` without writing anything.
"""

from __future__ import annotations

import torch

from bench.errors import ResultsError

ENVIRONMENT_FAILURES = (ResultsError, OSError, MemoryError, torch.OutOfMemoryError)
"""Raised by the machine a run is on, not by the run: the results folder or a file (ResultsError, OSError), memory."""


class RunUnfinished(Exception):
    """A run stopped by its environment; ``str(err)`` is the one-line reason."""


def reason(err: BaseException) -> str:
    """``err`` as the one line a record or a report shows: its type and the first line of its message."""
    if isinstance(err, RunUnfinished):  # already a reason, the environment's error named in it
        return str(err)
    return f"{type(err).__name__}: {str(err) or 'no message'}".splitlines()[0]
