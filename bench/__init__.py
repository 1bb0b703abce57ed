"""backbone-bench from Python: the few calls a script or notebook needs, the same code paths as ``bench``.

``import bench`` stays cheap (no torch, timm or pandas until a call needs them), so a script that only
scores its own predictions, or a command-line mistake, does not wait for them.

- :func:`run_sweep`: train and evaluate a sweep (a file, or backbones x datasets), skipping finished runs;
  returns the runs' records (:class:`bench.runs.record.RunRecord`).
- :func:`load_records`: every record under a results folder (default `my-results`, as the commands; the
  published records are under `results`). Each record knows the file it was read from, and so its folder.
- :func:`leaderboard`: one dataset's table (a ``pandas.DataFrame``) from records, the very table
  ``bench leaderboard --results-dir FOLDER`` prints for ``leaderboard(load_records(FOLDER), dataset)``: both
  take the ``bench latency`` passes stored in the records' folder (``FOLDER/latency/``) for the latency
  column and the Pareto marks, by one code path (``passes=()`` keeps the runs' own figures).
- :func:`load_model`: the model a run kept (a record, or its JSON path): the timm model with its head, eval mode.
- :func:`measure_latency`: ``bench latency``'s measurement of any ``nn.Module``.
- :func:`export`: every record as one row of a table (CSV, Parquet), and as an MLflow run
  (:class:`bench.reports.export.Exported`).
- :func:`evaluate`: external predictions scored with a run's metrics and bootstrap CIs
  (:class:`bench.evaluation.external.Evaluation`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.paths import WORKING_RESULTS

if TYPE_CHECKING:
    from torch import nn

    from bench.latency.timing import LatencyResult
    from bench.runs.record import RunRecord

__all__ = [
    "__version__", "evaluate", "export", "leaderboard", "load_model", "load_records", "measure_latency", "run_sweep",
]  # fmt: skip

_LAZY = {
    "evaluate": "bench.evaluation.external",
    "export": "bench.reports.export",
    "leaderboard": "bench.reports.leaderboard",
    "load_model": "bench.runs.kept",
}


def __getattr__(name: str) -> Any:
    """The public functions that are the library's own, imported on first use."""
    if name == "__version__":
        from bench.environment.software import versions

        return versions()["backbone-bench"]
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, "__version__"])


def load_records(results_dir: str | Path = WORKING_RESULTS) -> list[RunRecord]:
    """Every run record under ``results_dir/runs`` (unreadable files are skipped with a warning).

    Each record's ``path`` is its file, so :func:`leaderboard` finds the folder's ``bench latency`` passes from
    the records alone, as ``bench leaderboard --results-dir results_dir`` does."""
    from bench.runs.record import load_records as load

    return load(Path(results_dir))


def run_sweep(
    sweep: str | Path | None = None,
    *,
    backbones: Sequence[str] = (),
    datasets: Sequence[str] = (),
    protocol: str = "scratch",
    seeds: Sequence[int] = (0,),
    resolution: int = 28,
    epochs: int | tuple[int, ...] | None = None,
    results_dir: str | Path = WORKING_RESULTS,
    device: str = "auto",
    keep_weights: bool = True,
    retry_failed: bool = False,
) -> list[RunRecord]:
    """Run ``sweep`` (a TOML file or a name under ``sweeps/``) or the ad-hoc ``backbones`` x ``datasets``, as
    ``bench run`` does (checked whole first; finished runs skipped, interrupted ones resumed), one run after
    another on ``device``; returns the record of every run of the sweep, finished before or now.

    ``backbones``, ``datasets`` and ``seeds`` are lists (or tuples): ``backbones=["resnet18"]``. A bare string
    or number is refused with a :class:`~bench.errors.ConfigError` saying so, never read letter by letter."""
    from bench.runs.execute import execute
    from bench.runs.plan import ExecutorRequest, SweepRequest, plan_sweep

    request = SweepRequest(
        sweep=None if sweep is None else str(sweep),
        backbones=_listed(backbones, "backbones"),
        datasets=_listed(datasets, "datasets"),
        protocol=protocol,
        seeds=_listed(seeds, "seeds"),
        resolution=resolution,
        epochs=epochs,
        keep_weights=keep_weights,
    )
    plan = plan_sweep(request, Path(results_dir), ExecutorRequest(device=device, workers=1), retry_failed)
    return execute(plan)


def _listed(values: Sequence[Any], name: str) -> tuple[Any, ...]:
    """``values`` as a tuple; a bare string (``"resnet18"`` would be read as r, e, s, ...) or a lone number is a
    one-line ConfigError naming the argument and how to write it."""
    from bench.errors import ConfigError

    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        one = repr(values) if isinstance(values, int) == (name == "seeds") else "..."  # a name, or a seed
        raise ConfigError(f"{name} takes a list, got {type(values).__name__} {values!r}: write {name}=[{one}]")
    return tuple(values)


def measure_latency(
    model: nn.Module,
    resolution: int = 224,
    *,
    batch_sizes: Sequence[int] = (1,),
    precisions: Sequence[str] = ("fp32",),
    device: str = "auto",
    channels_last: bool = False,
    time_budget_s: float = 10.0,
) -> list[LatencyResult]:
    """Inference latency of ``model`` on square RGB inputs of ``resolution`` px, as ``bench latency`` measures it:
    one result per (precision, batch size), p50/p90/p99 per batch and per image, throughput, device fingerprint."""
    from bench.latency.measure import measure_latency as measure
    from bench.latency.timing import LatencyConfig

    config = LatencyConfig(
        batch_sizes=tuple(batch_sizes),
        precisions=tuple(precisions),
        channels_last=channels_last,
        time_budget_s=time_budget_s,
        device=device,
    )
    return measure(model, (3, resolution, resolution), config)
