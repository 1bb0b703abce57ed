"""A figure's mean and spread over a row's seeds: one definition for every seed-aggregated cell.

The sample std (ddof=1) is the spread over training seeds; with one seed there is none (NaN), and with no
figure at all there is no mean either. A NaN among the figures makes the mean NaN: a caller that means to
leave missing seeds out filters them first, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std) of ``values``; (NaN, NaN) for none, std NaN for one."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def format_mean_std(mean: float, std: float) -> str:
    """ "0.850 ± 0.010"; the mean alone when there is no std (one seed); "n/a" without a mean."""
    if pd.isna(mean):
        return "n/a"
    return f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"
