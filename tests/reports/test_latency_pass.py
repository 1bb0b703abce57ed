"""A `bench latency` pass in the results folder stands for the runs' own latency where it measured their setting."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.errors import ResultsError
from bench.latency.report import save_latency_records
from bench.latency.timing import LatencyResult
from bench.reports.latency_pass import load_latency_passes, passes_of
from bench.reports.leaderboard import leaderboard
from bench.reports.render import table_notes
from tests.factories import make_record, write_run


def _pass(
    results_dir: Path,
    ms: float,
    *,
    backbone="resnet18",
    resolution=28,
    device="cpu-x",
    batch=1,
    precision="fp32",
    noisy=False,
) -> Path:
    """A `bench latency` record as the command writes it (save_latency_records), one batch-1 setting."""
    result = LatencyResult(
        backbone=backbone,
        resolution=resolution,
        input_size=(3, resolution, resolution),
        batch_size=batch,
        batch_size_run=batch,
        precision=precision,
        memory_format="contiguous",
        compiled=False,
        device_kind="cpu",
        ms_per_batch_p50=ms * batch,
        ms_per_batch_p50_ci95=(ms * batch * 0.9, ms * batch * 1.1),
        ms_per_image_p50=ms,
        throughput_img_s=1000 / ms,
        noisy=noisy,
        noisy_reason="cv 0.4 > 0.1" if noisy else None,
        fingerprint={"cpu_model": device, "device_kind": "cpu"},
    )
    return save_latency_records([result], results_dir)


@pytest.fixture
def noisy_runs(tmp_path):
    """Two seeds of resnet18 and one of vgg16 whose in-run latencies never settled (a busy sweep)."""
    for seed in (0, 1):
        write_run(make_record("resnet18", seed=seed, noisy=True), tmp_path)
    write_run(make_record("vgg16", seed=0, ms=9.0), tmp_path)
    return tmp_path


def _row(results_dir: Path, backbone: str):
    from bench.runs.record import load_records

    table = leaderboard(load_records(results_dir), "d", passes=load_latency_passes(results_dir))
    return table, table.set_index("backbone").loc[backbone]


def test_a_pass_stands_for_noisy_run_figures(noisy_runs):
    path = _pass(noisy_runs, 1.5)
    table, row = _row(noisy_runs, "resnet18")
    assert row["latency_ms"] == pytest.approx(1.5)
    assert (row["latency_ms_min"], row["latency_ms_max"]) == (pytest.approx(1.35), pytest.approx(1.65))
    assert row["latency_from"] == f"latency/{path.name}" and row["latency_noisy"] == 0
    assert "noisy" not in row["note"]
    # vgg16 has no pass: it keeps its run's own figure, and the note says which rows took which
    vgg = table.set_index("backbone").loc["vgg16"]
    assert vgg["latency_ms"] == pytest.approx(9.0) and vgg["latency_from"] == "runs"
    note = next(n for n in table_notes(table) if n.startswith("Latency:"))
    assert path.name in note and "vgg16: their runs' own figures" in note


# (case, pass settings): a pass that measured something else never stands for the runs
OTHER_SETTINGS = [
    ("another resolution", {"resolution": 224}),
    ("another device", {"device": "NVIDIA H200"}),
    ("another precision", {"precision": "bf16"}),
    ("another backbone", {"backbone": "resnet50"}),
    ("batch 32 only", {"batch": 32}),
    ("the pass itself noisy", {"noisy": True}),
]


@pytest.mark.parametrize("case, settings", OTHER_SETTINGS, ids=[c[0] for c in OTHER_SETTINGS])
def test_a_pass_of_another_setting_is_not_used(noisy_runs, case, settings):
    _pass(noisy_runs, 1.5, **settings)
    table, row = _row(noisy_runs, "resnet18")
    assert math.isnan(row["latency_ms"]) and "latency of every seed is noisy" in row["note"]
    assert not any(n.startswith("Latency:") for n in table_notes(table))


def test_the_newest_pass_wins(noisy_runs):
    _pass(noisy_runs, 1.5)
    _pass(noisy_runs, 1.2)
    assert _row(noisy_runs, "resnet18")[1]["latency_ms"] == pytest.approx(1.2)


def test_records_read_from_a_folder_bring_its_passes(noisy_runs):
    """No `passes` argument: the passes of the folder the records were read from, as `bench leaderboard` takes them."""
    from bench.runs.record import load_records

    path = _pass(noisy_runs, 1.5)
    records = load_records(noisy_runs)
    assert passes_of(records) == load_latency_passes(noisy_runs) != []
    assert leaderboard(records, "d").set_index("backbone").loc["resnet18", "latency_from"] == f"latency/{path.name}"
    assert leaderboard(records, "d", passes=()).set_index("backbone").loc["resnet18", "latency_from"] == "runs"
    assert passes_of([make_record("resnet18")]) == []  # built in memory: no folder, no passes


def test_no_latency_folder_means_no_passes(tmp_path):
    assert load_latency_passes(tmp_path) == []


@pytest.mark.parametrize(
    "content", ["not json", json.dumps({"schema": "something/else", "records": []})], ids=["not json", "schema"]
)
def test_an_unreadable_pass_names_its_file(tmp_path, content):
    bad = tmp_path / "latency" / "latency-20260101T000000000000Z-deadbeef.json"
    bad.parent.mkdir()
    bad.write_text(content)
    with pytest.raises(ResultsError, match="latency-20260101T000000000000Z-deadbeef.json"):
        load_latency_passes(tmp_path)


def test_the_plot_says_what_its_latency_bars_span(noisy_runs, tmp_path):
    from bench.reports.leaderboard import latency_axis
    from bench.reports.plots import plot_tradeoff

    _pass(noisy_runs, 1.5)
    table, _ = _row(noisy_runs, "resnet18")
    paths = plot_tradeoff(table, "d", "balanced_accuracy", latency_axis("p50"), tmp_path / "plots")
    svg = next(p for p in paths if p.suffix == ".svg").read_text()
    assert "p50 95% CI of the bench latency pass, else min-max over seeds (latency)" in svg  # vgg16 kept its own
