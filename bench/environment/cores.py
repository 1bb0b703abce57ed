"""How many CPU cores this process may use: what decode threads and CPU worker processes are sized by.

``os.sched_getaffinity`` is the honest figure where it exists (a container or ``taskset`` may allow fewer
cores than the machine has); ``os.cpu_count`` elsewhere.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (at least 1)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
