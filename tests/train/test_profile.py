"""``bench profile``: the ratio is computed from interleaved pairs, the table says what each part costs;
and bench run's stage table."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console

import bench.train.profile as profile_mod
from bench.errors import ConfigError
from bench.train.engine import EngineConfig
from bench.train.profile import PARTS, ProfileConfig, ProfileResult, Steps, measure, paired_ratios, profile_table

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "harness, bare, expected",
    [
        ([2.0, 4.0], [1.0, 2.0], [2.0, 2.0]),  # every pair 2x
        ([10.0, 22.0], [10.0, 20.0], [1.0, 1.1]),  # drift: both slow down together, the ratio holds
    ],
)
def test_paired_ratios(harness, bare, expected):
    assert paired_ratios(harness, bare) == pytest.approx(expected)


@pytest.mark.parametrize("harness, bare", [([1.0], [1.0, 2.0]), ([], [])])
def test_paired_ratios_need_pairs(harness, bare):
    with pytest.raises(ValueError, match="equally long"):
        paired_ratios(harness, bare)


class ScriptedBackend:
    """Runs each step and returns the time scripted for it, logging the order of the calls."""

    def __init__(self, times: dict[str, list[float]]):
        self.times = {k: iter(v) for k, v in times.items()}
        self.calls: list[str] = []

    def time_ms(self, step) -> float:
        name = step()
        self.calls.append(name)
        return next(self.times[name])


def test_measure_interleaves_and_drops_warmup():
    steps = Steps(
        harness=lambda: "harness",
        bare=lambda: "bare",
        parts={name: (lambda n=name: n) for name in PARTS},
    )
    backend = ScriptedBackend(
        {"harness": [99.0, 11.0, 12.0], "bare": [99.0, 10.0, 10.0]} | {p: [99.0, 1.0, 2.0] for p in PARTS}
    )
    harness, bare, parts = measure(steps, rounds=2, warmup=1, backend=backend)
    assert (harness, bare) == ([11.0, 12.0], [10.0, 10.0])
    assert parts == {p: [1.0, 2.0] for p in PARTS}
    # The two steps swap places every round, so neither always runs on the other's warm caches.
    firsts = [backend.calls[i * (2 + len(PARTS))] for i in range(3)]
    assert firsts == ["harness", "bare", "harness"]


class NamedBackend:
    """Runs each step for real and returns the time scripted for its name, one series per step."""

    def __init__(self, times: dict[str, list[float]]):
        self.times = {k: iter(v) for k, v in times.items()}

    def time_ms(self, step) -> float:
        step()
        return next(self.times[step.__name__])


def test_profile_backbone_runs_the_real_steps_and_reports_the_paired_ratio(monkeypatch):
    calls = []
    real_step = profile_mod.train_step

    def counting_step(*args, **kwargs):
        calls.append(1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(profile_mod, "train_step", counting_step)
    config = ProfileConfig(backbones=("test_resnet",), resolutions=(16,), batch_size=8, rounds=3, warmup=1)
    bare = [50.0, 100.0, 100.0, 100.0]
    harness = [99.0, 103.0, 120.0, 101.0]  # paired ratios 1.03, 1.2, 1.01 after the warm-up round
    parts = {"data": [9.0, 1.0, 2.0, 3.0], "augment": [9.0, 4.0, 4.0, 4.0], "schedule": [9.0, 0.1, 0.2, 0.3]}
    backend = NamedBackend({"harness": harness, "bare": bare} | parts)
    result = profile_mod.profile_backbone("test_resnet", 16, config, backend=backend)
    assert len(calls) == config.warmup + config.rounds  # the real harness step ran every round
    assert result.ratio == pytest.approx(1.03) and result.ratio_ci95 == pytest.approx((1.01, 1.2))
    assert (result.bare_ms, result.harness_ms) == (100.0, 103.0)
    assert result.parts_ms == pytest.approx({"data": 2.0, "augment": 4.0, "schedule": 0.2})
    assert result.engine == EngineConfig().to_dict() and result.fingerprint["device_kind"] == "cpu"


def test_profile_measures_on_the_cpu():
    config = ProfileConfig(backbones=("test_resnet",), resolutions=(16,), batch_size=4, rounds=2, warmup=0, threads=1)
    before = torch.get_num_threads()
    (result,) = profile_mod.profile(config)
    assert result.bare_ms > 0 and result.harness_ms > 0 and math.isfinite(result.ratio)
    assert torch.get_num_threads() == before  # the thread count is restored


def _result(backbone="resnet18", ratio=1.04, bare=100.0, harness=104.0, parts=(1.0, 2.5, 0.1)) -> ProfileResult:
    fingerprint = {"device_kind": "cpu", "cpu_model": "Some CPU", "torch_threads": 1, "load_avg_1m": 2.5}
    parts_ms = dict(zip(PARTS, parts, strict=True))
    ci = (ratio - 0.02, ratio + 0.03)
    return ProfileResult(backbone, 28, 128, bare, harness, ratio, ci, parts_ms, rounds=8, fingerprint=fingerprint)


def test_unexplained_is_what_the_parts_leave():
    assert _result().unexplained_ms == pytest.approx(104.0 - 100.0 - 3.6)


def test_table_shows_ratio_parts_and_flags_a_miss():
    table = profile_table([_result(), _result("efficientnet_b0", ratio=1.25, harness=125.0)], "scratch")
    console = Console(record=True, width=220, color_system="standard")
    console.print(table)
    text = console.export_text(clear=False)
    assert "resnet18" in text and "1.040" in text and "2.5 (+2.5%)" in text  # augment: 2.5 ms = 2.5% of bare
    assert "efficientnet_b0" in text and "1.250" in text and "1.230-1.280" in text
    assert "protocol 'scratch'" in text and "Some CPU, 1 torch threads" in text and "2.5, 2.5" in text
    styled = console.export_text(styles=True)
    red = "\x1b[31m"
    assert f"{red}1.250" in styled and f"{red}1.040" not in styled  # over target is red, within target is not


@pytest.mark.parametrize(
    "field, value",
    [
        ("backbones", ()),
        ("resolutions", ()),
        ("batch_size", 0),
        ("rounds", 0),
        ("channels", 2),
        ("warmup", -1),
        ("threads", 0),
    ],
)
def test_profile_config_refuses_nonsense(field, value):
    with pytest.raises(ConfigError, match=field):
        ProfileConfig(**{field: value})


def test_stage_table_shows_totals_and_the_per_run_spread(capsys, monkeypatch):
    from bench.cli.run import print_timings
    from bench.cli.shared import console

    monkeypatch.setattr(console, "width", 160)
    decoded = {"data": 3.2, "build": 0.1, "train": 50.0, "eval": 0.5, "latency": 3.1}
    cached = {"data": 0.2, "build": 0.1, "train": 40.0, "eval": 0.4, "latency": 3.0}
    failed = {"data": 0.2}  # a run that failed after loading its data
    print_timings([SimpleNamespace(timings_s=t) for t in (decoded, cached, failed)])
    lines = [line.strip("│").split("│") for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    rows = {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in lines}
    assert rows["data"] == ["3.6", "4%", "0.20", "0.20", "3.20"]  # the decoding load stands out as the max
    assert rows["train"][:2] == ["90.0", "89%"]  # of 100.8 s in all
    assert rows["latency"][2:] == ["3.00", "3.05", "3.10"]  # the failed run has no latency to count
