"""The 95% confidence interval of the median of repeated timings, whatever their distribution.

Latencies and step times are skewed and have outliers (a shared CPU, a GPU clock change), so a normal-theory
interval would mislead. A latency figure's p50 (:mod:`bench.latency.timing`) and a training profile's median
ratio (:mod:`bench.train.profile`, its engine and peer comparisons) carry this one interval. numpy only: latency
records are re-rendered without importing torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_Z95 = 1.959964


def median_ci95(times_ms: Sequence[float]) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median, from order statistics.

    Ranks n/2 -+ 1.96 sqrt(n)/2, rounded outwards, hold for any continuous distribution.
    """
    ordered = np.sort(np.asarray(times_ms, dtype=float))
    n = len(ordered)
    spread = _Z95 * math.sqrt(n) / 2
    low = max(1, math.floor(n / 2 - spread))
    high = min(n, math.ceil(1 + n / 2 + spread))
    return float(ordered[low - 1]), float(ordered[high - 1])
