"""One run, end to end: data, model, training, a single test evaluation, latency, and its record.

A run that fails for a reason the user or the data can explain (diverged loss, a bad image, a bad
config) is written as a ``failed`` record with that reason, so a sweep goes on and the leaderboard can
show it as failed rather than missing. A run its environment stopped (disk full, out of memory) is not a
result: it raises :class:`~bench.runs.unfinished.RunUnfinished` and stays to do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
import time
from pathlib import Path

import numpy as np
import torch
from timm.data import resolve_data_config
from torch import nn

from bench.data.fractions import take_train_fraction
from bench.data.identity import DataIdentity
from bench.data.loading import LoadedDataset, Split, load_dataset
from bench.environment import git_commit, versions
from bench.environment.allocator import hold_freed_memory
from bench.environment.device import device_fingerprint
from bench.errors import BenchError, DataError, ResultsError
from bench.evaluation.scores import TestScores
from bench.evaluation.values import compute_metrics
from bench.files import atomic_write_bytes
from bench.latency.measure import measure_latency
from bench.latency.timing import LatencyConfig
from bench.models.registry import create_backbone, model_stats
from bench.protocol.spec import Protocol
from bench.runs.checkpoint import RunCheckpoint
from bench.runs.evaluate_sets import run_eval_sets, score_eval_sets
from bench.runs.health import run_health
from bench.runs.identity import KEY_VERSIONS, DataContent, ExperimentIdentity
from bench.runs.kept import keep_model
from bench.runs.record import (
    BackboneSummary,
    DatasetSummary,
    Environment,
    RunRecord,
    Selection,
    WeightsSource,
    checkpoint_path,
    probs_path,
    record_path,
    save_record,
)
from bench.runs.resolve import ResolvedRun, resolve
from bench.runs.search import run_search, storage_url, study_name
from bench.runs.source import model_from_source, source_record
from bench.runs.spec import RunSpec
from bench.runs.trials import SearchSummary
from bench.runs.unfinished import ENVIRONMENT_FAILURES, RunUnfinished, reason
from bench.train.engine import EngineConfig, engine_for
from bench.train.events import ProgressFn, Stage, Started
from bench.train.loop import FitResult, fit, predict
from bench.train.pipeline import BatchPipeline

# Latency inside a training run is a quick batch-1 figure on the trained model; `bench latency`
# does the full sweep of batch sizes and precisions.
RUN_LATENCY = LatencyConfig(batch_sizes=(1,), time_budget_s=3.0, warmup_iters=5, min_iters=20, max_iters=200)


def new_record(planned: ResolvedRun, environment: Environment) -> RunRecord:
    """The one record skeleton, whoever writes the record (the runner, or a driver whose worker was lost)."""
    v = versions()
    return RunRecord(
        key=planned.key,
        status="running",
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        spec=planned.spec,
        identity=planned.identity,
        arch=planned.backbone.arch,
        effective_resolution=planned.resolution,
        versions={k: v[k] for k in KEY_VERSIONS},
        environment=environment,
    )


def environment_here(device: dict, executor: dict | None = None, platform_name: str | None = None) -> Environment:
    """What ran a run: versions, commit, and the ``device`` fingerprint (``{}`` where unknown)."""
    return Environment(versions(), git_commit(), platform_name, device, executor)


def run(
    planned: ResolvedRun | RunSpec,
    results_dir: Path,
    device: torch.device,
    progress: ProgressFn | None = None,
    engine: EngineConfig | None = None,
    *,
    executor: dict | None = None,
) -> RunRecord:
    """Run what planning resolved (a bare spec is resolved here) and write its record (``ok`` or ``failed``) once;
    returns the record.

    Raises :class:`~bench.runs.unfinished.RunUnfinished`, writing no record, when the environment stopped it.

    ``executor`` says who ran it.
    ``engine`` defaults to :func:`bench.train.engine.engine_for` the device, ``spec.precision`` and
    ``spec.memory_format`` (fp32 NCHW on the CPU unless planning measured otherwise and wrote it into the spec:
    :mod:`bench.runs.engines`); the record says what was asked (``spec.precision``, when not auto), what
    planning resolved (``spec.auto_precision``, ``spec.memory_format``) and what ran (``engine``).
    """
    planned = planned if isinstance(planned, ResolvedRun) else resolve(planned)
    if device.type == "cpu":
        hold_freed_memory()  # before the fingerprint, which says so
    environment = environment_here(device_fingerprint(device), executor, platform.platform())
    record = new_record(planned, environment)
    try:
        _train_and_evaluate(planned, record, results_dir, device, progress, engine)
        record.status = "ok"
    except ENVIRONMENT_FAILURES as err:  # checked first: a ResultsError is a BenchError too
        raise RunUnfinished(reason(err)) from err
    except BenchError as err:
        record.status = "failed"
        record.error = reason(err)
    try:
        path = save_record(record, results_dir)
    except ResultsError as err:
        raise RunUnfinished(reason(err)) from err
    RunCheckpoint(checkpoint_path(path), planned.key).remove()  # the record is final: nothing left to resume
    return record


def _train_and_evaluate(
    planned: ResolvedRun,
    record: RunRecord,
    results_dir: Path,
    device: torch.device,
    progress: ProgressFn | None,
    engine: EngineConfig | None,
) -> None:
    spec = planned.spec
    path = record_path(results_dir, spec, record.key)
    timings = record.timings_s
    protocol = planned.protocol
    resolution = planned.resolution
    tell = progress or (lambda event: None)

    tell(Stage("loading data"))
    t = time.perf_counter()
    data = load_dataset(planned.dataset, resolution, Path(spec.data_root) if spec.data_root else None)
    timings["data"] = time.perf_counter() - t
    _check_data(data, record.identity)
    _save_split(results_dir, data)  # the whole split, as its fingerprint names it
    data, subset = take_train_fraction(data, spec.train_fraction)  # validation and test stay whole
    record.dataset = _dataset_summary(data)  # class_counts["train"]: the images trained on
    if subset is not None:
        record.dataset.audit = {**record.dataset.audit, "train_subset": subset}
    precision = spec.auto_precision or spec.precision  # a CPU's measured bf16 was resolved when planned
    engine = engine or engine_for(
        device,
        _image_bytes(data),
        precision=precision,
        memory_format=spec.memory_format,
        fused=spec.fused_optimizer,
        compiled=spec.compile,
    )
    record.engine = engine
    if engine.data_on_device:
        data = _on_device(data, device)

    if protocol.search is not None:  # tuned on train/val before anything trains for this seed (bench.runs.search)
        tell(Stage("searching"))
        t = time.perf_counter()
        record.search = _search(planned, record, protocol, data, results_dir, device, engine, progress)
        protocol = record.protocol  # what trains: the chosen values in place; the identity keeps the declared space
        timings["search"] = time.perf_counter() - t

    t = time.perf_counter()
    built = _build(planned, protocol, data, results_dir, device, engine)
    model, pipeline, cfg, provenance, record.weights_source = built
    record.backbone = BackboneSummary(
        name=spec.backbone, arch=record.arch, weights=provenance, **model_stats(model, resolution)
    )
    timings["build"] = time.perf_counter() - t

    t = time.perf_counter()
    tell(Started(_total_steps(protocol, len(data.train.labels))))
    ckpt = RunCheckpoint(checkpoint_path(path), record.key)
    positive = data.entry.positive
    fitted = fit(
        model, protocol, data.train, data.val, data.classes, pipeline, spec.seed, progress, ckpt, engine, positive
    )
    timings["train"] = time.perf_counter() - t  # since the resume point, if resumed
    record.resumed_at_epoch = ckpt.resumed_at_epoch
    record.history = fitted.history
    record.selection = Selection(protocol.select_on, fitted.best_epoch, fitted.best_score, fitted.stopped_early)
    best = next(h for h in fitted.history if h.epoch == fitted.best_epoch)
    record.val = dataclasses.replace(best.val, loss=best.val_loss)
    # Did it learn, converge, keep a sane loss: from validation and the history only (bench.runs.health).
    record.health = run_health(
        record.val, record.history, protocol.select_on, fitted.best_epoch, data.classes, fitted.stopped
    )

    # The one and only look at the test split, after model selection. The selected model's validation scores
    # are saved beside the test ones: calibration (temperature scaling) is fitted on them, never on test.
    tell(Stage("evaluating"))
    t = time.perf_counter()
    val_logits = predict(model, data.val, pipeline, engine.eval_batch_size, engine.amp)
    val = TestScores.from_logits(data.val.ids, data.val.labels.cpu().numpy(), val_logits)
    logits = predict(model, data.test, pipeline, engine.eval_batch_size, engine.amp)
    scores = TestScores.from_logits(data.test.ids, data.test.labels.cpu().numpy(), logits, val)
    record.test = compute_metrics(scores.labels, scores.probs, data.classes, positive)
    scores.save(probs_path(path))
    timings["eval"] = time.perf_counter() - t
    if spec.keep_weights:  # the model just tested, before anything else touches it
        record.kept_weights = keep_model(model, record, path, planned.backbone, data, cfg)
    if run_eval_sets(spec, data.entry):
        tell(Stage("evaluation sets"))
    t = time.perf_counter()  # the declared evaluation sets (bench.runs.evaluate_sets): corrupted copies, external data
    record.eval_sets = score_eval_sets(
        spec, data, lambda split: predict(model, split, pipeline, engine.eval_batch_size, engine.amp), path
    )
    if record.eval_sets:
        timings["eval_sets"] = time.perf_counter() - t

    tell(Stage("latency"))
    t = time.perf_counter()
    config = dataclasses.replace(RUN_LATENCY, device=str(device))
    record.latency = measure_latency(model, (3, resolution, resolution), config, backbone=spec.backbone)
    timings["latency"] = time.perf_counter() - t


def _build(
    planned: ResolvedRun,
    protocol: Protocol,
    data: LoadedDataset,
    results_dir: Path,
    device: torch.device,
    engine: EngineConfig,
    seed: int | None = None,
) -> tuple[nn.Module, BatchPipeline, dict, dict, WeightsSource | None]:
    """A fresh model for ``protocol`` (initialised under ``seed``, default the run's) on ``device``, and its pipeline.

    Returns the model, the batch pipeline, timm's data config, the weights' provenance and the source run (if any).
    """
    spec = planned.spec
    seed = spec.seed if seed is None else seed
    torch.manual_seed(seed)
    np.random.seed(seed)
    source = source_record(spec, results_dir) if protocol.pretrained else None
    weights_source = None
    if source is not None:
        model, provenance, weights_source = model_from_source(planned, source, data.num_classes, protocol.drop_rate)
    else:
        model, provenance = create_backbone(
            planned.backbone, data.num_classes, protocol.pretrained, spec.weights_file, protocol.drop_rate
        )
    model.to(device, memory_format=torch.channels_last if engine.channels_last else torch.contiguous_format)
    cfg = resolve_data_config({}, model=model)
    pipeline = BatchPipeline(cfg["mean"], cfg["std"], device, engine.channels_last, engine.pin_memory)
    return model, pipeline, cfg, provenance, weights_source


def _search(
    planned: ResolvedRun,
    record: RunRecord,
    protocol: Protocol,
    data: LoadedDataset,
    results_dir: Path,
    device: torch.device,
    engine: EngineConfig,
    progress: ProgressFn | None,
) -> SearchSummary:
    """Run, join or read the study of this run's experiment; every seed of the row gets the same chosen values."""
    spec, search = planned.spec, protocol.search
    assert search is not None
    study = study_name(spec.dataset, spec.backbone, spec.protocol, record.experiment)
    url, shown = storage_url(spec.search_storage, results_dir, study)

    def train_trial(trial_protocol: Protocol, label: str, on_event: ProgressFn) -> FitResult:
        model, pipeline, *_ = _build(planned, trial_protocol, data, results_dir, device, engine, search.seed)
        steps = _total_steps(trial_protocol, len(data.train.labels))
        on_event(Started(steps, f"search {label}"))
        return fit(
            model, trial_protocol, data.train, data.val, data.classes, pipeline, search.seed,
            on_event, None, engine, data.entry.positive,
        )  # fmt: skip

    return run_search(search, protocol, study, url, shown, train_trial, progress)


def _check_data(data: LoadedDataset, identity: ExperimentIdentity) -> None:
    """The data loaded now is the data the run was planned (and keyed) with: else its record would lie."""
    now, planned = DataContent.of(DataIdentity.of(data)), identity.data
    if now != planned:
        raise DataError(
            f"dataset '{data.entry.name}' changed between planning and loading (fingerprint "
            f"{str(planned.fingerprint)[:12]} -> {str(now.fingerprint)[:12]}): plan the run again"
        )


def _total_steps(protocol, n_train: int) -> int:
    steps = -(-n_train // protocol.batch_size)
    return sum(p.epochs for p in protocol.phases) * steps


def _image_bytes(data: LoadedDataset) -> int:
    return sum(s.images.numel() * s.images.element_size() for s in (data.train, data.val, data.test))


def _on_device(data: LoadedDataset, device: torch.device) -> LoadedDataset:
    """The splits' images and labels copied to ``device`` once, so training never copies a batch."""

    def move(split: Split) -> Split:
        return Split(images=split.images.to(device), labels=split.labels.to(device), ids=split.ids)

    return dataclasses.replace(data, train=move(data.train), val=move(data.val), test=move(data.test))


def _dataset_summary(data: LoadedDataset) -> DatasetSummary:
    def counts(split) -> list[int]:
        return np.bincount(split.labels.cpu().numpy(), minlength=data.num_classes).tolist()

    return DatasetSummary(
        name=data.entry.name,
        classes=list(data.classes),
        fingerprint=data.fingerprint,
        resolution=data.resolution,
        class_counts={"train": counts(data.train), "val": counts(data.val), "test": counts(data.test)},
        audit=data.audit,
    )


def _save_split(results_dir: Path, data: LoadedDataset) -> None:
    """The split assignment, once per data fingerprint, so any run's split can be audited."""
    path = results_dir / "splits" / f"{data.entry.name}-{data.fingerprint[:12]}.csv"
    if not path.exists():
        atomic_write_bytes(path, data.split_assignment().to_csv(index=False).encode())
