"""Estimated training time of planned runs: measured from earlier records of the same kind, never guessed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
from factories import make_record

import bench.runs.estimate as estimate
from bench.cli.run import _plan_summary
from bench.config import from_mapping
from bench.data.entries import get_dataset_entry
from bench.models.registry import get_backbone
from bench.protocol.search import Search
from bench.runs.estimate import estimate_runs
from bench.runs.planned import PlannedRun
from bench.runs.resolve import ResolvedRun
from bench.train.engine import EngineConfig


def planned(backbone: str = "resnet18", resolution: int = 28, epochs: int = 4) -> PlannedRun:
    record = make_record(backbone, seed=9, resolution=resolution, epochs=epochs)
    entries = get_backbone("resnet18"), get_dataset_entry("pneumoniamnist")  # estimates read neither
    run = ResolvedRun(record.spec, *entries, record.identity, record.key)
    return PlannedRun(run, record.path, None)


def timed(backbone: str = "resnet18", seconds: float = 10.0, status: str = "ok", resolution: int = 28):
    """A finished run of 2 epochs over the factory's 100 training images that trained for ``seconds``."""
    record = make_record(backbone, status=status, resolution=resolution, epochs=2)
    record = dataclasses.replace(record, timings_s={"train": seconds})
    assert len(record.history) == 2 or status != "ok"
    return record


@pytest.fixture(autouse=True)
def two_hundred_training_images(monkeypatch):
    monkeypatch.setattr(estimate, "_split_train_size", lambda dataset, data_root, split: 200)


@pytest.mark.parametrize(
    "earlier, expected",
    [
        # 10 s / (2 epochs x 100 images) = 0.05 s per image-epoch; planned: 4 epochs x 200 images
        ([timed(seconds=10.0)], 40.0),
        ([timed(seconds=10.0), timed(seconds=30.0), timed(seconds=12.0)], 48.0),  # the median, not the mean
        ([timed(seconds=10.0), timed(seconds=99.0, status="failed")], 40.0),  # failed runs do not time anything
    ],
)
def test_the_estimate_is_the_median_rate_times_epochs_and_images(earlier, expected):
    run = planned()
    (guess,) = estimate_runs([run], earlier, "cpu").values()
    assert guess.seconds == pytest.approx(expected) and guess.reason == ""


@pytest.mark.parametrize(
    "earlier, device, reason",
    [
        ([timed("resnet50")], "cpu", "no earlier run of resnet18 at 28 px on cpu"),
        ([timed(resolution=64)], "cpu", "no earlier run of resnet18 at 28 px on cpu"),
        ([timed()], "cuda", "no earlier run of resnet18 at 28 px on cuda"),
        ([], "cpu", "no earlier run of resnet18 at 28 px on cpu"),
    ],
)
def test_another_backbone_size_or_device_gives_no_estimate(earlier, device, reason):
    (guess,) = estimate_runs([planned()], earlier, device).values()
    assert guess.seconds is None and guess.based_on == 0 and guess.reason == reason


@pytest.mark.parametrize(
    "seconds, expected",
    [
        ([3600.0, 1800.0], "3 runs: 1 done, 2 to do; estimated training 1.50 h for 2 of them, from earlier runs"),
        ([3600.0, None], "estimated training 1.00 h for 1 of them (1 unknown), from earlier runs"),
        ([None, None], "no estimate: no finished run of the same backbone, resolution and device in mine/, results/"),
    ],
)
def test_the_plan_line_totals_what_is_known_and_says_what_is_not(seconds, expected):
    plan = SimpleNamespace(specs=[1, 2, 3], finished_before=1, todo=[1, 2])
    estimates = {i: estimate.Estimate(s, 1 if s else 0) for i, s in enumerate(seconds)}
    line = _plan_summary(plan, estimates, [Path("mine"), Path("results"), Path("mine")])
    assert expected in line and line.endswith("nothing was trained")


def _in_engine(record, amp: str | None, channels_last: bool):
    return dataclasses.replace(record, engine=EngineConfig(amp=amp, channels_last=channels_last))


def test_runs_in_the_planned_engine_are_preferred_and_another_engine_is_named():
    """bf16 channels-last trains some backbones twice as fast: fp32 runs would price a bf16 run at double."""
    fp32, bf16 = _in_engine(timed(seconds=20.0), None, False), _in_engine(timed(seconds=10.0), "bf16", True)
    run = planned()
    bf16_spec = dataclasses.replace(run.spec, auto_precision="bf16", memory_format="nhwc")
    bf16_run = dataclasses.replace(run, run=dataclasses.replace(run.run, spec=bf16_spec))
    (guess,) = estimate_runs([bf16_run], [fp32, bf16], "cpu").values()
    assert guess.seconds == pytest.approx(40.0) and guess.reason == ""
    (guess,) = estimate_runs([bf16_run], [fp32], "cpu").values()
    assert guess.seconds == pytest.approx(80.0) and guess.reason == "median of 1 run(s) in another engine"


@pytest.mark.parametrize(
    "search, seed, epochs",
    [
        (None, 0, 4),
        ({"trials": 3, "epochs": 2}, 0, 4 + 3 * 2),  # every trial at its full epochs, on the search's seed
        ({"trials": 3, "epochs": 2}, 1, 4),  # the other seeds read the finished study
        ({"trials": 3}, 0, 4 + 3 * 4),  # trials at the protocol's epochs
        ({"trials": 2, "seed": 1}, 1, 4 + 2 * 4),
    ],
)
def test_a_search_is_priced_once_per_experiment_on_its_seeds_run(search, seed, epochs):
    run = planned()
    space = from_mapping(Search, {"lr": {"low": 1e-4, "high": 1e-2}, **search}, "test") if search else None
    protocol = dataclasses.replace(run.identity.protocol, search=space)
    identity = dataclasses.replace(run.identity, protocol=protocol)
    resolved = dataclasses.replace(run.run, identity=identity, spec=dataclasses.replace(run.spec, seed=seed))
    run = dataclasses.replace(run, run=resolved)
    (guess,) = estimate_runs([run], [timed(seconds=10.0)], "cpu").values()
    assert guess.seconds == pytest.approx(0.05 * epochs * 200)
