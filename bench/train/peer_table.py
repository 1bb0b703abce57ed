"""The tables of ``bench profile --peers`` (:mod:`bench.train.peers`): every loop's speed, and issue 30's targets.

The targets are printed, never asserted: the harness's step in its ``auto`` engine at least as fast as timm's
``train.py`` with its best CPU flags for every backbone, 1.8x its defaults, and 1.8x the harness's own fp32 NCHW
step for ResNet-18, DenseNet-121 and EfficientNet-B0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import timm
from rich.table import Table

from bench.table_columns import Keep, add_column
from bench.train.peer_timm import script_digest
from bench.train.peers import LOOPS, PeerSpeed

TARGETS: tuple[tuple[str, float | None, tuple[str, ...] | None], ...] = (
    ("timm-best", 1.0, None),
    ("timm-best-adam", None, None),
    ("timm-default", 1.8, None),
    ("harness-fp32", 1.8, ("resnet18", "densenet121", "efficientnet_b0")),
)
"""Issue 30's targets for ``harness-auto``: (the loop it is compared with, at least x faster (None: shown, no
target), for which backbones (None: every one)). ``timm-best-adam`` says how much of a miss against ``timm-best``
is the optimiser (the protocols' Adam against timm's SGD) rather than the engine."""

LOOP_NOTES = {
    "bare-fp32": "model(x), cross-entropy, backward, Adam on a pre-made float batch",
    "medmnist": "MedMNIST v2's train(): its DataLoader (PIL, ToTensor, Normalize; no workers) and step, Adam",
    "timm-default": "timm train.py at its defaults (SGD, label smoothing 0.1, fp32 NCHW), step without its loader",
    "timm-best": "the same with --channels-last --amp --amp-dtype bfloat16",
    "timm-best-adam": "timm-best with the harness's optimiser (--opt adam --weight-decay 0 --lr 1e-3) instead of SGD",
    "harness-auto": "bench's train_step (normalise, augment, Adam, schedule) in the engine `bench run` picks",
    "harness-fp32": "bench's train_step in fp32 NCHW, the engine of every published CPU record",
}


def peer_table(rows: Sequence[PeerSpeed], script: Path | None = None) -> Table:
    """One row per loop: its step, images/s, and how many times faster it is than the bare loop and timm's best."""
    table = Table(
        title="training step against the peers (interleaved rounds; x: images/s over the other loop's, same round)",
        caption=caption(rows, script),
        header_style="bold",
    )
    columns = {
        "backbone": Keep.ANSWER, "res": Keep.DETAIL, "loop": Keep.ANSWER, "engine": Keep.FIGURE,
        "ms/step": Keep.DETAIL, "img/s": Keep.FIGURE, "x bare-fp32": Keep.ANSWER, "bare 95% CI": Keep.DETAIL,
        "x timm-best": Keep.ANSWER, "timm-best 95% CI": Keep.DETAIL,
    }  # fmt: skip
    for header, keep in columns.items():
        add_column(table, header, keep, justify="left" if header in ("backbone", "loop", "engine") else "right")
    for r in rows:
        table.add_row(
            r.backbone,
            str(r.resolution),
            r.loop,
            r.engine,
            f"{r.step_ms:.1f}",
            f"{r.images_per_s:.0f}",
            *_speedup(r, "bare-fp32"),
            *_speedup(r, "timm-best"),
        )
    return table


def target_table(rows: Sequence[PeerSpeed]) -> Table:
    """Per backbone, the harness's ``auto`` step against each target's loop: x faster, the target, met or not."""
    table = Table(title="issue 30's targets for harness-auto (printed, not asserted)", header_style="bold")
    add_column(table, "backbone", Keep.ANSWER, justify="left")
    add_column(table, "auto engine", Keep.FIGURE, justify="left")
    for other, _, _ in TARGETS:
        add_column(table, f"x {other}", Keep.ANSWER, justify="right")
    add_column(table, "unmet", Keep.ANSWER, justify="left")
    for r in rows:
        if r.loop != "harness-auto":
            continue
        cells, unmet = [], []
        for other, goal, only in TARGETS:
            if other not in r.speedup:
                cells.append("-")
                continue
            value = r.speedup[other]
            applies = goal is not None and (only is None or r.backbone in only)
            cells.append(f"{value:.2f} (>= {goal:g})" if applies else f"{value:.2f}")
            if applies and value < goal:
                unmet.append(other)
        table.add_row(f"{r.backbone} {r.resolution} px", r.engine, *cells, ", ".join(unmet) or "none")
    return table


def peer_frame(rows: Sequence[PeerSpeed], script: Path | None = None) -> pd.DataFrame:
    """The rows as numbers, for csv and json: every ratio to every other loop, with its interval."""
    records = []
    for r in rows:
        record = {
            "backbone": r.backbone, "resolution": r.resolution, "batch_size": r.batch_size, "loop": r.loop,
            "engine": r.engine, "note": r.note, "step_ms": r.step_ms, "data_ms": r.data_ms,
            "images_per_s": r.images_per_s, "rounds": r.rounds,
        }  # fmt: skip
        for other in LOOPS:
            if other in r.speedup:
                low, high = r.speedup_ci95[other]
                record |= {f"x_{other}": r.speedup[other], f"x_{other}_ci_low": low, f"x_{other}_ci_high": high}
        fp = r.fingerprint
        record |= {k: fp.get(k) for k in ("cpu_model", "torch_threads", "torch_version", "load_avg_1m")}
        record |= {"timm_version": timm.__version__, "timm_script_sha256": script_digest(script) if script else None}
        records.append(record)
    return pd.DataFrame(records)


def caption(rows: Sequence[PeerSpeed], script: Path | None = None) -> str:
    if not rows:
        return ""
    fp = rows[0].fingerprint
    loads = ", ".join(
        f"{r.backbone} {r.fingerprint['load_avg_1m']:.1f}"
        for r in rows
        if r.loop == rows[0].loop and r.fingerprint.get("load_avg_1m") is not None
    )
    autos = "; ".join(f"{r.backbone}: {r.engine} ({r.note})" for r in rows if r.loop == "harness-auto")
    timm_script = f", train.py sha256 {script_digest(script)}" if script else ""
    shown = dict.fromkeys(r.loop for r in rows)
    return (
        f"{fp.get('cpu_model')}, {fp.get('torch_threads')} torch threads, torch {fp.get('torch_version')}, "
        f"timm {timm.__version__}{timm_script}. Medians over {rows[0].rounds} rounds. Load average (1 min) at "
        f"each backbone's start: {loads or 'unknown'}. Only the ratios are meaningful: images/s depend on the "
        f"machine and its load. {autos + '. ' if autos else ''}"
        + " ".join(f"{loop}: {LOOP_NOTES[loop]}." for loop in shown)
    )


def _speedup(r: PeerSpeed, other: str) -> tuple[str, str]:
    if other not in r.speedup:
        return "-", "-"
    low, high = r.speedup_ci95[other]
    return f"{r.speedup[other]:.2f}", f"{low:.2f}-{high:.2f}"
