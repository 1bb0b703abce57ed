"""``bench profile --engines``: every setting measured in the same rounds, ratios to fp32 NCHW, the auto row marked."""

from __future__ import annotations

import re

import pytest
import torch
from rich.console import Console

import bench.train.cpu_engine as cpu_engine
import bench.train.engine as engine
import bench.train.engine_speed as engine_speed
from bench.errors import ConfigError
from bench.train.cpu_engine import PIN_ENV, CpuSetting, settings_here
from bench.train.engine_speed import (
    EngineSpeed,
    EngineSpeedConfig,
    engine_speed_table,
    engine_speeds,
    gpu_auto_setting,
    named_settings,
)


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

    class FirstCall:  # the device's clock (CpuBackend here), in ms: nothing compiles here
        def time_ms(self, step):
            first_calls.append(step)
            return 42_000.0

    monkeypatch.setattr(engine_speed, "measure_settings", scripted)
    monkeypatch.setattr(engine_speed, "select_backend", lambda device: FirstCall())
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


def test_named_settings_time_those_and_the_baseline_alone(monkeypatch, tmp_path):
    """A short GPU lease compiles the one setting that matters, not all four: --settings bf16-nhwc+compile."""
    monkeypatch.setenv(PIN_ENV, "fp32-nchw")

    def scripted(steps, *args, **kwargs):
        return {name: [2.0 if name.endswith("+compile") else 8.0] * 2 for name in steps}

    class Clock:
        def time_ms(self, step):
            return 5_000.0

    monkeypatch.setattr(engine_speed, "measure_settings", scripted)
    monkeypatch.setattr(engine_speed, "select_backend", lambda device: Clock())
    config = EngineSpeedConfig(("test_resnet",), (16,), 4, rounds=2, threads=1, settings=("FP32-nhwc+compile ",))
    rows = engine_speeds(config)
    assert [(r.setting, r.ratio, r.compile_s) for r in rows] == [
        ("fp32-nchw", 1.0, None),
        ("fp32-nhwc+compile", 0.25, 5.0),
    ]


@pytest.mark.parametrize(
    "names, device, expected",
    [
        (("fp32-nhwc", "fp32-nchw"), "cpu", ["fp32-nchw", "fp32-nhwc"]),
        (("fp32-nhwc+fused+compile",), "cpu", ["fp32-nchw", "fp32-nhwc+fused+compile"]),
        (("fp16-nhwc",), "cpu", "--settings 'fp16-nhwc': cpu trains in fp32-nchw, fp32-nhwc"),
        (("fp32-nhwc+turbo",), "cpu", "with compile or fused after a +"),
        (("fp32-nchw+fused",), "cuda", "cuda trains in fp32-nchw, fp32-nhwc"),  # a GPU's is always fused
    ],
)
def test_named_settings_are_spelt_as_the_table_spells_them(monkeypatch, names, device, expected):
    monkeypatch.setattr(cpu_engine, "native_bf16", lambda device: False)  # the same two settings on any machine
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=re.escape(expected)):
            named_settings(names, torch.device(device))
    else:
        assert [s.name for s in named_settings(names, torch.device(device))] == expected


@pytest.mark.parametrize("bf16, expected", [(True, CpuSetting("bf16", True)), (False, None)])
def test_a_gpus_auto_row_is_what_bench_run_trains_in_there(monkeypatch, bf16, expected):
    """bf16 channels-last with native bf16; before Ampere `bench run` trains in fp16, which no row times."""
    monkeypatch.setattr(engine, "_cuda_probe", lambda device: (bf16, 1 << 34))
    assert gpu_auto_setting(torch.device("cuda")) == expected


def test_a_gpu_table_says_gpu_and_names_the_card():
    fingerprint = {"device_kind": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3", "torch_version": "2.11"}
    row = EngineSpeed("resnet18", 224, 128, "bf16-nhwc", 50.0, 0.3, (0.3, 0.3), 10**12, 7e14, True, 5, fingerprint)
    console = Console(width=300, record=True)
    console.print(engine_speed_table([row]))
    text = console.export_text()
    assert "GPU training step" in text and "NVIDIA H100 80GB HBM3" in text and "CUDA events" in text
    assert "torch threads" not in text


@pytest.mark.parametrize("field, value", [("backbones", ()), ("rounds", 0), ("batch_size", 0), ("threads", 0)])
def test_config_refuses_nonsense(field, value):
    with pytest.raises(ConfigError, match="profile --engines"):
        EngineSpeedConfig(**{field: value})


def test_config_refuses_a_fused_optimiser_on_a_gpu_where_every_setting_has_it():
    with pytest.raises(ConfigError, match="--fused-optimizer: on cuda every setting already trains with the fused"):
        EngineSpeedConfig(fused=True, device="cuda")
