"""Choosing one place per label among its candidates (:mod:`bench.reports.placement` makes them), and the box
and segment geometry both modules measure with, in display pixels.

Labels are placed most constrained first (fewest allowed places left). Then each label moves to its cheapest
allowed place given where the others are, and a label whose cheaper place is taken gets it where moving the
labels in its way elsewhere makes the whole placement better. When a label is left with no allowed place although
it had some, the placement starts again with that label first; the best attempt is kept (fewest labels touching
something, then the least total cost). A label with no allowed place at all takes the one touching least.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

IMPROVE_ROUNDS = 6  # rounds of moving each label to its best place given the others, at most
UNBLOCK_ROUNDS, UNBLOCK_TRIES = 4, 4  # rounds of freeing a label's cheaper place, places tried per label
TOUCHING = 1e7  # a place touching something ranks after every allowed place, fewest things touched first


@dataclass(frozen=True)
class Scene:
    """What labels keep clear of, in display pixels."""

    centres: np.ndarray  # (N, 2) the points
    radii: np.ndarray  # (N,) their markers' (or rings') radii
    fixed: np.ndarray  # (M, 4) x0, y0, x1, y1: markers and error-bar pieces, padded with half the air
    bars: np.ndarray  # (B, 4) the error-bar pieces alone, as drawn
    lines: list[float]  # heights of horizontal lines across the axes
    frame: np.ndarray  # (4,) the axes
    front: np.ndarray  # (F, 4) the front's pieces, padded
    px: float  # pixels per point

    @property
    def markers(self) -> np.ndarray:
        """(N, 4): each marker's box."""
        return np.column_stack([self.centres - self.radii[:, None], self.centres + self.radii[:, None]])


@dataclass(frozen=True)
class Places:
    """One label's candidate places: text boxes and what each costs and touches."""

    boxes: np.ndarray  # (K, 4)
    mids: np.ndarray  # (K, 2) the boxes' centres
    starts: np.ndarray  # (K, 2) the box's spot nearest its point: where a leader line starts
    ends: np.ndarray  # (K, 2) where that leader line ends: the marker's edge
    led: np.ndarray  # (K,) bool: far enough out for a leader line
    cost: np.ndarray  # (K,) distance, side and alignment, in pixels
    touches: np.ndarray  # (K,) int: things it touches that never move (bars, markers, lines, frame, neighbours)
    front: np.ndarray  # (K,) bool: crosses the front's line


def overlaps(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(K, M): whether box k and box m share any point."""
    b, o = boxes[:, None, :], others[None, :, :]
    return (b[..., 0] <= o[..., 2]) & (o[..., 0] <= b[..., 2]) & (b[..., 1] <= o[..., 3]) & (o[..., 1] <= b[..., 3])


def point_gap(boxes: np.ndarray, point: np.ndarray) -> np.ndarray:
    """(K,): pixels from each box to ``point`` (0 inside)."""
    dx = np.maximum(np.maximum(boxes[:, 0] - point[0], point[0] - boxes[:, 2]), 0)
    dy = np.maximum(np.maximum(boxes[:, 1] - point[1], point[1] - boxes[:, 3]), 0)
    return np.hypot(dx, dy)


def segment_hits(starts: np.ndarray, end: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(K, M): whether the segment from ``starts[k]`` to ``end`` (one point, or one per k) passes through box m
    (the slab test: the stretches of the segment within the box's x and y ranges overlap)."""
    start = starts[:, None, :]
    step = (np.broadcast_to(end, starts.shape) - starts)[:, None, :]
    low, high = boxes[None, :, :2], boxes[None, :, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = (low - start) / step, (high - start) / step
    flat = step == 0  # parallel to that axis: inside its range all along, or never
    within = (low <= start) & (start <= high)
    enter = np.where(flat, np.where(within, -np.inf, np.inf), np.minimum(a, b))
    leave = np.where(flat, np.where(within, np.inf, -np.inf), np.maximum(a, b))
    return np.maximum(enter.max(axis=-1), 0.0) <= np.minimum(leave.min(axis=-1), 1.0)


def crossing(starts: np.ndarray, end: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K,): whether the segment from ``starts[k]`` to ``end`` (one point, or one per k) crosses ``a``-``b``."""

    def turn(p, q, r):  # the sign of the turn p -> q -> r
        (px, py), (qx, qy), (rx, ry) = np.moveaxis(p, -1, 0), np.moveaxis(q, -1, 0), np.moveaxis(r, -1, 0)
        return np.sign((qx - px) * (ry - py) - (qy - py) * (rx - px))

    end = np.broadcast_to(end, starts.shape)
    return (turn(starts, end, a) * turn(starts, end, b) < 0) & (turn(a, b, starts) * turn(a, b, end) < 0)


def choose(scene: Scene, places: list[Places]) -> list[int]:
    """Each label's place: most constrained first, started again with a label that found none put first, then
    each label moved to its best place given the others' until none moves."""
    best: tuple[tuple[int, float], list[int]] | None = None
    first: list[int] = []
    for _ in range(len(places) + 1):
        chosen, stuck = _greedy(scene, places, first)
        chosen = _unblock(scene, places, _improve(scene, places, chosen, range(len(places))))
        score = _score(scene, places, chosen)
        if best is None or score < best[0]:
            best = (score, chosen)
        if stuck is None or stuck in first:
            break
        first = [stuck, *first]
    assert best is not None
    return best[1]


def _conflicts(scene: Scene, places: list[Places], i: int, live: np.ndarray, j: int, kj: int) -> np.ndarray:
    """For label ``i``'s places ``live``: how many ways each clashes with label ``j`` at its place ``kj`` (the
    boxes overlap, either leader line runs through the other box, or the two leader lines cross)."""
    p, q = places[i], places[j]
    box = q.boxes[kj] + [-1, -1, 1, 1]  # a pixel of air between labels
    clashes = overlaps(p.boxes[live], box[None])[:, 0].astype(int)
    if q.led[kj]:
        clashes += segment_hits(q.starts[[kj]], q.ends[kj], p.boxes[live])[0]
    led = live[p.led[live]]
    clashes[p.led[live]] += segment_hits(p.starts[led], p.ends[led], box[None])[:, 0]
    if q.led[kj]:
        clashes[p.led[live]] += crossing(p.starts[led], p.ends[led], q.starts[kj], q.ends[kj])
    return clashes


def _greedy(scene: Scene, places: list[Places], first: list[int]) -> tuple[list[int], int | None]:
    """One placement, ``first`` placed first and then the most constrained label each time. Returns the chosen
    places and the first label left with no allowed place where it had some before the others were placed."""
    n = len(places)
    touches = [p.touches.copy() for p in places]  # grows with the labels and leader lines placed
    chosen: dict[int, int] = {}
    stuck = None
    while len(chosen) < n:
        waiting = [i for i in range(n) if i not in chosen]
        forced = [i for i in first if i not in chosen]
        i = forced[0] if forced else min(waiting, key=lambda j: (_room(places[j], touches[j]), j))
        p = places[i]
        k = int(np.argmin(p.cost + TOUCHING * touches[i]))
        if touches[i][k] and stuck is None and (p.touches == 0).any():
            stuck = i
        chosen[i] = k
        for j in waiting:
            if j != i:
                live = np.flatnonzero(touches[j] == 0)  # only the allowed places can still change
                touches[j][live] += _conflicts(scene, places, j, live, i, k)
    return [chosen[i] for i in range(n)], stuck


def _improve(scene: Scene, places: list[Places], chosen: list[int], which: Iterable[int]) -> list[int]:
    """Move each label of ``which`` in turn to its cheapest allowed place given where the others are, until none
    moves."""
    chosen, which = list(chosen), list(which)
    for _ in range(IMPROVE_ROUNDS):
        moved = False
        for i in which:
            k = _best_place(scene, places, chosen, i)
            now = places[i].cost[chosen[i]] + TOUCHING * _touching(scene, places, chosen, i)
            if k is not None and places[i].cost[k] < now - 1e-9:
                chosen[i], moved = k, True
        if not moved:
            break
    return chosen


def _best_place(scene: Scene, places: list[Places], chosen: list[int], i: int) -> int | None:
    """Label ``i``'s cheapest allowed place given where the others are; None where it has none."""
    live = np.flatnonzero(places[i].touches == 0)
    for j in range(len(places)):
        if j != i and len(live):
            live = live[_conflicts(scene, places, i, live, j, chosen[j]) == 0]
    return int(live[np.argmin(places[i].cost[live])]) if len(live) else None


def _unblock(scene: Scene, places: list[Places], chosen: list[int]) -> list[int]:
    """Give a label a cheaper place taken by others' labels or leader lines, moving those to their best places
    given that, wherever the whole placement scores better for it."""
    score = _score(scene, places, chosen)
    for _ in range(UNBLOCK_ROUNDS):
        better = False
        for i in np.argsort([-places[i].cost[k] for i, k in enumerate(chosen)], kind="stable"):
            p = places[i]
            live = np.flatnonzero(p.touches == 0)
            cheaper = live[p.cost[live] < p.cost[chosen[i]] - 1e-9]
            for k in cheaper[np.argsort(p.cost[cheaper], kind="stable")][:UNBLOCK_TRIES]:
                trial = list(chosen)
                trial[i] = int(k)
                others = [j for j in range(len(places)) if j != i]
                blocking = [j for j in others if _conflicts(scene, places, i, np.array([k]), j, chosen[j])[0]]
                for j in blocking:
                    moved = _best_place(scene, places, trial, j)
                    trial[j] = moved if moved is not None else trial[j]
                trial = _improve(scene, places, trial, blocking)
                if (new := _score(scene, places, trial)) < score:
                    chosen, score, better = trial, new, True
                    break
        if not better:
            break
    return chosen


def _touching(scene: Scene, places: list[Places], chosen: list[int], i: int) -> int:
    """What label ``i`` at its chosen place touches: fixed things and the other labels where they are."""
    k = np.array([chosen[i]])
    others = sum(int(_conflicts(scene, places, i, k, j, chosen[j])[0]) for j in range(len(places)) if j != i)
    return int(places[i].touches[chosen[i]]) + others


def _score(scene: Scene, places: list[Places], chosen: list[int]) -> tuple[int, float]:
    """Labels touching something, then the total cost: the lower, the better the placement."""
    touching = sum(_touching(scene, places, chosen, i) > 0 for i in range(len(places)))
    return touching, float(sum(p.cost[k] for p, k in zip(places, chosen, strict=True)))


def _room(places: Places, touches: np.ndarray) -> int:
    """How many allowed places a label has left, off the front's line if it has any there."""
    clear = touches == 0
    return int(np.count_nonzero(clear & ~places.front) or np.count_nonzero(clear))
