"""Figures from stored records: trade-off plot content and files, per-run figures, redraw only when stale."""

from __future__ import annotations

import contextlib
import errno
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from factories import make_record as shared_record
from factories import metric_values
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text
from PIL import Image

from bench.errors import ResultsError
from bench.evaluation.scores import TestScores
from bench.reports.leaderboard import LATENCY_AXES, leaderboard
from bench.reports.plots import (
    MAX_AREA,
    MIN_AREA,
    TIE_RING,
    _row_labels,
    confusion_figure,
    curves_figure,
    marker_areas,
    plot_all,
    plot_run,
    plot_tradeoff,
    save,
    tradeoff_figure,
    usual_setting,
)
from bench.runs.record import RunRecord, Selection, load_records, save_record
from bench.train.history import EpochLog

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
            EpochLog(ph, e, 1e-3, 1 / e, 1.2 / e, metric_values({"balanced_accuracy": bal}, CLASSES), 1.0)
            for ph, e, bal in (("head", 1, 0.55), ("head", 2, 0.6), ("full", 3, 0.65), ("full", 4, 0.7))
        ]
        rec.selection = Selection("loss", 3, 0.3)
    return rec


def store(results_dir: Path, records: list[RunRecord]) -> list[RunRecord]:
    """Write records where `bench run` would and read them back as the harness does."""
    for rec in records:
        save_record(rec, results_dir)
    return load_records(results_dir)


def save_probs(records: list[RunRecord]) -> None:
    """Test probabilities beside each finished run, right on its accuracy's share of the 20 test images."""
    for r in records:
        if r.ok:
            labels = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], r.dataset.class_counts["test"]))
            right = np.arange(labels.size) < round(r.score("accuracy") * labels.size)
            probs = np.full((labels.size, 3), 0.1)
            probs[np.arange(labels.size), np.where(right, labels, (labels + 1) % 3)] = 0.8
            TestScores(np.array([f"i{i}" for i in range(labels.size)]), labels, probs).save(r.probs_path())


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


def text_box(note, renderer):
    """An annotation's text box in pixels, without its leader line (``get_window_extent`` includes it)."""
    note.update_positions(renderer)
    return Text.get_window_extent(note, renderer)


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


@pytest.mark.parametrize("earlier", [None, b"the figure drawn last time"], ids=["new", "redrawn"])
@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_a_full_disk_leaves_the_earlier_figure_or_none_and_no_temp_file(tmp_path, monkeypatch, fmt, earlier):
    """Was: the OSError's traceback, and a truncated figure where the earlier one had been."""
    path = tmp_path / "plots" / f"f.{fmt}"
    if earlier is not None:
        path.parent.mkdir()
        path.write_bytes(earlier)

    def full_disk(self, target, **options):  # part of the figure reaches the file, then the disk is full
        with contextlib.ExitStack() as stack:
            fh = stack.enter_context(open(target, "wb")) if isinstance(target, str | os.PathLike) else target
            fh.write(b"half a figure")
            raise OSError(errno.ENOSPC, "No space left on device")

    fig, ax = plt.subplots()
    monkeypatch.setattr(Figure, "savefig", full_disk)
    with pytest.raises(ResultsError) as err:
        save(fig, tmp_path / "plots" / "f", (fmt,))
    plt.close(fig)
    assert str(err.value) == f"cannot write {path}: No space left on device"
    assert (path.read_bytes() if path.exists() else None) == earlier
    assert [p.name for p in path.parent.iterdir()] == ([] if earlier is None else [path.name])  # no temp file


def trade_off(results_dir: Path, records: list[RunRecord], probs: bool = False, latency: str = "p50"):
    """The stored records' leaderboard and the trade-off figure drawn from it."""
    stored = store(results_dir, records)
    if probs:
        save_probs(stored)
    table = leaderboard(stored, "derm", "balanced_accuracy", latency)
    return table, tradeoff_figure(table, "derm", "balanced_accuracy", LATENCY_AXES[latency])


def collection(axes, label: str):
    (found,) = [c for c in axes.collections if c.get_label() == label]
    return found


def legend_texts(axes) -> list[str]:
    """The entries of every legend drawn on ``axes`` (the markers' one and the sizes' one)."""
    return [t.get_text() for child in axes.get_children() if isinstance(child, Legend) for t in child.get_texts()]


def plotted_rows(table, axes) -> list[str]:
    """The backbone of each plotted point, in the order of the points' scatter."""
    points = table[(table["protocol"] != "baseline") & table["latency_ms"].notna()]
    xy = collection(axes, "_points").get_offsets()
    return [points.loc[np.isclose(points["latency_ms"], x) & np.isclose(points["balanced_accuracy_mean"], y)]
            .iloc[0]["backbone"] for x, y in xy]  # fmt: skip


@pytest.mark.parametrize(
    "params, shown",
    [
        ([3.37e6, 11.2e6], ["3.37", "11.2"]),  # the two points: not 6 and 9
        ([0.4e6, 5e6, 80e6], ["0.4", "5", "80"]),
        ([1e6, 2e6, 4e6, 8e6], ["1", "2", "8"]),  # the lower middle of an even count: an actual point
        ([25e6], ["25"]),
        ([7e6, 7e6, 30e6], ["7", "30"]),  # no repeated entry
    ],
)
def test_size_legend_shows_plotted_points_at_their_scale(tmp_path, params, shown):
    records = [make_record(f"net{i}", acc=0.6 + 0.05 * i, ms=1.0 + i, params=p) for i, p in enumerate(params)]
    table, fig = trade_off(tmp_path, records)
    axes = fig.axes[0]
    legend = axes.get_legend()
    assert legend.get_title().get_text() == "parameters (M)"
    assert [t.get_text() for t in legend.get_texts()] == shown
    points = collection(axes, "_points")
    area_of = dict(zip(plotted_rows(table, axes), points.get_sizes(), strict=True))
    for text, handle in zip(shown, legend.legend_handles, strict=True):
        backbone = next(b for b, p in zip(table["backbone"], table["params_m"], strict=False) if f"{p:.3g}" == text)
        assert handle.get_markersize() ** 2 == pytest.approx(area_of[backbone])  # same scale as the point


def test_marker_areas_grow_linearly_with_parameters():
    """The largest model gets the largest marker, no count the smallest, and area steps follow parameter steps."""
    areas = marker_areas(pd.Series([1.0, 2.0, 4.0, np.nan]), largest=4.0)
    assert (areas[2], areas[3]) == (MAX_AREA, MIN_AREA)
    np.testing.assert_allclose(np.diff(areas[:3]), [(MAX_AREA - MIN_AREA) / 4, (MAX_AREA - MIN_AREA) / 2])


@pytest.mark.parametrize("probs", [True, False], ids=["saved probabilities", "none: no tie test"])
def test_tied_rows_are_ringed_and_suffixed_as_in_the_table(tmp_path, probs):
    table, fig = trade_off(tmp_path, SWEEP, probs)
    axes = fig.axes[0]
    rows = table.set_index("backbone")
    tied = {b for b in rows.index if rows.loc[b, "tied"] and rows.loc[b, "protocol"] != "baseline"}
    assert bool(tied) == probs  # the bootstrap ties some rows when it has probabilities
    for note in axes.texts:
        backbone = note.get_text().removesuffix(" ≈")
        assert note.get_text().endswith(" ≈") == (backbone in tied), note.get_text()
    assert any(t.startswith("≈ tied with rank 1") for t in legend_texts(axes)) == probs
    if probs:
        rings = collection(axes, "_tie rings")
        expected = sorted((rows.loc[b, "latency_ms"], rows.loc[b, "balanced_accuracy_mean"]) for b in tied)
        np.testing.assert_allclose(sorted(map(tuple, rings.get_offsets())), expected)
        sizes = dict(zip(plotted_rows(table, axes), collection(axes, "_points").get_sizes(), strict=True))
        np.testing.assert_allclose(sorted(rings.get_sizes()), sorted(sizes[b] * TIE_RING for b in tied))
    else:
        assert not [c for c in axes.collections if c.get_label() == "_tie rings"]


# Majority baseline of the three-class factory: train counts 50/30/20, so always class 0: balanced accuracy 1/3.
# make_record's balanced accuracy is acc - 0.05, so this acc puts a point right on the baseline.
ON_LINE = 1 / 3 + 0.05
BASELINE_CASES = {
    "one point on the line, mid-plot": [("flat_net", ON_LINE, 2.0)],
    "on the line at the left edge": [("flat_net", ON_LINE, 0.3)],
    "on the line at the right edge": [("flat_net", ON_LINE, 40.0)],
    "three on the line side by side": [("flat_a", ON_LINE, 1.0), ("flat_b", ON_LINE, 1.2), ("flat_c", ON_LINE, 1.4)],
    "just above and just below": [("above_net", ON_LINE + 0.01, 3.0), ("below_net", ON_LINE - 0.01, 3.3)],
    # the leading rows of a real leaderboard: five names for points a few pixels apart
    "a tight cluster of five": [(f"cluster_net_{i}", 0.62 + 0.004 * i, 1.0 + 0.04 * i) for i in range(5)],
}


@pytest.mark.parametrize("extra", list(BASELINE_CASES.values()), ids=list(BASELINE_CASES))
def test_no_label_is_struck_through_by_the_baseline_or_another_label(tmp_path, extra):
    records = [*SWEEP[:6], *(make_record(name, acc=acc, ms=ms, params=3e6) for name, acc, ms in extra)]
    _, fig = trade_off(tmp_path, records)
    axes = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    (line,) = [line for line in axes.get_lines() if line.get_label().startswith("majority baseline")]
    assert line.get_ydata()[0] == pytest.approx(1 / 3)
    height = axes.transData.transform((1.0, 1 / 3))[1]
    boxes = {note.get_text(): text_box(note, renderer) for note in axes.texts}
    assert {name for name, *_ in extra} <= set(boxes)
    frame = axes.get_window_extent(renderer)
    for text, box in boxes.items():
        assert not box.y0 <= height <= box.y1, f"{text!r} is struck through by the baseline"
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text
    texts = list(boxes)
    overlapping = [(a, b) for i, a in enumerate(texts) for b in texts[i + 1 :] if boxes[a].overlaps(boxes[b])]
    assert not overlapping


def test_latency_bars_span_the_seeds_and_a_star_within_them_is_hollow(tmp_path):
    """The issue's case: 0.12 ms faster on the mean, within a 3.70-4.51 ms spread over seeds."""
    records = [
        make_record("fast_net", 0, acc=0.80, ms=3.70),
        make_record("fast_net", 1, acc=0.80, ms=4.51),
        make_record("sure_net", 0, acc=0.85, ms=4.05),
        make_record("sure_net", 1, acc=0.85, ms=4.40),
        make_record("quick_net", 0, acc=0.70, ms=1.0),
        make_record("quick_net", 1, acc=0.70, ms=1.1),
    ]
    table, fig = trade_off(tmp_path, records)
    axes = fig.axes[0]
    rows = table.set_index("backbone")
    assert rows.loc["fast_net", "latency_ms"] < rows.loc["sure_net", "latency_ms"]
    assert rows.loc[["fast_net", "sure_net", "quick_net"], "pareto"].all()  # the table's ★: the plain rule
    (errorbars,) = axes.containers
    (horizontal,) = [c for c in errorbars.lines[2] if all(seg[0][0] != seg[1][0] for seg in c.get_segments())]
    spans = sorted((round(seg[0][0], 2), round(seg[1][0], 2)) for seg in horizontal.get_segments())
    assert spans == [(1.0, 1.1), (3.7, 4.51), (4.05, 4.4)]
    points = collection(axes, "_points")
    faces = dict(zip(plotted_rows(table, axes), points.get_facecolors()[:, :3].tolist(), strict=True))
    assert faces["fast_net"] == [1.0, 1.0, 1.0]  # hollow: its ★ rests on a gap within the spread
    assert faces["sure_net"] != [1.0, 1.0, 1.0] and faces["quick_net"] != [1.0, 1.0, 1.0]
    assert "★ only by a latency gap within the seeds' min-max" in legend_texts(axes)
    assert "min-max over seeds (latency)" in fig.get_supxlabel()


def test_throughput_axis_has_no_latency_bars_and_no_hollow_star(tmp_path):
    table, fig = trade_off(tmp_path, SWEEP, latency="throughput")
    faces = collection(fig.axes[0], "_points").get_facecolors()[:, :3].tolist()
    assert [1.0, 1.0, 1.0] not in faces and "min-max" not in fig.get_supxlabel()


@pytest.mark.parametrize(
    "rows, usual, expected",
    [
        ([("a", "scratch", 32, False), ("b", "scratch", 32, True)], ("scratch", 32), ["a", "b ≈"]),
        ([("a", "scratch", 32, False), ("b", "staged", 32, False), ("c", "scratch", 75, True)], ("scratch", 32),
         ["a", "b (staged)", "c (75 px) ≈"]),
        ([("a", "staged", 75, False), ("b", "scratch", 32, False), ("c", "scratch", 32, False)], ("scratch", 32),
         ["a (staged, 75 px)", "b", "c"]),
    ],
)  # fmt: skip
def test_labels_name_only_the_setting_that_differs_from_most_rows(rows, usual, expected):
    points = pd.DataFrame(rows, columns=["backbone", "protocol", "resolution", "tied"])
    assert usual_setting(points) == usual and list(_row_labels(points)) == expected


def test_the_caption_names_the_setting_unqualified_labels_have(tmp_path):
    _, fig = trade_off(tmp_path, SWEEP[:6])
    assert "a label without (protocol, size): staged, 28 px" in fig.get_supxlabel()


def test_in_a_cluster_a_label_is_nearest_its_own_point_or_has_a_leader_line(tmp_path):
    cluster = [make_record(f"cluster_net_{i}", acc=0.62 + 0.004 * i, ms=1.0 + 0.04 * i, params=3e6) for i in range(5)]
    _, fig = trade_off(tmp_path, [*SWEEP[:6], *cluster])
    axes, renderer = fig.axes[0], fig.canvas.get_renderer()
    anchors = {note.get_text(): axes.transData.transform(note.xy) for note in axes.texts}

    def gap(box, point):
        return np.hypot(max(box.x0 - point[0], point[0] - box.x1, 0), max(box.y0 - point[1], point[1] - box.y1, 0))

    led = [note.get_text() for note in axes.texts if note.arrow_patch is not None]
    assert led, "five points a few pixels apart leave no free spot near every one of them"
    for note in axes.texts:
        if note.arrow_patch is None:
            box = text_box(note, renderer)
            own = gap(box, anchors[note.get_text()])
            assert all(own <= gap(box, xy) for t, xy in anchors.items() if t != note.get_text()), note.get_text()
