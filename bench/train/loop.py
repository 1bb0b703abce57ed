"""The training loop: epochs through the protocol's phases, early stopping, model selection on validation.

It sees only the train and validation splits (:func:`fit` has no parameter through which test data
could arrive); the runner evaluates the selected model on test once, afterwards. How batches are made is
:mod:`bench.train.pipeline`; precision and memory format are :mod:`bench.train.engine`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol as Protocol_

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.backoff import halving
from bench.data.loading import Split
from bench.errors import BenchError
from bench.evaluation.scores import softmax64
from bench.evaluation.values import MetricValues, compute_metrics
from bench.precision import AmpDtype
from bench.protocol.finetune import apply_phase, set_train_mode
from bench.protocol.spec import Augment, Phase, Protocol
from bench.train.engine import Amp, EngineConfig, training_net
from bench.train.events import EpochEnded, ProgressFn, Stepped
from bench.train.history import EpochLog, check_train_loss
from bench.train.optim import optimizer_for, param_groups, scheduler_for, top_lr
from bench.train.pipeline import BatchPipeline
from bench.train.sampling import class_weights, epoch_order
from bench.train.selection import epoch_score, stopping_score
from bench.train.utilisation import GpuUtilisation


class DivergedError(BenchError):
    """The loss became NaN or infinite before any epoch was validated: the run is marked failed, the sweep goes
    on. Later, training stops instead and keeps the best epoch so far (:attr:`FitResult.stopped` says so)."""


@dataclass
class FitResult:
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = math.nan
    stopped_early: list[str] = field(default_factory=list)  # phases cut short by early stopping
    stopped: str | None = None  # why training ended before its budget otherwise (a non-finite loss)
    loss_alarm: str | None = None  # the first epoch whose training loss exploded (bench.train.history), named


@torch.inference_mode()
def predict(
    model: nn.Module, split: Split, pipeline: BatchPipeline, batch_size: int = 512, amp: AmpDtype | None = None
) -> np.ndarray:
    """float32 logits of every image of ``split`` (eval mode, no augmentation), to softmax in float64.

    Logits, since a float32 softmax saturates to 1.0 and ties confident images (:mod:`bench.evaluation.scores`).
    They stay on the device until the end; out of memory halves the batch and goes on from the failed one."""
    model.eval()
    autocast = Amp(amp, pipeline.device).autocast
    release = torch.cuda.empty_cache if pipeline.device.type == "cuda" else (lambda: None)

    def forward(start: int, size: int) -> torch.Tensor:
        with autocast():
            return model(pipeline(split.images[start : start + size])).float()

    out: list[torch.Tensor] = []
    start = 0
    while start < len(split.labels):
        logits, batch_size = halving(batch_size, partial(forward, start), (torch.OutOfMemoryError,), release)
        out.append(logits)
        start += batch_size
    return torch.cat(out).cpu().numpy()


def evaluate(
    model: nn.Module,
    split: Split,
    pipeline: BatchPipeline,
    classes: tuple[str, ...],
    weight: torch.Tensor | None,
    engine: EngineConfig,
    positive: str | None = None,
) -> tuple[float, MetricValues]:
    """Loss (class-weighted like training's) and metrics of ``model`` on ``split``: what selection looks at."""
    logits = predict(model, split, pipeline, engine.eval_batch_size, engine.amp)
    labels = split.labels.cpu()
    logp = torch.log_softmax(torch.from_numpy(logits).double(), dim=1)
    loss = F.nll_loss(logp, labels, weight=None if weight is None else weight.double().cpu()).item()
    return loss, compute_metrics(labels.numpy(), softmax64(logits), classes, positive)


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    pipeline: BatchPipeline,
    images: torch.Tensor,
    labels: torch.Tensor,
    augment: Augment | None,
    gen: torch.Generator | None,
    weight: torch.Tensor | None = None,
    amp: Amp | None = None,
    clip_norm: float | None = None,
) -> torch.Tensor:
    """One optimisation step on a uint8 batch; returns the detached loss without a host sync.

    Gradients are released before the forward pass rather than after it, so the last step's gradients
    and this step's activations are never held together (the same numbers, a lower peak). ``clip_norm``: the
    protocol's ``grad_clip_norm``.
    """
    amp = amp or Amp(None, pipeline.device)
    opt.zero_grad(set_to_none=True)
    x = pipeline(images, augment, gen)
    y = pipeline.to_device(labels)
    with amp.autocast():
        loss = F.cross_entropy(model(x), y, weight=weight)
    amp.step(loss, opt, clip_norm)
    sched.step()
    return loss.detach()


def train_one_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    pipeline: BatchPipeline,
    train: Split,
    protocol: Protocol,
    gen: torch.Generator,
    weight: torch.Tensor | None = None,
    amp: Amp | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[float, float | None]:
    """One epoch over ``train`` in a fresh order (``protocol.sampler``); returns the mean loss and mean GPU utilisation.

    The loss is summed on the device and read once at the end: the epoch's one host-device sync, so the
    time the caller measures around it is real. ``on_step`` gets each step's number, from 1, and its loss tensor.
    """
    n = len(train.labels)
    # One copy of the order per epoch, so that indexing on-device data never copies per step.
    order = epoch_order(train.labels, protocol.sampler, gen).to(train.images.device)
    total = torch.zeros((), device=pipeline.device)
    with GpuUtilisation(pipeline.device) as busy:
        for step, i in enumerate(range(0, n, protocol.batch_size)):
            idx = order[i : i + protocol.batch_size]
            images, labels = train.images[idx], train.labels[idx]
            loss = train_step(
                model, opt, sched, pipeline, images, labels, protocol.augment, gen, weight, amp, protocol.grad_clip_norm
            )
            total += loss * len(idx)
            if on_step is not None:
                on_step(step + 1, loss)
        train_loss = total.item() / n
    return train_loss, busy.mean_pct


@dataclass
class FitState:
    """Where training stands at an epoch boundary: enough to resume exactly after a crash."""

    phase_index: int = 0
    epochs_done_in_phase: int = 0  # of the phase at phase_index
    phase_finished: bool = False  # early-stopped or ran all its epochs
    epoch_no: int = 0
    best_phase_loss: float = math.inf  # the phase's best early-stopping score (lower is better; the name is old)
    bad_epochs: int = 0
    result: FitResult = field(default_factory=FitResult)

    def begin_phase(self, index: int) -> None:
        self.phase_index, self.epochs_done_in_phase, self.phase_finished = index, 0, False
        self.best_phase_loss, self.bad_epochs = math.inf, 0

    def end_epoch(self, score: float, phase: Phase, patience: int | None) -> bool:
        """Count the epoch against early stopping (its ``stopping_score`` in the phase); True: stop the phase now."""
        if score < self.best_phase_loss:
            self.best_phase_loss, self.bad_epochs = score, 0
        else:
            self.bad_epochs += 1
        self.epochs_done_in_phase += 1
        stop = patience is not None and self.bad_epochs >= patience and self.epochs_done_in_phase < phase.epochs
        if stop:
            self.result.stopped_early.append(phase.name)
        self.phase_finished = stop or self.epochs_done_in_phase == phase.epochs
        return stop


class Checkpointer(Protocol_):
    """Saves and restores training at epoch boundaries (:class:`bench.runs.checkpoint.RunCheckpoint`)."""

    def load(self) -> dict | None: ...

    def save(self, payload: dict) -> None: ...


@dataclass
class _Fit:
    """What every epoch of one :func:`fit` shares."""

    model: nn.Module
    net: nn.Module  # what training steps call: ``model``, or ``torch.compile(model)`` (the same parameters)
    protocol: Protocol
    train: Split
    val: Split
    classes: tuple[str, ...]
    pipeline: BatchPipeline
    engine: EngineConfig
    amp: Amp
    gen: torch.Generator
    weight: torch.Tensor | None
    progress: ProgressFn | None
    positive: str | None


def fit(
    model: nn.Module,
    protocol: Protocol,
    train: Split,
    val: Split,
    classes: tuple[str, ...],
    pipeline: BatchPipeline,
    seed: int,
    progress: ProgressFn | None = None,
    checkpoint: Checkpointer | None = None,
    engine: EngineConfig | None = None,
    positive: str | None = None,
) -> FitResult:
    """Train through the protocol's phases; ``model`` ends holding the best-on-validation weights.

    Selection uses ``protocol.select_on`` over every epoch of every phase (loss: lower is better); early
    stopping watches the same validation measure within a phase. A NaN/inf training loss stops training there,
    keeping the best epoch so far (``stopped`` says so), or raises :class:`DivergedError` when no epoch was
    validated yet; a loss that explodes is named in ``loss_alarm`` and training goes on. With a
    ``checkpoint``, the state is saved after every epoch and resumed from, RNG streams included, so an
    interrupted run ends exactly as an uninterrupted one. ``engine`` (default: all off) sets precision and
    memory format; with ``engine.compile`` the training steps call ``torch.compile(model)``, while validation (and
    the runner's test and eval sets) score the eager model, so every score a record holds is what its kept weights
    give when reloaded. ``train`` may already live on the device; ``positive`` is for the validation metrics."""
    engine = engine or EngineConfig()
    weight = class_weights(train.labels, len(classes)).to(pipeline.device) if protocol.class_weighted_loss else None
    amp = Amp(engine.amp, pipeline.device)
    gen = torch.Generator().manual_seed(seed)
    net = training_net(model, engine.compile)
    run = _Fit(model, net, protocol, train, val, classes, pipeline, engine, amp, gen, weight, progress, positive)
    saved = checkpoint.load() if checkpoint is not None else None
    state, best_model = _resume(run, saved) if saved is not None else (FitState(), copy.deepcopy(model.state_dict()))
    steps_per_epoch = math.ceil(len(train.labels) / protocol.batch_size)
    for phase_index, phase in enumerate(protocol.phases):
        resuming = saved is not None and phase_index == state.phase_index
        skip = phase_index < state.phase_index or phase.epochs == 0 or (resuming and state.phase_finished)
        if skip or state.result.stopped is not None:
            continue
        apply_phase(model, phase)
        opt = optimizer_for(protocol, param_groups(model, protocol, phase), phase.lr, engine.fused_optimizer)
        sched = scheduler_for(opt, protocol, phase, steps_per_epoch)
        if resuming and state.epochs_done_in_phase:
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
        else:
            state.begin_phase(phase_index)
        while state.epochs_done_in_phase < phase.epochs:
            try:
                log = _epoch(run, phase, opt, sched, state)
            except DivergedError as err:
                if not state.result.history:
                    raise
                state.result.stopped = f"{err}: training stopped, epoch {state.result.best_epoch} kept"
                break
            if _select(state.result, log, protocol.select_on):
                best_model = copy.deepcopy(model.state_dict())
            if state.result.loss_alarm is None:
                state.result.loss_alarm = check_train_loss([h.train_loss for h in state.result.history], len(classes))
            if progress is not None:
                progress(EpochEnded(log))
            score = stopping_score(log.val_loss, log.val, protocol.select_on)
            stop = state.end_epoch(score, phase, protocol.early_stopping_patience)
            if checkpoint is not None:
                checkpoint.save(_checkpoint_payload(run, best_model, opt, sched, state))
            if stop:
                break
    model.load_state_dict(best_model)
    return state.result


def _epoch(
    run: _Fit, phase: Phase, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, state: FitState
) -> EpochLog:
    """Train one epoch of ``phase`` and validate; the log is in ``state.result.history`` on return."""
    state.epoch_no += 1
    epoch_no = state.epoch_no

    on_cpu = run.pipeline.device.type == "cpu"

    def on_step(step: int, loss: torch.Tensor) -> None:
        # the step's loss where reading it costs no wait (a CPU tensor); on a GPU every 25th step, so a 1-epoch
        # run shows a loss before its epoch ends without a host sync per step
        shown = float(loss) if on_cpu or step % 25 == 0 else None
        run.progress(Stepped(phase.name, epoch_no, step, shown))

    start = time.perf_counter()
    if phase.unfreeze == "gradual":
        apply_phase(run.model, phase, state.epochs_done_in_phase + 1)
    set_train_mode(run.model, phase)
    train_loss, gpu_util_pct = train_one_epoch(
        run.net,
        opt,
        sched,
        run.pipeline,
        run.train,
        run.protocol,
        run.gen,
        weight=run.weight,
        amp=run.amp,
        on_step=on_step if run.progress is not None else None,
    )
    train_seconds = time.perf_counter() - start
    if not math.isfinite(train_loss):
        raise DivergedError(f"loss became {train_loss} in phase {phase.name!r}, epoch {epoch_no}")
    val_loss, val_metrics = evaluate(
        run.model, run.val, run.pipeline, run.classes, run.weight, run.engine, run.positive
    )
    log = EpochLog(
        phase=phase.name,
        epoch=epoch_no,
        lr=top_lr(opt),
        train_loss=train_loss,
        val_loss=val_loss,
        val=val_metrics,
        seconds=time.perf_counter() - start,
        train_seconds=train_seconds,
        images_per_s=len(run.train.labels) / train_seconds,
        gpu_util_pct=gpu_util_pct,
    )
    state.result.history.append(log)
    return log


def _select(result: FitResult, log: EpochLog, select_on: str) -> bool:
    """Whether ``log``'s epoch is the best so far on ``select_on`` (loss: lower is better); if so it is noted."""
    lower_is_better = select_on == "loss"
    score = epoch_score(log.val_loss, log.val, select_on)
    improved = score < result.best_score if lower_is_better else score > result.best_score
    if math.isnan(result.best_score) or improved:
        result.best_score, result.best_epoch = score, log.epoch
        return True
    return False


def _resume(run: _Fit, saved: dict) -> tuple[FitState, dict]:
    """Put the model, RNG streams and grad scaler back as ``saved`` has them; returns the state and best weights."""
    run.model.load_state_dict(saved["model"])
    run.gen.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    if run.amp.scaler is not None and "scaler" in saved:
        run.amp.scaler.load_state_dict(saved["scaler"])
    return _state_from_dict(saved["state"]), saved["best_model"]


def _checkpoint_payload(
    run: _Fit,
    best_model: dict,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    state: FitState,
) -> dict:
    scaler = {"scaler": run.amp.scaler.state_dict()} if run.amp.scaler is not None else {}
    return {
        "model": run.model.state_dict(),
        "best_model": best_model,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": run.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "state": _state_payload(state),
        **scaler,
    }


def _state_from_dict(data: dict) -> FitState:
    result = data.pop("result")
    history = [EpochLog.from_dict(h) for h in result.pop("history")]
    return FitState(**data, result=FitResult(history=history, **result))


def _state_payload(state: FitState) -> dict:
    """Where training stands as plain data a weights-only checkpoint holds, the history in its stored form (each
    part converted once: :func:`dataclasses.asdict` would also deep-copy every epoch's scores first)."""
    result = {f.name: getattr(state.result, f.name) for f in dataclasses.fields(state.result)}
    result["history"] = [h.to_dict() for h in state.result.history]
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)} | {"result": result}
