"""Trade-off plot labels: never on an error bar, a marker or another label, and each read as its own point's.

Every check reads the drawn artists' display boxes (``get_window_extent`` with the figure's renderer), never the
placement's own geometry: the bars' segments and caps, the markers' circles, the labels' text boxes and their
leader lines. The crowded cases are small copies of what broke the mission's plots (a front's plateau of points at
one height, a tight cluster, tall bars where a label wants to be, points on the baseline) and the mission's own
three plots, drawn from the committed records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from bench.reports.placement import LEADER_FROM, place_labels

MISSION = Path(__file__).resolve().parents[2] / "results" / "mission"


def clashes(fig: Figure) -> list[str]:
    """Every way a label of ``fig``'s axes fails: on a bar, a cap, a marker, the baseline or another label (or a
    leader line through one); a label without a leader line nearer another point than its own; one outside the
    axes."""
    ax = fig.axes[0]
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72
    bars, markers = [], []
    for collection in ax.collections:
        if isinstance(collection, LineCollection):  # error bars: one segment each, half the line width around
            half = collection.get_linewidths()[0] * px / 2
            bars += [_around(ax.transData.transform(segment), half) for segment in collection.get_segments()]
        elif isinstance(collection, PathCollection) and len(collection.get_offsets()):  # markers, ≈ rings
            sizes = np.broadcast_to(collection.get_sizes(), len(collection.get_offsets()))
            for centre, size in zip(ax.transData.transform(collection.get_offsets()), sizes, strict=True):
                markers.append((centre, _around(centre[None], np.sqrt(size) / 2 * px)))
    lines = []
    for line in ax.lines:
        xy = ax.transData.transform(np.column_stack([np.asarray(line.get_xdata(), float), line.get_ydata()]))
        if line.get_marker() in ("|", "_"):  # the bars' caps
            bars += [_around(point[None], line.get_markersize() * px / 2) for point in xy]
        elif line.get_label().startswith("majority baseline"):
            lines.append(xy[0][1])
    notes = list(ax.texts)
    boxes = [_text_box(note, renderer) for note in notes]
    frame = ax.get_window_extent(renderer)
    found = []
    for n, (note, box) in enumerate(zip(notes, boxes, strict=True)):
        name, own = note.get_text(), ax.transData.transform(note.xy)
        others = [(c, b) for c, b in markers if not np.allclose(c, own)]
        found += [f"{name}: on an error bar or cap" for bar in bars if box.overlaps(bar)]
        found += [f"{name}: on a marker" for _, marker in markers if box.overlaps(marker)]
        found += [f"{name}: on the baseline" for height in lines if box.y0 <= height <= box.y1]
        found += [
            f"{name}: on {other.get_text()}"
            for other, b in zip(notes, boxes, strict=True)
            if b is not box and box.overlaps(b)
        ]
        if not (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1):
            found.append(f"{name}: outside the axes")
        if note.arrow_patch is None:
            if others and min(_gap(box, c) for c, _ in others) <= _gap(box, own):
                found.append(f"{name}: nearer another point than its own")
        else:
            leader = note.arrow_patch.get_path().vertices  # display pixels: from the label to its marker's edge
            radius = np.sqrt(max(_own_sizes(ax, own))) / 2 * px
            if np.hypot(*(leader[-1] - own)) > radius + 2 * px:
                found.append(f"{name}: its leader line ends away from its point")
            along = _along(leader)
            found += [f"{name}: leader line across a marker" for _, m in others if _through(along, m)]
            found += [
                f"{name}: leader line across {other.get_text()}"
                for other, b in zip(notes, boxes, strict=True)
                if other is not note and _through(along, b)
            ]
            found += [
                f"{name}: leader line crosses {other.get_text()}'s"
                for other in notes[n + 1 :]
                if other.arrow_patch is not None and _cross(leader, other.arrow_patch.get_path().vertices)
            ]
    return found


def _text_box(note, renderer) -> Bbox:
    """The text's own box (an annotation's ``get_window_extent`` includes its leader line)."""
    note.update_positions(renderer)
    return Text.get_window_extent(note, renderer)


def _around(points: np.ndarray, half: float) -> Bbox:
    return Bbox.from_extents(*(points.min(axis=0) - half), *(points.max(axis=0) + half))


def _gap(box: Bbox, point: np.ndarray) -> float:
    return float(np.hypot(max(box.x0 - point[0], point[0] - box.x1, 0), max(box.y0 - point[1], point[1] - box.y1, 0)))


def _own_sizes(ax, own: np.ndarray) -> list[float]:
    """The areas (pt^2) of the markers and rings drawn at ``own``."""
    return [
        float(np.broadcast_to(c.get_sizes(), len(c.get_offsets()))[i])
        for c in ax.collections
        if isinstance(c, PathCollection) and len(c.get_offsets())
        for i, xy in enumerate(ax.transData.transform(c.get_offsets()))
        if np.allclose(xy, own)
    ]


def _along(path: np.ndarray) -> np.ndarray:
    """Points every half pixel along a polyline."""
    pieces = [np.linspace(a, b, max(2, int(np.hypot(*(b - a)) * 2))) for a, b in zip(path[:-1], path[1:], strict=True)]
    return np.vstack(pieces)


def _through(points: np.ndarray, box: Bbox) -> bool:
    return bool(
        ((box.x0 < points[:, 0]) & (points[:, 0] < box.x1) & (box.y0 < points[:, 1]) & (points[:, 1] < box.y1)).any()
    )


def _cross(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two straight leader lines (their first and last vertices) cross."""

    def turn(p, q, r):
        return np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))

    (p, q), (r, s) = (a[0], a[-1]), (b[0], b[-1])
    return turn(p, q, r) * turn(p, q, s) < 0 and turn(r, s, p) * turn(r, s, q) < 0


def draw(points: list[tuple[str, float, float, float, float, float]], baseline: float | None = None) -> Figure:
    """A trade-off plot's marks as :func:`bench.reports.plots.tradeoff_figure` draws them, labelled by
    :func:`place_labels`. ``points``: (name, ms, accuracy, std over seeds, latency spread, area in pt^2)."""
    names = [p[0] for p in points]
    x, y, std, spread, areas = (np.array([p[i] for p in points], float) for i in range(1, 6))
    fig = Figure(figsize=(9.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    errorbars = ax.errorbar(x, y, yerr=std, xerr=[spread, spread], fmt="none", ecolor="0.55", elinewidth=1, capsize=3)
    ax.scatter(x, y, s=areas, zorder=3, label="_points")
    if baseline is not None:
        ax.axhline(baseline, linestyle="--", label=f"majority baseline ({baseline:.3f})")
    ax.set_xscale("log")
    ax.margins(x=0.2, y=0.15)
    place_labels(ax, names, x, y, areas, [] if baseline is None else [baseline], errorbars)
    return fig


CROWDS = {
    # the chest X-ray front: five long names on points at one height, their bars up and down
    "a plateau at one height": [
        ("tf_efficientnet_lite1 (staged)", 13.5, 0.750, 0.012, 0.2, 60),
        ("convnext_tiny", 17.0, 0.748, 0.009, 0.3, 150),
        ("convnext_small", 31.0, 0.747, 0.009, 0.5, 270),
        ("densenet121", 13.0, 0.737, 0.030, 0.2, 64),
        ("resnet18", 7.2, 0.737, 0.022, 0.1, 77),
        ("inception_resnet_v2 (75 px)", 70.0, 0.753, 0.007, 2.0, 270),
    ],
    "a tight cluster of six": [
        (f"cluster_net_{i}", 1.0 + 0.04 * i, 0.62 + 0.004 * i, 0.01, 0.02, 40) for i in range(6)
    ],
    "tall bars where the labels would go": [
        ("efficientnet_b0", 8.3, 0.584, 0.073, 0.1, 40),
        ("tf_efficientnet_lite0 (staged)", 7.6, 0.703, 0.020, 0.1, 40),
        ("tf_efficientnetv2_b0", 8.8, 0.698, 0.020, 0.1, 45),
        ("tf_efficientnet_lite2 (staged)", 14.0, 0.678, 0.007, 0.2, 50),
        ("resnet50", 18.0, 0.718, 0.027, 0.3, 140),
        ("tf_efficientnetv2_s", 22.0, 0.649, 0.064, 0.3, 110),
    ],
    "three on the baseline side by side": [
        ("flat_a", 1.0, 0.5, 0.0, 0.0, 40),
        ("flat_b", 1.2, 0.5, 0.01, 0.05, 40),
        ("flat_c", 1.4, 0.5, 0.0, 0.0, 40),
        ("above_net", 3.0, 0.52, 0.01, 0.1, 40),
    ],
}


@pytest.mark.parametrize("points", list(CROWDS.values()), ids=list(CROWDS))
def test_labels_clear_of_bars_markers_and_each_other_and_nearest_their_own_point(points):
    baseline = 0.5 if any(p[2] == 0.5 for p in points) else None
    fig = draw(points, baseline)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted(p[0] for p in points)
    assert clashes(fig) == []


@pytest.mark.parametrize("dataset", ["chest_xray", "isic", "ham10000"])
def test_the_mission_plots_labels_clash_with_nothing(mission_tables, dataset):
    from bench.reports.leaderboard import latency_axis
    from bench.reports.plots import tradeoff_figure

    fig = tradeoff_figure(mission_tables[dataset], dataset, "balanced_accuracy", latency_axis("p50"))
    assert clashes(fig) == []
    led = [t.get_text() for t in fig.axes[0].texts if t.arrow_patch is not None]
    if dataset == "chest_xray":  # convnext_tiny's label cannot be nearest its point as a box: it has a leader line
        assert "convnext_tiny" in led


@pytest.fixture(scope="module")
def mission_tables():
    from bench.reports.latency_pass import load_latency_passes
    from bench.reports.leaderboard import leaderboard
    from bench.runs.record import load_records

    records, passes = load_records(MISSION), load_latency_passes(MISSION)
    return {d: leaderboard(records, d, "balanced_accuracy", "p50", passes) for d in ("chest_xray", "isic", "ham10000")}


# A label put by hand where the placement never puts one (its centre, in data): the check must say so.
MISPLACED = {
    "on its bar": ((1.0, 0.635), "on an error bar or cap"),
    "on its marker": ((1.0, 0.6), "on a marker"),
    "beside the neighbour": ((1.5, 0.6), "nearer another point than its own"),
    "on the other label": (None, "on b_net"),
}


@pytest.mark.parametrize("centre, expected", list(MISPLACED.values()), ids=list(MISPLACED))
def test_the_check_finds_a_label_put_where_it_clashes(centre, expected):
    fig = draw([("a_net", 1.0, 0.6, 0.05, 0.05, 60), ("b_net", 1.2, 0.6, 0.05, 0.05, 60)])
    ax, renderer = fig.axes[0], fig.canvas.get_renderer()
    assert clashes(fig) == []
    (a,) = [t for t in ax.texts if t.get_text() == "a_net"]
    a.remove()
    if centre is None:
        (b,) = [t for t in ax.texts if t.get_text() == "b_net"]
        box = _text_box(b, renderer)
        centre = ax.transData.inverted().transform(((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2))
    ax.annotate("a_net", (1.0, 0.6), xytext=tuple(centre), ha="center", va="center")
    assert any(expected in clash for clash in clashes(fig)), clashes(fig)


def test_a_far_label_gets_a_leader_line_and_a_near_one_none():
    fig = draw(CROWDS["a plateau at one height"])
    renderer = fig.canvas.get_renderer()
    ax, px = fig.axes[0], fig.dpi / 72
    for note in ax.texts:
        own = ax.transData.transform(note.xy)
        radius = np.sqrt(max(_own_sizes(ax, own))) / 2 * px
        gap = _gap(_text_box(note, renderer), own) - radius
        assert (note.arrow_patch is not None) == (gap >= LEADER_FROM * px - 1), (note.get_text(), gap / px)
