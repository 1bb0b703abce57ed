"""``bench profile --engines``: every setting measured in the same rounds, ratios to fp32 NCHW, the auto row marked."""

from __future__ import annotations

import pytest
import torch
from rich.console import Console

import bench.train.engine_speed as engine_speed
from bench.errors import ConfigError
from bench.train.cpu_engine import PIN_ENV, settings_here
from bench.train.engine_speed import EngineSpeed, EngineSpeedConfig, engine_speed_table, engine_speeds


def test_every_setting_is_measured_and_the_auto_row_marked(monkeypatch):
    monkeypatch.setenv(PIN_ENV, "fp32-nhwc")
    config = EngineSpeedConfig(backbones=("test_resnet",), resolutions=(16,), batch_size=4, rounds=2, threads=1)
    before = torch.get_num_threads()
    rows = engine_speeds(config)
    assert torch.get_num_threads() == before
    assert [r.setting for r in rows] == [s.name for s in settings_here()]
    assert [r.setting for r in rows if r.auto] == ["fp32-nhwc"]  # the pin decides what `bench run` would use
    standing = rows[0]
    assert standing.ratio == 1.0 and standing.ratio_ci95 == (1.0, 1.0) and standing.rounds == 2
    assert all(r.flops == standing.flops > 0 and r.step_ms > 0 and r.peak_flops > 0 for r in rows)
    assert rows[0].fingerprint["torch_threads"] == 1


def test_without_pin_or_cache_the_auto_row_is_this_measurements_fastest(monkeypatch, tmp_path):
    monkeypatch.delenv(PIN_ENV)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))

    def scripted(steps, *args, **kwargs):
        return {name: [4.0 if name == "fp32-nhwc" else 8.0] * 2 for name in steps}

    monkeypatch.setattr(engine_speed, "measure_settings", scripted)
    config = EngineSpeedConfig(backbones=("test_resnet",), resolutions=(16,), batch_size=4, rounds=2, threads=1)
    rows = engine_speeds(config)
    assert [r.setting for r in rows if r.auto] == ["fp32-nhwc"] and rows[1].ratio == 0.5
    assert not list(tmp_path.rglob("*.json"))  # profiling writes no choice for `bench run` to find


def test_fused_adds_each_setting_with_the_fused_optimiser_and_auto_stays_unfused(monkeypatch, tmp_path):
    """auto never trains fused (it rounds otherwise: asked for, never measured into a run), even where fastest."""
    monkeypatch.delenv(PIN_ENV)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))

    def scripted(steps, *args, **kwargs):
        return {name: [2.0 if name.endswith("+fused") else 8.0] * 2 for name in steps}

    monkeypatch.setattr(engine_speed, "measure_settings", scripted)
    config = EngineSpeedConfig(("test_resnet",), (16,), batch_size=4, rounds=2, threads=1, fused=True)
    rows = engine_speeds(config)
    plain = [s.name for s in settings_here()]
    assert [r.setting for r in rows] == plain + [f"{name}+fused" for name in plain]
    assert [r.setting for r in rows if r.auto] == ["fp32-nchw"] and rows[len(plain)].ratio == 0.25


def test_compile_adds_each_setting_compiled_with_its_compile_time_and_its_eager_twins_flops(monkeypatch, tmp_path):
    """A compiled setting is timed apart at its first call (it compiles there), counted with its eager twin's FLOPs,
    and never chosen by auto, even where fastest; the table gains a compile column."""
    monkeypatch.delenv(PIN_ENV)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    first_calls = []

    def scripted(steps, *args, **kwargs):
        return {name: [2.0 if name.endswith("+compile") else 8.0] * 2 for name in steps}

    def first_call(clock, step):  # CpuBackend.time_ms, in ms: nothing compiles here
        first_calls.append(step)
        return 42_000.0

    monkeypatch.setattr(engine_speed, "measure_settings", scripted)
    monkeypatch.setattr(engine_speed.CpuBackend, "time_ms", first_call)
    config = EngineSpeedConfig(("test_resnet",), (16,), batch_size=4, rounds=2, threads=1, compile=True)
    rows = engine_speeds(config)
    plain = [s.name for s in settings_here()]
    assert [r.setting for r in rows] == plain + [f"{name}+compile" for name in plain]
    assert len(first_calls) == len(plain) and all(
        step.args[0].__class__.__name__ == "OptimizedModule" for step in first_calls
    )
    assert [r.compile_s for r in rows] == [None] * len(plain) + [42.0] * len(plain)
    assert [r.flops for r in rows[len(plain) :]] == [r.flops for r in rows[: len(plain)]]
    assert [r.setting for r in rows if r.auto] == ["fp32-nchw"] and rows[len(plain)].ratio == 0.25
    console = Console(width=300, record=True)
    console.print(engine_speed_table(rows))
    text = console.export_text()
    assert "compile s" in text and " 42 " in text


def test_the_table_shows_throughput_ratio_and_share_of_peak():
    row = EngineSpeed(
        "resnet18", 32, 128, "bf16-nhwc", 500.0, 0.54, (0.5, 0.6), 28 * 10**9, 100e9, True, 5,
        {"cpu_model": "Some CPU", "torch_threads": 1, "torch_version": "2.14", "load_avg_1m": 1.5},
    )  # fmt: skip
    assert row.images_per_s == 256 and row.achieved_flops == 56e9 and row.share_of_peak == pytest.approx(0.56)
    console = Console(width=250, record=True)
    console.print(engine_speed_table([row]))
    text = console.export_text()
    for cell in ("bf16-nhwc", "auto", "500.0", "256", "0.54", "0.50-0.60", "28.00", "56.0", "100.0", "56.0"):
        assert cell in text
    assert "Some CPU, 1 torch threads" in text and "load average (1 min) 1.5" in text


@pytest.mark.parametrize("field, value", [("backbones", ()), ("rounds", 0), ("batch_size", 0), ("threads", 0)])
def test_config_refuses_nonsense(field, value):
    with pytest.raises(ConfigError, match="profile --engines"):
        EngineSpeedConfig(**{field: value})
