"""Point labels placed clear of the error bars, the markers, the baseline line and each other, each read as its
own point's.

A label written at a fixed offset from its point is struck through by an error bar or the majority baseline, and
two points a few pixels apart print their names on top of each other. Here each label's candidate places are a
grid of text-box positions around its marker (every :data:`GRID` points, finer close by), from :data:`AIR` to
:data:`FARTHEST` off the marker's edge, so a label can slide along a neighbour to the one spot where it fits. A
place is allowed only where the text box

- touches no error bar (its lines and caps as drawn, :func:`errorbar_boxes`), no marker or ≈ ring and not the
  baseline line, and lies inside the axes;
- touches no other label or leader line;
- reads as its own point's: within :data:`LEADER_FROM` of its marker, the box is nearer its point than any other
  point; further out it gets a leader line (from the box's spot nearest the point to the marker's edge) that
  crosses no other marker or label, and the box keeps :data:`LEADER_FROM` from every other marker.

A leader line is there because a box as a whole cannot always be nearest its own point: in a row of points at
one height (a front's plateau) a long label above one spans over its neighbours, and the highest of them is
the nearest to it. Among the allowed places the cheapest wins: the distance from the marker, a little for the
side without room or a place askew of the point, and more for a leader line's start nearer another point, for a
led label close by another point, for a leader line across an error bar or the baseline, and for a box across
the Pareto front's line. :mod:`bench.reports.label_search` chooses one place per label.

Positions are measured in display pixels with the figure's renderer, so the figure's layout must be final before
labels are placed (:func:`place_labels` freezes it). adjustText 1.4 (pushing texts apart from each other and
from given boxes) was tried on the mission sweep's plots, with every bar piece, cap and marker given as a box to
avoid: at its default forces it left labels on bars and markers in all three, and it guarantees neither that
nor a label's nearness to its own point.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer
from matplotlib.text import Annotation

from bench.reports.label_search import Places, Scene, choose, overlaps, point_gap, segment_hits

AIR = 3.0  # points between a label and a marker's edge, a line or a bar at the nearest
GRID = 3.0  # points between neighbouring candidate places (half that within LEADER_FROM of the marker)
FARTHEST = 90.0  # points: the farthest a label is put from its marker's edge
LEADER_FROM = 9.0  # points from the marker's edge: a label this far out gets a leader line
LEADER = {"arrowstyle": "-", "color": "0.45", "linewidth": 0.6, "shrinkA": 0}
NEARER_BY = 2.0  # points a label (or its leader's start) must be nearer its own point than any other
SIDE = 1.5  # points of distance a place on the side without room (or above, below) costs, at most
ALIGN = 0.15  # distance per pixel a place is askew: centred beside or above its point reads best
MISREAD = 10.0  # points of distance a led label costs where its box, or its leader's start, is nearer another point
CROWD_FROM, CROWDS = 30.0, 30.0  # a led label within CROWD_FROM points of another marker costs up to CROWDS
CROSSES_FRONT = 40.0  # points of distance crossing the front's line costs
CROSSES_BAR = 6.0  # points of distance a leader line costs for each error bar it crosses
LINE_IS_BARS = 4  # crossing the baseline costs as much as crossing this many bars


def place_labels(
    ax,
    labels: Sequence[str],
    x: np.ndarray,
    y: np.ndarray,
    areas: np.ndarray,
    lines_y: Sequence[float] = (),
    errorbars: ErrorbarContainer | None = None,
    soft: Sequence[tuple[float, float, float, float]] = (),
    fontsize: float = 8,
) -> list[Annotation]:
    """Annotate each point (data ``x``, ``y``; marker area ``areas`` in pt^2, rings included) clear of the
    horizontal lines at data heights ``lines_y``, the drawn ``errorbars``, the markers and each other; ``soft``:
    data boxes ``(x0, x1, y0, y1)`` a label avoids where it can (the front's line). Returns the annotations in
    point order.

    Freezes the figure's layout first (a constrained layout would move the axes after the labels were
    measured): axes, legends and captions must all be in place before this is called.
    """
    fig = ax.get_figure(root=True)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)  # a renderer to measure text with; PNG and SVG are saved the same way
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72
    centres = ax.transData.transform(np.column_stack([x, y]))
    radii = np.sqrt(np.asarray(areas, float)) / 2 * px  # ``s`` is the squared diameter in points
    bars = errorbar_boxes(errorbars, ax) if errorbars is not None else np.zeros((0, 4))
    half = AIR * px / 2
    markers = np.column_stack([centres - radii[:, None], centres + radii[:, None]])
    scene = Scene(
        centres=centres,
        radii=radii,
        fixed=np.vstack([markers, bars]) + [-half, -half, half, half],
        bars=bars,
        lines=[ax.transData.transform((1.0, h))[1] for h in lines_y],
        frame=np.asarray(ax.get_window_extent(renderer).extents),
        front=_data_boxes(ax, soft, half),
        px=px,
    )
    places = [_places(scene, i, _text_size(ax, renderer, label, fontsize)) for i, label in enumerate(labels)]
    chosen = choose(scene, places)
    notes = []
    for i, (label, k) in enumerate(zip(labels, chosen, strict=True)):
        p = places[i]
        x0, y0, x1, y1 = p.boxes[k]
        relpos = ((p.starts[k][0] - x0) / (x1 - x0), (p.starts[k][1] - y0) / (y1 - y0))  # the leader's start
        edge = radii[i] / px + 1  # the leader line stops at the marker's edge
        leader = {"arrowprops": LEADER | {"relpos": relpos, "shrinkB": edge}} if p.led[k] else {}
        offset = (p.mids[k] - centres[i]) / px
        notes.append(
            ax.annotate(
                label,
                (x[i], y[i]),
                xytext=tuple(offset),
                textcoords="offset points",
                fontsize=fontsize,
                ha="center",
                va="center",
                **leader,
            )
        )
    return notes


def errorbar_boxes(errorbars: ErrorbarContainer, ax) -> np.ndarray:
    """Every drawn piece of ``errorbars`` as a pixel box ``(x0, y0, x1, y1)``: each bar's line (half its width
    each side) and each cap (a square as wide as the cap is long)."""
    _, caps, bars = errorbars.lines
    px = ax.get_figure(root=True).dpi / 72
    boxes = []
    for collection in bars:
        half = float(np.max(collection.get_linewidths(), initial=1.0)) * px / 2
        for segment in collection.get_segments():
            ends = ax.transData.transform(np.asarray(segment, float))
            boxes.append([*(ends.min(axis=0) - half), *(ends.max(axis=0) + half)])
    for line in caps:
        half = line.get_markersize() * px / 2
        xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
        boxes += [[cx - half, cy - half, cx + half, cy + half] for cx, cy in ax.transData.transform(xy)]
    return np.array(boxes, float).reshape(-1, 4)


def step_segments(xs: np.ndarray, ys: np.ndarray, post: bool) -> list[tuple[float, float, float, float]]:
    """The pieces of a front drawn by ``ax.step(xs, ys)`` (``where="post"`` or ``"pre"``) as ``(x0, x1, y0, y1)``
    boxes, for :func:`place_labels` to keep labels off where it can."""
    pieces = []
    for (xa, ya), (xb, yb) in itertools.pairwise(zip(xs, ys, strict=True)):
        corner = (xb, ya) if post else (xa, yb)
        pieces += [(min(xa, corner[0]), max(xa, corner[0]), min(ya, corner[1]), max(ya, corner[1]))]
        pieces += [(min(corner[0], xb), max(corner[0], xb), min(corner[1], yb), max(corner[1], yb))]
    return pieces


def _data_boxes(ax, boxes: Sequence[tuple[float, float, float, float]], pad: float) -> np.ndarray:
    out = []
    for x0, x1, y0, y1 in boxes:
        (a, b), (c, d) = ax.transData.transform([(x0, y0), (x1, y1)])
        out.append([min(a, c) - pad, min(b, d) - pad, max(a, c) + pad, max(b, d) + pad])
    return np.array(out, float).reshape(-1, 4)


def _text_size(ax, renderer, label: str, fontsize: float) -> tuple[float, float]:
    text = ax.text(0, 0, label, fontsize=fontsize, transform=None)
    box = text.get_window_extent(renderer)
    text.remove()
    return box.width, box.height


def _places(scene: Scene, i: int, size: tuple[float, float]) -> Places:
    """Label ``i``'s candidate places (a text box of ``size`` pixels): a grid of box centres around its point,
    kept where the box is :data:`AIR` to :data:`FARTHEST` off the marker's edge, so a label can slide along a
    neighbour to the one spot where it fits."""
    px, centre, radius = scene.px, scene.centres[i], scene.radii[i]
    w, h = size
    offsets = []
    for reach, step in ((LEADER_FROM + 2 * GRID, GRID / 2), (FARTHEST, GRID)):  # finer where labels sit unled
        dx = np.arange(-(radius + reach * px + w / 2), radius + reach * px + w / 2 + 1e-9, step * px)
        dy = np.arange(-(radius + reach * px + h / 2), radius + reach * px + h / 2 + 1e-9, step * px)
        offsets.append(np.stack(np.meshgrid(dx, dy), axis=-1).reshape(-1, 2))
    mids = centre + np.vstack(offsets)
    boxes = np.column_stack([mids - [w / 2, h / 2], mids + [w / 2, h / 2]])
    gap = point_gap(boxes, centre) - radius
    keep = (gap >= AIR * px) & (gap <= FARTHEST * px)
    mids, boxes, gap = mids[keep], boxes[keep], gap[keep]
    starts = np.clip(centre, boxes[:, :2], boxes[:, 2:])  # the box's spot nearest the point
    ends = centre + (starts - centre) * (radius / np.maximum(np.hypot(*(starts - centre).T), 1e-9))[:, None]
    led = gap >= LEADER_FROM * px
    others = np.delete(np.arange(len(scene.centres)), i)

    touches = overlaps(boxes, scene.fixed).sum(axis=1)
    for height in scene.lines:
        touches += (boxes[:, 1] - AIR * px <= height) & (height <= boxes[:, 3] + AIR * px)
    frame = scene.frame
    touches += (boxes[:, 0] < frame[0]) | (boxes[:, 1] < frame[1]) | (boxes[:, 2] > frame[2]) | (boxes[:, 3] > frame[3])
    own_box, own_start = point_gap(boxes, centre), np.hypot(*(starts - centre).T)
    misread, crowds = np.zeros(len(boxes)), np.zeros(len(boxes))
    for j in others:  # read as point j's: the box is nearer point j, or (with a leader line) as near as its own
        near_box = point_gap(boxes, scene.centres[j]) - own_box < NEARER_BY * px
        beside = point_gap(boxes, scene.centres[j]) - scene.radii[j] < LEADER_FROM * px
        touches += np.where(led, beside, near_box)
        edge = point_gap(boxes, scene.centres[j]) - scene.radii[j]
        crowds += np.clip(1 - edge / (CROWD_FROM * px), 0, 1)  # a led label close by another point half reads as its
        misread += near_box + (np.hypot(*(starts - scene.centres[j]).T) - own_start < NEARER_BY * px)
    alive = led & (touches == 0)  # the leader lines of places still allowed: across no other marker
    touches[alive] += segment_hits(starts[alive], ends[alive], scene.markers[others]).sum(axis=1)
    across = np.zeros(len(boxes))
    across[alive] = segment_hits(starts[alive], ends[alive], scene.bars).sum(axis=1)  # a bar: allowed, but costs
    for height in scene.lines:  # and the baseline costs more: the leader would seem to point at it
        across += LINE_IS_BARS * (led & ((starts[:, 1] - height) * (ends[:, 1] - height) < 0))

    offset = mids - centre
    toward = -1.0 if centre[0] > (frame[0] + frame[2]) / 2 else 1.0  # the side with room for the text
    direction = offset / np.maximum(np.hypot(*offset.T), 1e-9)[:, None]
    side = SIDE * px * ((1 - toward * direction[:, 0]) / 2 + np.abs(direction[:, 1]) / 2)
    askew = ALIGN * np.minimum(np.abs(offset[:, 0]), np.abs(offset[:, 1]))
    front = overlaps(boxes, scene.front).any(axis=1)
    extra = MISREAD * np.minimum(misread, 2) + CROWDS * crowds * led + CROSSES_BAR * across + CROSSES_FRONT * front
    cost = gap + side + askew + px * extra
    return Places(boxes, mids, starts, ends, led, cost, touches, front)
