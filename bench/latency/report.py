"""Latency results for people: the rich table of ``bench latency``, and the JSON + Markdown records it writes.

The Markdown is built from the stored dicts alone, so ``bench check-readme`` can re-derive a README table
from a committed JSON without torch; the table and the Markdown share their cells.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from rich.table import Table

from bench.files import atomic_write_bytes, write_json
from bench.latency.timing import LatencyResult
from bench.table_columns import Keep, add_column

RECORD_SCHEMA = "backbone-bench/latency/v1"


LATENCY_COLUMNS = (  # header, what a narrow terminal keeps, right-justified
    ("Backbone", Keep.ANSWER, False),
    ("Res", Keep.FIGURE, False),
    ("Batch", Keep.ANSWER, False),
    ("p50 ms/batch", Keep.ANSWER, True),
    ("p50 ms/image", Keep.ANSWER, True),
    ("p90 ms/batch", Keep.FIGURE, True),
    ("p99 ms/batch", Keep.FIGURE, True),
    ("img/s", Keep.FIGURE, True),
    ("CV", Keep.FIGURE, True),
    ("Iters", Keep.DETAIL, True),
    ("Peak mem", Keep.DETAIL, True),
    ("Precision", Keep.FIGURE, False),
    ("Format", Keep.FIGURE, False),
    ("Device", Keep.DETAIL, False),
    ("Notes", Keep.ANSWER, False),  # "noisy: ...": whether the figure can be trusted
)


def latency_table(results: Sequence[LatencyResult]) -> Table:
    """A rich table; every latency header says whether it is per batch or per image.

    A narrow terminal keeps the setting's name (backbone, batch), its p50s and the notes (a noisy figure, an OOM
    back-off), which wrap at words there, and drops the conditions and the other figures first.
    """
    table = Table(title="Inference latency", caption=_caption(results))
    for header, keep, right in LATENCY_COLUMNS:
        add_column(table, header, keep, wraps=header == "Notes", justify="right" if right else "left")
    for r in results:
        table.add_row(
            r.backbone or "-",
            str(r.resolution or "x".join(map(str, r.input_size[1:]))),
            _batch_cell(r),
            _ms(r.ms_per_batch_p50),
            _ms(r.ms_per_image_p50),
            _ms(r.ms_per_batch_p90),
            _ms(r.ms_per_batch_p99),
            f"{r.throughput_img_s:,.0f}" if r.throughput_img_s is not None else "-",
            f"{r.cv:.3f}" if r.cv is not None else "-",
            str(r.n_iters),
            _mib(r.peak_memory_bytes),
            r.precision,
            r.memory_format + (" +compile" if r.compiled else ""),
            r.device_kind,
            _notes(r),
        )
    return table


def _caption(results: Sequence[LatencyResult]) -> str:
    where = ""
    if results:
        fp = results[0].fingerprint
        device = fp.get("gpu_name") if results[0].device_kind == "cuda" else fp.get("cpu_model")
        load = fp.get("load_avg_1m")
        where = f"{device}, {fp.get('torch_threads')} torch threads, torch {fp.get('torch_version')}"
        where += f", load {load:.1f} at start. " if load is not None else ". "
    return where + "ms/batch: one forward pass of the whole batch; img/s: batch / mean ms/batch."


def _batch_cell(r: LatencyResult) -> str:
    if r.batch_size_run is None or r.batch_size_run == r.batch_size:
        return str(r.batch_size)
    return f"{r.batch_size_run} (asked {r.batch_size})"


def _notes(r: LatencyResult) -> str:
    notes = []
    if r.skipped:
        notes.append(f"skipped: {r.skipped}")
    if r.oom_backoff:
        notes.append(f"OOM at {', '.join(map(str, r.oom_backoff))}")
    if r.noisy:
        notes.append(f"noisy: {r.noisy_reason}")
    if r.compiled and r.first_call_ms is not None:
        notes.append(f"first call (compile) {r.first_call_ms / 1000:.1f} s")
    return "; ".join(notes)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _mib(value: int | None) -> str:
    return f"{value / 2**20:.1f} MiB" if value is not None else "-"


def save_latency_records(results: Sequence[LatencyResult], out_dir: Path) -> Path:
    """Write ``out_dir/latency/latency-<UTC time>-<id>.json``, one file per invocation, atomically.

    ``out_dir`` is the results root (``results/``). The random suffix keeps two invocations in the same
    microsecond apart; :func:`bench.runs.record.write_json` makes the file appear whole or not at all.
    """
    now = datetime.now(UTC)
    path = Path(out_dir) / "latency" / f"latency-{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.json"
    payload = {
        "schema": RECORD_SCHEMA,
        "created_utc": now.isoformat(),
        "records": [r.to_dict() for r in results],
    }
    write_json(path, payload)
    atomic_write_bytes(path.with_suffix(".md"), latency_markdown(payload["records"]).encode())
    return path


def latency_markdown(records: Sequence[dict]) -> str:
    """The Markdown summary written beside a latency JSON (and quoted in the README): one row per setting.

    Built from the stored dicts, so ``bench check-readme`` can re-derive it from the JSON alone; the cells
    are :func:`latency_table`'s.
    """
    results = [LatencyResult(**r) for r in records]
    rows = [
        {
            "backbone": r.backbone,
            "res": r.resolution,
            "batch": _batch_cell(r),
            "precision": r.precision,
            "format": r.memory_format + (" +compile" if r.compiled else ""),
            "p50 ms/batch": _ms(r.ms_per_batch_p50),
            "p50 ms/image": _ms(r.ms_per_image_p50),
            "img/s": f"{r.throughput_img_s:,.0f}" if r.throughput_img_s is not None else "-",
            "CV": f"{r.cv:.3f}" if r.cv is not None else "-",
            "peak mem": _mib(r.peak_memory_bytes),
            "notes": _notes(r),
        }
        for r in results
    ]
    fp = records[0]["fingerprint"] if records else {}
    if fp.get("device_kind") == "cuda":
        device = (
            f"{fp.get('gpu_name')} (driver {fp.get('driver_version')}, CUDA {fp.get('cuda_version')}, "
            f"cuDNN {fp.get('cudnn_version')}, power limit {fp.get('power_limit_w')} W)"
        )
    else:
        device = f"{fp.get('cpu_model')}, {fp.get('torch_threads')} threads"
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    return (
        f"{table}\n\n{device}, torch {fp.get('torch_version')}. ms/batch: one forward pass of the whole batch; "
        "ms/image = ms/batch / batch; img/s: batch / mean ms/batch.\n"
    )
