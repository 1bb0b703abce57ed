"""Point labels placed clear of the baseline line, the markers and each other.

A label written at a fixed offset from its point is struck through by the majority baseline whenever the
point sits on it (a backbone that learned nothing), and two points a few pixels apart print their names on
top of each other. Each label here tries a short list of positions around its marker (right, left, the
diagonals, above, below, then the same on three rings further out) and takes the first that hits nothing, or
else the one that costs least: crossing the baseline costs most, then leaving the axes, then covering a
placed label, then sitting nearer another point's marker than its own (it would read as that point's), then
covering another marker, then each ring further out, then an error bar or the front's line. In a tight
cluster (the leading rows of a leaderboard often sit within a few pixels) only the outer rings may be free;
a label put that far out gets a thin leader line back to its point.

Positions are measured in display pixels with the figure's renderer, so the figure's layout must be final
before labels are placed (:func:`place_labels` freezes it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Annotation
from matplotlib.transforms import Bbox

# The cost of a candidate position per thing it covers: the baseline line must never be struck through.
CROSSES_LINE, OUTSIDE_AXES, COVERS_LABEL, COVERS_MARKER, COVERS_BAR = 10_000, 1_000, 100, 30, 10
PER_RING = 15  # each ring further out: a label near its point over a thin bar reads better than a far one
MISREAD = 60  # a label without a leader line nearer another point's marker than its own reads as that point's
AIR = 3.0  # points between a marker's edge and its label
FURTHER = 12.0  # points added to the gap for each further ring of candidates
RINGS = (0.0, FURTHER, 2 * FURTHER, 3 * FURTHER)  # each ring tries every position before the next
LEADER_FROM = 2 * FURTHER  # a label on a ring this much further out than the first gets a leader line
LEADER = {"arrowstyle": "-", "color": "0.45", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 2}
LINE_AIR = 1.5  # pixels kept between a label and a line (half the dashed line's width, and some)


@dataclass(frozen=True)
class Candidate:
    """Where a label goes relative to its point: an offset in units of the gap, and the text's alignment."""

    dx: float
    dy: float
    ha: str
    va: str


RIGHT, LEFT = Candidate(1, 0, "left", "center"), Candidate(-1, 0, "right", "center")
AROUND = (
    Candidate(0.7, 0.7, "left", "bottom"),
    Candidate(0.7, -0.7, "left", "top"),
    Candidate(-0.7, 0.7, "right", "bottom"),
    Candidate(-0.7, -0.7, "right", "top"),
    Candidate(0, 1, "center", "bottom"),
    Candidate(0, -1, "center", "top"),
)


def place_labels(
    ax,
    labels: list[str],
    x: np.ndarray,
    y: np.ndarray,
    areas: np.ndarray,
    lines_y: list[float],
    bars: list[tuple[float, float, float, float]] = (),
    fontsize: float = 8,
) -> list[Annotation]:
    """Annotate each point (data ``x``, ``y``; marker area ``areas`` in pt^2) avoiding the horizontal lines at
    data heights ``lines_y`` and the error ``bars`` (data ``(x0, x1, y0, y1)``, covered as a label would be);
    returns the annotations in point order.

    Freezes the figure's layout first (a constrained layout would move the axes after the labels were
    measured): axes, legends and captions must all be in place before this is called.
    """
    fig = ax.get_figure(root=True)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)  # a renderer to measure text with; PNG and SVG are saved the same way
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    centres = ax.transData.transform(np.column_stack([x, y]))
    radii = np.sqrt(areas) / 2 * fig.dpi / 72  # ``s`` is the squared diameter in points
    markers = [Bbox.from_extents(cx - r, cy - r, cx + r, cy + r) for (cx, cy), r in zip(centres, radii, strict=True)]
    lines = [ax.transData.transform((1.0, h))[1] for h in lines_y]
    drawn = [Bbox(ax.transData.transform([(x0, y0), (x1, y1)])).padded(LINE_AIR) for x0, x1, y0, y1 in bars]
    middle = (frame.x0 + frame.x1) / 2
    placed: list[Annotation] = []
    taken: list[Bbox] = []  # the placed labels' text boxes (an annotation's own extent includes its leader line)
    for i, label in enumerate(labels):
        gap = np.sqrt(areas[i]) / 2 + AIR
        first = (RIGHT, LEFT) if len(x) == 1 or centres[i][0] <= middle else (LEFT, RIGHT)
        options = [(c, k, ring) for k, ring in enumerate(RINGS) for c in (*first, *AROUND)]
        others = [m for j, m in enumerate(markers) if j != i]
        note = ax.annotate(label, (x[i], y[i]), xytext=(0, 0), textcoords="offset points", fontsize=fontsize)
        best = None
        for candidate, k, ring in options:
            distance = gap + ring
            note.set_position((candidate.dx * distance, candidate.dy * distance))
            note.set_ha(candidate.ha)
            note.set_va(candidate.va)
            box = note.get_window_extent(renderer)
            cost = PER_RING * k + _cost(box, frame, lines, taken, drawn, others)
            if ring < LEADER_FROM and others and min(_gap(box, m) for m in others) < _gap(box, markers[i]):
                cost += MISREAD
            if best is None or cost < best[0]:
                best = (cost, candidate, ring, box)
            if cost == 0:
                break
        _, candidate, ring, box = best
        taken.append(box)
        note.remove()  # drawn anew: a leader line can only be given when an annotation is made
        leader = {"arrowprops": LEADER} if ring >= LEADER_FROM else {}
        xytext = (candidate.dx * (gap + ring), candidate.dy * (gap + ring))
        note = ax.annotate(
            label,
            (x[i], y[i]),
            xytext=xytext,
            textcoords="offset points",
            fontsize=fontsize,
            ha=candidate.ha,
            va=candidate.va,
            **leader,
        )
        placed.append(note)
    return placed


def step_segments(xs: np.ndarray, ys: np.ndarray, post: bool) -> list[tuple[float, float, float, float]]:
    """The pieces of a front drawn by ``ax.step(xs, ys)`` (``where="post"`` or ``"pre"``) as ``(x0, x1, y0, y1)``
    boxes, for :func:`place_labels` to keep labels off, as it does error bars."""
    pieces = []
    for (xa, ya), (xb, yb) in itertools.pairwise(zip(xs, ys, strict=True)):
        corner = (xb, ya) if post else (xa, yb)
        pieces += [(min(xa, corner[0]), max(xa, corner[0]), min(ya, corner[1]), max(ya, corner[1]))]
        pieces += [(min(corner[0], xb), max(corner[0], xb), min(corner[1], yb), max(corner[1], yb))]
    return pieces


def _gap(a: Bbox, b: Bbox) -> float:
    """Pixels between two boxes (0 where they overlap)."""
    return float(np.hypot(max(0.0, max(a.x0, b.x0) - min(a.x1, b.x1)), max(0.0, max(a.y0, b.y0) - min(a.y1, b.y1))))


def _cost(box: Bbox, frame: Bbox, lines: list[float], labels: list[Bbox], bars: list[Bbox], markers: list[Bbox]) -> int:
    inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    return (
        CROSSES_LINE * sum(box.y0 - LINE_AIR <= h <= box.y1 + LINE_AIR for h in lines)
        + OUTSIDE_AXES * (not inside)
        + COVERS_LABEL * sum(box.overlaps(other) for other in labels)
        + COVERS_BAR * sum(box.overlaps(bar) for bar in bars)
        + COVERS_MARKER * sum(box.overlaps(m) for m in markers)
    )
