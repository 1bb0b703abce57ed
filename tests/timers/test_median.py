"""The median's distribution-free 95% interval: its ranks on known samples, and its indifference to order and to
rare outliers (why latency and the training profile use it)."""

from __future__ import annotations

import pytest

from bench.timers.median import median_ci95

# n, expected 1-based ranks of the median's 95% interval (n/2 -+ 1.96 sqrt(n)/2, rounded outwards)
CI_CASES = [(1, (1, 1)), (5, (1, 5)), (20, (5, 16)), (100, (40, 61))]


@pytest.mark.parametrize("n, ranks", CI_CASES)
def test_median_ci95_ranks(n, ranks):
    assert median_ci95([float(i) for i in range(1, n + 1)]) == ranks


def test_median_ci95_ignores_order_and_outliers():
    times = [10.0] * 18 + [500.0, 900.0]
    assert median_ci95(times[::-1]) == (10.0, 10.0)
