"""Latency from a separate ``bench latency`` pass, in place of the runs' own in-run figures.

A run measures its trained model's latency when training ends, on whatever the machine is doing then: in a
sweep with several workers on a CPU, the other workers' training shares the cores, and the figure is
several times the idle one or never settles (``noisy``). Latency is a property of the architecture at an
input size on a device, not of the trained weights, so one ``bench latency`` pass on a quiet machine,
written into the same results folder (``<results-dir>/latency/``), can stand for every seed's figure. A
leaderboard takes a pass's batch-1 p50 for a row when the pass measured that backbone at the row's
resolution, precision and memory format on the device the runs name; rows without such a pass keep the
runs' own figures, and the table says which rows took which.

Records read from a results folder carry that folder's passes (:func:`passes_of`, through each record's
``path``): ``leaderboard(load_records(folder), ...)`` in Python and ``bench leaderboard --results-dir folder``
take the same passes, by the same code path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.errors import ResultsError
from bench.latency.report import RECORD_SCHEMA
from bench.runs.record import LatencyFigure, RunRecord, device_label


@dataclass(frozen=True)
class LatencyPass:
    """One batch-1 setting of a ``bench latency`` record, keyed as a leaderboard row is."""

    backbone: str
    resolution: int
    precision: str
    memory_format: str
    device: str
    figure: LatencyFigure
    ci95: tuple[float, float] | None  # of the p50, ms per image
    created_utc: str
    path: Path

    @property
    def key(self) -> tuple[str, int, str, str, str]:
        return (self.backbone, self.resolution, self.precision, self.memory_format, self.device)


def load_latency_passes(results_dir: Path) -> list[LatencyPass]:
    """Every batch-1 figure of the ``bench latency`` records under ``results_dir/latency/`` (none: [])."""
    passes = []
    for path in sorted((Path(results_dir) / "latency").glob("latency-*.json")):
        try:
            payload = json.loads(path.read_text())
            if payload.get("schema") != RECORD_SCHEMA:
                raise ValueError(f"schema {payload.get('schema')!r}, expected {RECORD_SCHEMA!r}")
            passes += [_pass(r, payload["created_utc"], path) for r in payload["records"] if _batch1(r)]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ResultsError(f"{path}: not a readable bench latency record ({exc})") from None
    return passes


def passes_of(records: Iterable[RunRecord]) -> list[LatencyPass]:
    """The passes of the results folders ``records`` were read from: the folder holding the ``runs/`` folder
    their files are under (:func:`bench.runs.record.record_path`). Records built in memory have none."""
    folders = dict.fromkeys(folder for r in records if (folder := _results_dir(r.path)) is not None)
    return [p for folder in folders for p in load_latency_passes(folder)]


def _results_dir(record_file: Path | None) -> Path | None:
    """The folder above the nearest ``runs/`` a record's file is under; None for a record not read from a file."""
    if record_file is None:
        return None
    return next((folder.parent for folder in record_file.parents if folder.name == "runs"), None)


def _batch1(record: dict) -> bool:
    return record.get("batch_size") == 1 and not record.get("skipped") and record.get("ms_per_image_p50") is not None


def _pass(record: dict, created_utc: str, path: Path) -> LatencyPass:
    ci = record.get("ms_per_batch_p50_ci95")
    device = device_label(record["fingerprint"])
    return LatencyPass(
        backbone=record["backbone"],
        resolution=int(record["resolution"]),
        precision=record["precision"],
        memory_format=record["memory_format"],
        device=device,
        figure=LatencyFigure(
            ms_p50=record["ms_per_image_p50"],
            throughput=record.get("throughput_img_s"),
            noisy=bool(record.get("noisy")),
            noisy_reason=record.get("noisy_reason"),
            device=device,
        ),
        ci95=(float(ci[0]), float(ci[1])) if ci else None,
        created_utc=created_utc,
        path=path,
    )


def pass_for(runs: Sequence[RunRecord], passes: Sequence[LatencyPass]) -> LatencyPass | None:
    """The newest settled pass that measured what ``runs`` (one experiment's finished runs) measured.

    The key is the runs' own batch-1 setting (backbone, the resolution the model saw, precision, memory
    format, device), so a GPU pass never stands for CPU runs, nor a 224 px pass for 32 px ones; runs that
    did not measure latency at all have no setting to match and keep no latency.
    """
    wanted = {key for r in runs if (key := _run_key(r)) is not None}
    found = [p for p in passes if p.key in wanted and not p.figure.noisy]
    return max(found, key=lambda p: p.created_utc, default=None)


def _run_key(record: RunRecord) -> tuple[str, int, str, str, str] | None:
    b1 = next((lat for lat in record.latency if lat.batch_size == 1), None)
    if b1 is None or b1.resolution is None:
        return None
    device = device_label(b1.fingerprint or record.environment.device)
    return (record.spec.backbone, b1.resolution, b1.precision, b1.memory_format, device)
