"""The training engine: phases, epochs, early stopping and model selection on validation data.

It sees only the train and validation splits (:func:`fit` has no parameter through which test data
could arrive); the runner evaluates the selected model on test once, afterwards. Images stay uint8
tensors in memory; each batch is converted, augmented and normalised as a batch, so the per-step
cost is the model's, not Python's.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol as Protocol_

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.data import Split
from bench.errors import BenchError
from bench.metrics import compute_metrics
from bench.protocol import Augment, Phase, Protocol, apply_phase, set_train_mode


class DivergedError(BenchError):
    """The loss became NaN or infinite: the run is marked failed, the sweep goes on."""


@dataclass
class EpochLog:
    phase: str
    epoch: int  # counted over the whole run, from 1
    lr: float
    train_loss: float
    val_loss: float
    val: dict
    seconds: float


@dataclass
class FitResult:
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = math.nan
    stopped_early: list[str] = field(default_factory=list)  # phases cut short by early stopping


class BatchPipeline:
    """uint8 images -> normalised float batches for a model, with optional batched augmentation.

    Single-channel images are expanded to three channels as a view, so grayscale X-rays feed RGB
    backbones without a stored copy.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
        self.device = device
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(std, device=device).view(1, -1, 1, 1) * 255.0)

    def __call__(
        self, images: torch.Tensor, augment: Augment | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x.float() - self.mean) * self.inv_std
        if augment is not None and augment.enabled:
            x = _augment(x, augment, generator)
        return x


def _augment(x: torch.Tensor, aug: Augment, gen: torch.Generator | None) -> torch.Tensor:
    """Random flips, rotation and zoom for a whole batch with one ``affine_grid``/``grid_sample``."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    angle = torch.deg2rad(uniform(-aug.rotation, aug.rotation))
    scale = uniform(1 - aug.zoom, 1 + aug.zoom)
    sx = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if aug.hflip else torch.ones(n)
    sy = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if aug.vflip else torch.ones(n)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * sx, -sin * sy, torch.zeros(n)], 1), torch.stack([sin * sx, cos * sy, torch.zeros(n)], 1)],
        1,
    ).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (sklearn's "balanced"): n / (k * count_c); absent classes get 0."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    return torch.where(counts > 0, labels.numel() / (num_classes * counts.clamp(min=1)), 0.0)


@torch.inference_mode()
def predict(model: nn.Module, split: Split, pipeline: BatchPipeline, batch_size: int = 512) -> np.ndarray:
    """Softmax probabilities for every image of ``split`` (eval mode, no augmentation)."""
    model.eval()
    out = [
        torch.softmax(model(pipeline(split.images[i : i + batch_size])).float(), dim=1).cpu()
        for i in range(0, len(split.labels), batch_size)
    ]
    return torch.cat(out).double().numpy()


def _evaluate(
    model: nn.Module, split: Split, pipeline: BatchPipeline, classes: tuple[str, ...], weight: torch.Tensor | None
) -> tuple[float, dict]:
    probs = predict(model, split, pipeline)
    logp = torch.from_numpy(np.log(np.clip(probs, 1e-12, None)))
    loss = F.nll_loss(logp, split.labels, weight=None if weight is None else weight.double().cpu()).item()
    return loss, compute_metrics(split.labels.numpy(), probs, classes)


def _scheduler(opt: torch.optim.Optimizer, protocol: Protocol, phase: Phase, steps_per_epoch: int):
    if protocol.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, phase.epochs * steps_per_epoch))
    if protocol.schedule == "step":
        milestones = [m * steps_per_epoch for m in protocol.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=protocol.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _optimizer(protocol: Protocol, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if protocol.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=protocol.weight_decay)


ProgressFn = Callable[[dict], None]


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
) -> torch.Tensor:
    """One optimisation step on a uint8 batch; returns the detached loss without a host sync."""
    x = pipeline(images, augment, gen)
    y = labels.to(pipeline.device, non_blocking=True)
    loss = F.cross_entropy(model(x), y, weight=weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.detach()


@dataclass
class FitState:
    """Where training stands at an epoch boundary: enough to resume exactly after a crash."""

    phase_index: int = 0
    epochs_done_in_phase: int = 0  # of the phase at phase_index
    phase_finished: bool = False  # early-stopped or ran all its epochs
    epoch_no: int = 0
    best_phase_loss: float = math.inf
    bad_epochs: int = 0
    result: FitResult = field(default_factory=FitResult)


class Checkpointer(Protocol_):
    """Saves and restores training at epoch boundaries (:class:`bench.checkpoint.RunCheckpoint`)."""

    def load(self) -> dict | None: ...

    def save(self, payload: dict) -> None: ...


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
) -> FitResult:
    """Train through the protocol's phases; ``model`` ends holding the best-on-validation weights.

    Selection uses ``protocol.select_on`` over every epoch of every phase (loss: lower is better);
    early stopping watches validation loss within a phase. A NaN/inf loss raises :class:`DivergedError`.
    With a ``checkpoint``, the state is saved after every epoch and a saved state is resumed from,
    RNG streams included, so an interrupted run ends exactly as an uninterrupted one.
    """
    gen = torch.Generator().manual_seed(seed)
    weight = class_weights(train.labels, len(classes)).to(pipeline.device) if protocol.class_weighted_loss else None
    state = FitState()
    best_state = copy.deepcopy(model.state_dict())
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        best_state = saved["best_model"]
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        state = _state_from_dict(saved["state"])
    result = state.result
    lower_is_better = protocol.select_on == "loss"
    n = len(train.labels)
    steps = math.ceil(n / protocol.batch_size)
    for phase_index, phase in enumerate(protocol.phases):
        if phase_index < state.phase_index or phase.epochs == 0:
            continue
        resuming = saved is not None and phase_index == state.phase_index
        if resuming and state.phase_finished:
            continue
        names = set(apply_phase(model, phase))
        params = [p for name, p in model.named_parameters() if name in names]
        opt = _optimizer(protocol, params, phase.lr)
        sched = _scheduler(opt, protocol, phase, steps)
        if resuming and state.epochs_done_in_phase:
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
        else:
            state.phase_index, state.epochs_done_in_phase, state.phase_finished = phase_index, 0, False
            state.best_phase_loss, state.bad_epochs = math.inf, 0
        while state.epochs_done_in_phase < phase.epochs:
            state.epoch_no += 1
            start = time.perf_counter()
            set_train_mode(model, phase)
            order = torch.randperm(n, generator=gen)
            total = torch.zeros((), device=pipeline.device)
            for step, i in enumerate(range(0, n, protocol.batch_size)):
                idx = order[i : i + protocol.batch_size]
                loss = train_step(
                    model, opt, sched, pipeline, train.images[idx], train.labels[idx], protocol.augment, gen, weight
                )
                total += loss * len(idx)
                if progress is not None:
                    progress({"event": "step", "phase": phase.name, "epoch": state.epoch_no, "step": step + 1})
            train_loss = total.item() / n
            if not math.isfinite(train_loss):
                raise DivergedError(f"loss became {train_loss} in phase {phase.name!r}, epoch {state.epoch_no}")
            val_loss, val_metrics = _evaluate(model, val, pipeline, classes, weight)
            log = EpochLog(
                phase.name,
                state.epoch_no,
                opt.param_groups[0]["lr"],
                train_loss,
                val_loss,
                val_metrics,
                time.perf_counter() - start,
            )
            result.history.append(log)
            score = val_loss if lower_is_better else val_metrics[protocol.select_on]
            improved = score < result.best_score if lower_is_better else score > result.best_score
            if math.isnan(result.best_score) or improved:
                result.best_score, result.best_epoch = score, state.epoch_no
                best_state = copy.deepcopy(model.state_dict())
            if progress is not None:
                progress({"event": "epoch", "log": log})
            if val_loss < state.best_phase_loss:
                state.best_phase_loss, state.bad_epochs = val_loss, 0
            else:
                state.bad_epochs += 1
            state.epochs_done_in_phase += 1
            patience = protocol.early_stopping_patience
            stop = patience is not None and state.bad_epochs >= patience and state.epochs_done_in_phase < phase.epochs
            if stop:
                result.stopped_early.append(phase.name)
            state.phase_finished = stop or state.epochs_done_in_phase == phase.epochs
            if checkpoint is not None:
                checkpoint.save(
                    {
                        "model": model.state_dict(),
                        "best_model": best_state,
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "generator": gen.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "state": _state_to_dict(state),
                    }
                )
            if stop:
                break
    model.load_state_dict(best_state)
    return result


def _state_to_dict(state: FitState) -> dict:
    return dataclasses.asdict(state)


def _state_from_dict(data: dict) -> FitState:
    result = data.pop("result")
    history = [EpochLog(**h) for h in result.pop("history")]
    return FitState(**data, result=FitResult(history=history, **result))
