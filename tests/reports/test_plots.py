"""Figures from stored records: trade-off plot content and files, per-run figures, redraw only when stale."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from factories import make_record as shared_record
from PIL import Image

from bench.reports.leaderboard import LATENCY_AXES, leaderboard
from bench.reports.plots import (
    confusion_figure,
    curves_figure,
    plot_all,
    plot_run,
    plot_tradeoff,
    save,
    tradeoff_figure,
)
from bench.runs.record import RunRecord, Selection, load_records, save_record

CLASSES = ("benign", "malignant", "other")


def make_record(
    backbone: str,
    seed: int = 0,
    acc: float = 0.8,
    ms: float = 2.0,
    params: float = 10e6,
    dataset: str = "derm",
    device: str = "cpu-x",
    status: str = "ok",
) -> RunRecord:
    """The shared factory's record, as plots read it: three classes, two phases of two epochs, epoch 3 selected."""
    metrics = {
        "accuracy": acc,
        "balanced_accuracy": acc - 0.05,
        "macro_f1": acc - 0.1,
        "auc": None,  # stored NaN: JSON has none
        "confusion_matrix": [[8, 2, 0], [1, 3, 2], [0, 0, 4]],
    }
    counts = {"train": [50, 30, 20], "val": [5, 3, 2], "test": [10, 6, 4]}
    rec = shared_record(
        backbone, seed, acc, status, "staged", dataset, metrics=metrics, ms=ms, throughput=1000 / ms,
        params=int(params), device=device, classes=CLASSES, class_counts=counts,
        created=f"2026-01-0{seed + 1}T10:00:00+00:00",
    )  # fmt: skip
    if rec.ok:
        rec.history = [
            {"phase": ph, "epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val": {"balanced_accuracy": bal}}
            for ph, e, bal in (("head", 1, 0.55), ("head", 2, 0.6), ("full", 3, 0.65), ("full", 4, 0.7))
        ]
        rec.selection = Selection("loss", 3, 0.3)
    return rec


def store(results_dir: Path, records: list[RunRecord]) -> list[RunRecord]:
    """Write records where `bench run` would and read them back as the harness does."""
    for rec in records:
        save_record(rec, results_dir)
    return load_records(results_dir)


# Three Pareto-optimal backbones, one dominated (slower and less accurate than "small"), one failed.
SWEEP = [
    make_record("tiny_net", 0, acc=0.70, ms=0.5, params=0.4e6),
    make_record("tiny_net", 1, acc=0.72, ms=0.6, params=0.4e6),
    make_record("small_net", 0, acc=0.80, ms=2.0, params=5e6),
    make_record("small_net", 1, acc=0.84, ms=2.2, params=5e6),
    make_record("big_net", 0, acc=0.90, ms=20.0, params=80e6),
    make_record("clunky_net", 0, acc=0.75, ms=8.0, params=40e6),
    make_record("broken_net", 0, status="failed"),
]


def assert_png(path: Path, min_side: int = 300) -> np.ndarray:
    """A decodable PNG of a real size with more than a blank background; returns its pixels."""
    with Image.open(path) as img:
        assert img.format == "PNG" and min(img.size) >= min_side, (path, img.size)
        pixels = np.asarray(img.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, f"{path} looks blank"
    return pixels


def svg_text(path: Path) -> str:
    """All text of a (well-formed) SVG file, joined."""
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return " ".join(t.strip() for t in root.itertext() if t.strip())


def test_tradeoff_files_show_every_backbone_baseline_and_device(tmp_path):
    table = leaderboard(store(tmp_path, SWEEP), "derm")
    png, svg = plot_tradeoff(table, "derm", "balanced_accuracy", LATENCY_AXES["p50"], tmp_path / "plots")
    assert (png.name, svg.name) == ("derm-tradeoff.png", "derm-tradeoff.svg")
    assert_png(png)
    text = svg_text(svg)
    for label in ("tiny_net", "small_net", "big_net", "clunky_net", "Pareto front", "majority baseline", "cpu-x"):
        assert label in text, label
    assert "broken_net" not in text  # failed: no point to draw
    assert LATENCY_AXES["p50"].label in text and "Warning" not in text


@pytest.mark.parametrize(
    "extra, warning",
    [
        ([], ""),
        ([make_record("gpu_net", acc=0.95, ms=0.1, device="H100")], "Warning: latencies come from 2 different devices"),
    ],
    ids=["one device", "two devices"],
)
def test_tradeoff_warns_when_latencies_come_from_different_devices(tmp_path, extra, warning):
    table = leaderboard(store(tmp_path, [*SWEEP, *extra]), "derm")
    fig = tradeoff_figure(table, "derm", "balanced_accuracy", LATENCY_AXES["p50"])
    assert fig.get_suptitle().startswith(warning) and bool(fig.get_suptitle()) == bool(warning)
    assert ("H100" in fig.get_supxlabel()) == bool(extra)


@pytest.mark.parametrize("latency, drawstyle", [("p50", "steps-post"), ("throughput", "steps-pre")])
def test_front_is_a_step_line_through_its_members_only(tmp_path, latency, drawstyle):
    """Sorted by speed; post-steps for latency (budget from below), pre-steps for throughput (from above)."""
    table = leaderboard(store(tmp_path, SWEEP), "derm", "balanced_accuracy", latency)
    axes = tradeoff_figure(table, "derm", "balanced_accuracy", LATENCY_AXES[latency]).axes[0]
    (front,) = [line for line in axes.get_lines() if line.get_label().startswith("Pareto front")]
    members = table[table["pareto"]].sort_values(LATENCY_AXES[latency].column)
    assert set(members["backbone"]) == {"tiny_net", "small_net", "big_net"}
    assert front.get_drawstyle() == drawstyle
    np.testing.assert_allclose(front.get_xdata(), members[LATENCY_AXES[latency].column])
    np.testing.assert_allclose(front.get_ydata(), members["balanced_accuracy_mean"])


def test_nothing_to_plot_without_a_finished_run(tmp_path):
    table = leaderboard(store(tmp_path, [make_record("broken_net", status="failed")]), "derm")
    assert plot_tradeoff(table, "derm", "balanced_accuracy", LATENCY_AXES["p50"], tmp_path) == []


def test_confusion_matrix_is_row_normalised():
    image = confusion_figure(make_record("small_net")).axes[0].images[0].get_array()
    np.testing.assert_allclose(image.sum(axis=1), 1.0)
    np.testing.assert_allclose(image[1], [1 / 6, 3 / 6, 2 / 6])


def test_curves_mark_phase_boundary_and_selected_epoch():
    loss_axes = curves_figure(make_record("small_net")).axes[0]
    vertical = {
        (line.get_linestyle(), float(line.get_xdata()[0]))
        for line in loss_axes.get_lines()
        if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2
    }
    assert vertical == {("--", 2.5), (":", 3.0)}  # head -> full between epochs 2 and 3; epoch 3 selected
    assert {t.get_text() for t in loss_axes.texts} == {"head", "full"}


def test_plot_all_writes_every_file_and_redraws_only_stale_runs(tmp_path):
    records = store(tmp_path, [*SWEEP[:2], SWEEP[4], make_record("tiny_net", dataset="xray"), SWEEP[-1]])
    plotted = plot_all(records, "balanced_accuracy", "p50", tmp_path / "plots")
    assert {d: [p.name for p in paths] for d, paths in plotted.tradeoff.items()} == {
        "derm": ["derm-tradeoff.png", "derm-tradeoff.svg"],
        "xray": ["xray-tradeoff.png", "xray-tradeoff.svg"],
    }
    assert len(plotted.runs) == 4 and all(f.drawn for f in plotted.runs.values())  # the failed run has no figures
    for record in (r for r in records if r.ok):
        figures, spec, stem = plotted.runs[record.key], record.spec, record.path.stem
        assert figures.confusion == tmp_path / "plots" / "runs" / spec.dataset / spec.backbone / f"{stem}.confusion.png"
        assert figures.curves == figures.confusion.with_name(f"{stem}.curves.png")
        assert_png(figures.confusion, 250)
        assert_png(figures.curves, 250)

    assert not any(plot_run(r, tmp_path / "plots").drawn for r in records if r.ok)
    # A record rewritten after its figures (a re-run) gets them redrawn.
    stale = next(r for r in records if r.spec.backbone == "big_net")
    later = plotted.runs[stale.key].curves.stat().st_mtime + 10
    os.utime(stale.path, (later, later))
    assert plot_run(stale, tmp_path / "plots").drawn


def test_saved_figures_are_byte_reproducible(tmp_path):
    """Regenerating unchanged results must not dirty git: no dates, no random SVG ids."""
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2], label="x")
    ax.legend()
    first = save(fig, tmp_path / "a" / "f", ("svg", "png"))
    second = save(fig, tmp_path / "b" / "f", ("svg", "png"))
    plt.close(fig)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
