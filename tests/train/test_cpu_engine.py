"""The CPU engine choice: the ranking rule, what is asked or pinned kept, the measurement made once and read back."""

from __future__ import annotations

import json

import pytest
import torch

import bench.train.cpu_engine as cpu_engine
import bench.train.engine
from bench.errors import ConfigError
from bench.timers.backends import CpuBackend
from bench.train.cpu_engine import (
    ALL_SETTINGS,
    PIN_ENV,
    STANDING,
    CpuMeasurement,
    CpuSetting,
    MeasureKey,
    choose_cpu_setting,
    cpu_measurement,
    measure_settings,
    setting_steps,
    settings_here,
)

KEY = MeasureKey("resnet18", 32, 128, 1, "2.14.1", "Some CPU")
FP32_NCHW, FP32_NHWC, BF16_NCHW, BF16_NHWC = ALL_SETTINGS


def _measured(**ratio: float) -> CpuMeasurement:
    """A measurement whose rounds all gave these ratios to fp32 NCHW (a 100 ms step)."""
    return CpuMeasurement.of(KEY, {k.replace("_", "-"): [100.0 * r] * 3 for k, r in ratio.items()})


@pytest.mark.parametrize(
    "ratio, allowed, expected",
    [
        # issue 30's three architectures (steps relative to fp32 NCHW)
        ({"fp32_nchw": 1.0, "fp32_nhwc": 0.9, "bf16_nchw": 0.69, "bf16_nhwc": 0.54}, ALL_SETTINGS, BF16_NHWC),
        ({"fp32_nchw": 1.0, "fp32_nhwc": 0.72, "bf16_nchw": 0.54, "bf16_nhwc": 0.42}, ALL_SETTINGS, BF16_NHWC),
        ({"fp32_nchw": 1.0, "fp32_nhwc": 0.46, "bf16_nchw": 1.06, "bf16_nhwc": 0.83}, ALL_SETTINGS, FP32_NHWC),
        # bf16 within the margin of the fastest fp32 step: fp32 kept (another precision is another experiment)
        ({"fp32_nchw": 1.0, "fp32_nhwc": 0.5, "bf16_nchw": 0.49, "bf16_nhwc": 0.48}, ALL_SETTINGS, FP32_NHWC),
        ({"fp32_nchw": 1.0, "fp32_nhwc": 0.5, "bf16_nchw": 0.47, "bf16_nhwc": 0.48}, ALL_SETTINGS, BF16_NCHW),
        # what was asked restricts the candidates
        ({"fp32_nchw": 1.0, "fp32_nhwc": 0.9, "bf16_nchw": 0.69, "bf16_nhwc": 0.54}, (FP32_NCHW, FP32_NHWC), FP32_NHWC),
        ({"fp32_nchw": 1.0, "fp32_nhwc": 0.9, "bf16_nchw": 0.69, "bf16_nhwc": 0.54}, (FP32_NCHW, BF16_NCHW), BF16_NCHW),
        ({"fp32_nchw": 1.0, "fp32_nhwc": 1.2, "bf16_nchw": 1.5, "bf16_nhwc": 1.4}, ALL_SETTINGS, FP32_NCHW),
    ],
)
def test_the_fastest_setting_wins_and_bf16_must_win_clearly(ratio, allowed, expected):
    assert _measured(**ratio).fastest(allowed) == expected


def test_the_ranking_reads_ratios_within_rounds_so_drift_cancels():
    """The machine slows 3x in round 2, just after fp32 NCHW's step: the medians of the two series would rank fp32
    NCHW first (100 vs 150 ms), but bf16 took half of fp32 NCHW's time in the other two rounds."""
    m = CpuMeasurement.of(KEY, {"fp32-nchw": [100.0, 100.0, 300.0], "bf16-nhwc": [50.0, 150.0, 150.0]})
    assert m.step_ms == {"fp32-nchw": 100.0, "bf16-nhwc": 150.0}
    assert m.ratio == {"fp32-nchw": 1.0, "bf16-nhwc": 0.5} and m.rounds == 3
    assert m.fastest(ALL_SETTINGS) == BF16_NHWC


def test_measurements_round_trip():
    m = _measured(fp32_nchw=1.0, fp32_nhwc=0.5)
    assert CpuMeasurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert m.ratio == {"fp32-nchw": 1.0, "fp32-nhwc": 0.5} and m.step_ms["fp32-nhwc"] == 50.0


def test_setting_names_parse_and_refuse():
    assert [s.name for s in ALL_SETTINGS] == ["fp32-nchw", "fp32-nhwc", "bf16-nchw", "bf16-nhwc"]
    assert CpuSetting.parse(" BF16-NHWC ", PIN_ENV) == BF16_NHWC
    with pytest.raises(ConfigError, match="^BENCH_CPU_ENGINE 'bf16' is not one of fp32-nchw, fp32-nhwc"):
        CpuSetting.parse("bf16", PIN_ENV)


def test_a_cpu_without_native_bf16_has_only_fp32_settings(monkeypatch):
    monkeypatch.setattr(bench.train.engine, "cpu_native_bf16", lambda: False)
    assert settings_here() == (FP32_NCHW, FP32_NHWC)


@pytest.fixture
def no_measuring(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("measured although nothing was left to decide")

    monkeypatch.setattr(cpu_engine, "measure_settings", refuse)


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(bench.train.engine, "cpu_native_bf16", lambda: True)


@pytest.mark.parametrize(
    "precision, memory_format, expected",
    [("fp32", "nchw", FP32_NCHW), ("fp32", "nhwc", FP32_NHWC), ("bf16", "nhwc", BF16_NHWC)],
)
def test_what_is_asked_is_kept_without_measuring(precision, memory_format, expected, native_bf16, no_measuring):
    choice = choose_cpu_setting("test_resnet", 16, 8, 1, precision, memory_format)
    assert (choice.setting, choice.how, choice.measurement) == (expected, "asked", None)


@pytest.mark.parametrize(
    "pin, precision, memory_format, expected",
    [
        ("fp32-nchw", "auto", "auto", FP32_NCHW),  # the test suite's pin: the standing engine
        ("bf16-nhwc", "auto", "auto", BF16_NHWC),
        ("bf16-nhwc", "fp32", "auto", FP32_NHWC),  # an asked precision beats the pin's
        ("fp32-nchw", "bf16", "auto", BF16_NCHW),
    ],
)
def test_the_pin_decides_each_auto_without_measuring(pin, precision, memory_format, expected, monkeypatch, native_bf16,
                                                     no_measuring):  # fmt: skip
    monkeypatch.setenv(PIN_ENV, pin)
    choice = choose_cpu_setting("test_resnet", 16, 8, 1, precision, memory_format)
    assert (choice.setting, choice.how) == (expected, "pinned")


def test_a_bf16_pin_on_a_cpu_without_bf16_is_refused(monkeypatch):
    monkeypatch.setattr(bench.train.engine, "cpu_native_bf16", lambda: False)
    monkeypatch.setenv(PIN_ENV, "bf16-nhwc")
    with pytest.raises(ConfigError, match="no native bf16"):
        choose_cpu_setting("test_resnet", 16, 8, 1)


def test_the_measurement_is_made_once_per_key_and_read_back(tmp_path, monkeypatch, native_bf16):
    """A rerun resolves ``auto`` as the first run did: it reads the file the first measurement wrote."""
    monkeypatch.delenv(PIN_ENV)
    calls = []

    def scripted(steps, *args, **kwargs):
        calls.append(sorted(steps))
        return {"fp32-nchw": [10.0, 11.0, 12.0], "fp32-nhwc": [9.0] * 3, "bf16-nchw": [8.0] * 3, "bf16-nhwc": [5.0] * 3}

    monkeypatch.setattr(cpu_engine, "measure_settings", scripted)
    first = choose_cpu_setting("test_resnet", 16, 8, 1, folder=tmp_path)
    again = choose_cpu_setting("test_resnet", 16, 8, 1, folder=tmp_path)
    assert (first.setting, first.how, again.setting, again.how) == (BF16_NHWC, "measured", BF16_NHWC, "cached")
    assert calls == [sorted(s.name for s in ALL_SETTINGS)]  # one measurement, of every setting
    assert first.measurement == again.measurement and first.measurement.step_ms["fp32-nchw"] == 11.0
    assert first.measurement.ratio["bf16-nhwc"] == 5.0 / 11.0
    assert first.path.parent == tmp_path and first.path.name.startswith("test_resnet-r16-b8-t1-")
    other_threads = choose_cpu_setting("test_resnet", 16, 8, 2, folder=tmp_path)
    assert other_threads.how == "measured" and len(calls) == 2  # the ranking depends on the thread count
    first.path.write_text("{not json")
    assert choose_cpu_setting("test_resnet", 16, 8, 1, folder=tmp_path).how == "measured"  # damaged: measured again


def test_measure_settings_interleaves_drops_warmup_and_keeps_to_its_budget(monkeypatch):
    order = []
    steps = {name: (lambda n=name: order.append(n)) for name in ("a", "b", "c")}
    times = measure_settings(steps, rounds=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert [order[i * 3] for i in range(4)] == ["a", "b", "c", "a"]  # each round starts one further along
    clock = iter(range(0, 10**15, 10**9))  # every step takes 1 s on this clock (nanoseconds)
    monkeypatch.setattr(cpu_engine, "CpuBackend", lambda: CpuBackend(clock=lambda: next(clock)))
    times = measure_settings(steps, rounds=5, warmup=1, budget_s=7.0)  # a round takes 3 s: 2 rounds fit
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2, "c": 2}


def test_setting_steps_train_in_each_setting(native_bf16):
    steps = setting_steps("test_resnet", 16, 4, ALL_SETTINGS)
    losses = {name: step() for name, step in steps.items()}
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in losses.values())


def test_a_real_measurement_covers_every_setting_here(tmp_path, monkeypatch):
    monkeypatch.delenv(PIN_ENV)
    measurement, path, cached = cpu_measurement("test_resnet", 16, 4, 1, tmp_path)
    assert not cached and path.exists() and set(measurement.step_ms) == {s.name for s in settings_here()}
    assert measurement.key.cpu_model and measurement.rounds >= 1 and measurement.ratio[STANDING.name] == 1.0
    assert torch.get_num_threads() >= 1
