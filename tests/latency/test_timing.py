"""Latency statistics on known durations, the config's checks and the stopping rule."""

from __future__ import annotations

import pytest

from bench.errors import ConfigError
from bench.latency.timing import LatencyConfig, latency_stats, noisy_reason, stop_reason, warmup_done

FAST = dict(warmup_iters=2, min_iters=20, max_iters=500, time_budget_s=10.0, device="cpu")


BAD_CONFIGS = [
    (dict(batch_sizes=()), "batch sizes"),
    (dict(batch_sizes=(0, 8)), "batch sizes"),
    (dict(precisions=("fp8",)), "precision 'fp8' is unknown"),
    (dict(precisions=()), "at least one precision"),
    (dict(warmup_iters=0), "warmup_iters"),
    (dict(min_iters=50, max_iters=10), "min_iters <= max_iters"),
    (dict(time_budget_s=0.0), "time_budget_s"),
    (dict(warmup_s=0.0), "warmup_s"),
    (dict(cv_target=0.0), "cv_target"),
    (dict(device="tpu"), "device 'tpu'"),
]


@pytest.mark.parametrize("kwargs, message", BAD_CONFIGS)
def test_bad_config_names_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LatencyConfig(**kwargs)


def test_config_lists_become_tuples():
    config = LatencyConfig(batch_sizes=[1, 8], precisions=["fp32", "bf16"])
    assert config.batch_sizes == (1, 8) and config.precisions == ("fp32", "bf16")


# ------------------------------------------------------------------------------------------------ statistics

# (per-iteration batch times in ms, batch, expected figures), all computable by hand.
STATS_CASES = [
    (
        [10.0] * 4,
        1,
        dict(ms_per_batch_p50=10, ms_per_batch_mean=10, ms_per_image_p50=10, throughput_img_s=100, cv=0),
    ),
    (
        [8.0, 12.0],
        4,
        dict(
            ms_per_batch_p50=10,
            ms_per_batch_mean=10,
            ms_per_image_p50=2.5,
            throughput_img_s=400,
            cv=0.2828427,
        ),
    ),
    (
        [float(i) for i in range(1, 101)],
        32,
        dict(
            ms_per_batch_p50=50.5,
            ms_per_batch_p90=90.1,
            ms_per_batch_p99=99.01,
            ms_per_batch_mean=50.5,
            ms_per_image_p50=50.5 / 32,
            throughput_img_s=32_000 / 50.5,
            cv=29.011492 / 50.5,
            ms_per_batch_p50_ci95=(40.0, 61.0),
            n_iters=100,
        ),
    ),
    (
        [7.0],
        8,
        dict(ms_per_batch_p50=7, ms_per_batch_p99=7, cv=0, ms_per_batch_p50_ci95=(7.0, 7.0), n_iters=1),
    ),
]


@pytest.mark.parametrize("times, batch, expected", STATS_CASES)
def test_latency_stats_on_known_durations(times, batch, expected):
    stats = latency_stats(times, batch)
    for key, value in expected.items():
        assert stats[key] == pytest.approx(value, rel=1e-6), key


STOP_CASES = [
    ("constant: cv 0 at min_iters", [5.0] * 20, dict(), "cv"),
    ("one short of min_iters", [5.0] * 19, dict(), None),
    ("rare outliers: cv high but p50 pinned", ([10.0] * 4 + [100.0]) * 4, dict(), "p50_ci"),
    ("bimodal: p50 between the modes", [10.0, 30.0] * 20, dict(), None),
    ("bimodal at max_iters", [10.0, 30.0] * 15, dict(max_iters=30), "max_iters"),
    ("bimodal, budget spent", [10.0, 30.0] * 25, dict(time_budget_s=1.0), "budget"),
    ("budget spent before min_iters", [400.0] * 3, dict(time_budget_s=1.0), "budget"),
    ("nothing timed yet", [], dict(time_budget_s=1.0), None),
]


@pytest.mark.parametrize("case, times, overrides, expected", STOP_CASES, ids=[c[0] for c in STOP_CASES])
def test_stop_reason(case, times, overrides, expected):
    assert stop_reason(times, LatencyConfig(**{**FAST, **overrides})) == expected


def test_the_budget_counts_warm_up():
    config = LatencyConfig(**{**FAST, "time_budget_s": 1.0})
    assert stop_reason([400.0], config, warmup_ms=400.0) is None
    assert stop_reason([400.0, 400.0], config, warmup_ms=0.0) is None
    assert stop_reason([400.0, 400.0], config, warmup_ms=400.0) == "budget"


# (warm-up pass durations so far, config overrides, done): passes or time, whichever ends first
WARMUP_CASES = [
    ([], dict(warmup_iters=1), True),  # the first call is the whole warm-up
    ([], dict(warmup_iters=10), False),
    ([5.0] * 8, dict(warmup_iters=10), False),
    ([5.0] * 9, dict(warmup_iters=10), True),
    ([600.0], dict(warmup_iters=10, warmup_s=1.0), False),
    ([600.0, 600.0], dict(warmup_iters=10, warmup_s=1.0), True),
    ([600.0], dict(warmup_iters=10, warmup_s=5.0, time_budget_s=1.0), True),  # at most half the budget
]


@pytest.mark.parametrize("warmup, overrides, done", WARMUP_CASES)
def test_warmup_ends_after_its_passes_or_its_time(warmup, overrides, done):
    assert warmup_done(warmup, LatencyConfig(**{**FAST, **overrides})) is done


def test_a_figure_short_of_min_iters_says_what_budget_would_reach_them():
    config = LatencyConfig(**{**FAST, "time_budget_s": 10.0})
    reason = noisy_reason([3000.0] * 3, "budget", config, warmup_ms=3000.0)
    assert reason == (
        "time budget of 10 s ran out after 3 iterations (< min_iters 20) at 3 s a pass: 20 need a budget of about 63 s"
    )
