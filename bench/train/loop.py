"""The training engine: phases, epochs, early stopping and model selection on validation data.

It sees only the train and validation splits (:func:`fit` has no parameter through which test data
could arrive); the runner evaluates the selected model on test once, afterwards. Images stay uint8
tensors in memory; each batch is converted, augmented and normalised as a batch, so the per-step
cost is the model's, not Python's.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal
from typing import Protocol as Protocol_

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.data.dataset import Split
from bench.errors import BenchError, ConfigError
from bench.evaluation.metrics import compute_metrics
from bench.evaluation.scores import softmax64
from bench.protocol.spec import Augment, Phase, Protocol, apply_phase, set_train_mode
from bench.runs.record import Precision
from bench.train.utilisation import GpuUtilisation


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
    seconds: float  # the whole epoch: training and validation
    train_seconds: float | None = None  # the training steps alone
    images_per_s: float | None = None  # training images per second of train_seconds
    gpu_util_pct: float | None = None  # mean NVML utilisation during the training steps (CUDA only)

    # The fields that differ between two otherwise identical runs.
    TIMINGS: ClassVar[frozenset[str]] = frozenset({"seconds", "train_seconds", "images_per_s", "gpu_util_pct"})


@dataclass
class FitResult:
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = math.nan
    stopped_early: list[str] = field(default_factory=list)  # phases cut short by early stopping


AmpDtype = Literal["bf16", "fp16"]
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# A dataset moves to the GPU whole when its uint8 images take at most this share of the free memory:
# the rest is for the model, its activations and the optimiser.
DATA_ON_DEVICE_SHARE = 0.25


@dataclass(frozen=True)
class EngineConfig:
    """How training and inference use the device; :func:`engine_for` picks it per device and requested precision.

    All off is the CPU setting: CPU results then stay bit-for-bit reproducible. On CUDA, reduced precision
    and NHWC memory are what tensor cores need, and data already on the device (or in pinned memory, so
    copies overlap compute) keeps the GPU from waiting on the host.
    """

    amp: AmpDtype | None = None  # autocast dtype of forward passes; fp16 adds a GradScaler
    channels_last: bool = False  # model and batches in NHWC
    data_on_device: bool = False  # the uint8 splits live on the device: no per-step host copy at all
    pin_memory: bool = False  # host batches are pinned and copied asynchronously
    fused_optimizer: bool = False  # one fused Adam kernel; it also lets GradScaler skip its per-step sync
    eval_batch_size: int = 512  # the first try; :func:`predict` halves it on out-of-memory

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def engine_for(
    device: torch.device,
    data_bytes: int,
    probe: Callable[[torch.device], tuple[bool, int]] | None = None,
    precision: Precision = "auto",
) -> EngineConfig:
    """The engine settings for ``device``, a dataset of ``data_bytes`` (uint8 images, all splits) and ``precision``.

    ``auto`` is bf16 autocast on CUDA (fp16 with a GradScaler where bf16 is missing) and fp32 on the CPU;
    ``fp32`` turns autocast off and leaves the rest of the GPU settings on, which change speed, not numbers.
    A precision the device cannot run is refused (:func:`check_precision`). ``probe`` returns (bf16
    supported, free device bytes); it is the only CUDA call, so tests can fake it.
    """
    if device.type != "cuda":
        _amp(device, precision, bf16=False)
        return EngineConfig()
    bf16, free_bytes = (probe or _cuda_probe)(device)
    on_device = data_bytes <= DATA_ON_DEVICE_SHARE * free_bytes
    return EngineConfig(
        amp=_amp(device, precision, bf16),
        channels_last=True,
        data_on_device=on_device,
        pin_memory=not on_device,
        fused_optimizer=True,
        eval_batch_size=1024,
    )


def check_precision(device: torch.device, precision: Precision) -> None:
    """Refuse a precision ``device`` cannot run before a sweep starts, rather than as one failed record per run.

    It only reads device properties (:func:`native_bf16`), so a driver can check the GPUs its workers will use
    without allocating on them.
    """
    _amp(device, precision, bf16=device.type == "cuda" and native_bf16(device))


def _amp(device: torch.device, precision: Precision, bf16: bool) -> AmpDtype | None:
    """The autocast dtype ``precision`` means on ``device`` (``bf16``: whether it has bf16); ConfigError if it can't."""
    if device.type != "cuda":
        if precision in _AMP_DTYPES:
            raise ConfigError(
                f"--precision {precision} needs a CUDA device, not {device}: autocast on the CPU is slow, "
                "use auto or fp32 there"
            )
        return None
    if precision == "bf16" and not bf16:
        raise ConfigError(f"--precision bf16: {device} has no native bf16 (before Ampere): use fp16 or fp32")
    if precision == "auto":
        return "bf16" if bf16 else "fp16"
    return None if precision == "fp32" else precision


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: compute capability 8 (Ampere) or later, or any ROCm GPU.

    Older GPUs emulate bf16 slowly (``torch.cuda.is_bf16_supported()`` counts that as support): fp16 is the
    precision to pick there, and a bf16 request is refused.
    """
    return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8


def _cuda_probe(device: torch.device) -> tuple[bool, int]:
    return native_bf16(device), torch.cuda.mem_get_info(device)[0]


class Amp:
    """Autocast around the forward pass and loss, with a GradScaler for fp16; plain fp32 when ``dtype`` is None."""

    def __init__(self, dtype: AmpDtype | None, device: torch.device):
        self.dtype = dtype
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if dtype == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=_AMP_DTYPES[self.dtype])

    def step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """Backward and optimiser step (gradients already zeroed)."""
        if self.scaler is None:
            loss.backward()
            opt.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()


class BatchPipeline:
    """uint8 images -> normalised float batches for a model, with optional batched augmentation.

    Single-channel images are expanded to three channels as a view, so grayscale X-rays feed RGB
    backbones without a stored copy. Host batches bound for a GPU are pinned first (``pin_memory``), so
    the copy is asynchronous and the host does not wait for the device.
    """

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device,
        channels_last: bool = False,
        pin_memory: bool = False,
    ):
        self.device = device
        self.channels_last = channels_last
        self.pin_memory = pin_memory
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(std, device=device).view(1, -1, 1, 1) * 255.0)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.pin_memory and tensor.device.type == "cpu":
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def __call__(
        self, images: torch.Tensor, augment: Augment | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = self.to_device(images)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x.float() - self.mean) * self.inv_std
        if augment is not None and augment.enabled:
            x = _augment(x, augment, generator)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _augment(x: torch.Tensor, aug: Augment, gen: torch.Generator | None) -> torch.Tensor:
    """Random flips, rotation and zoom for a whole batch with one ``affine_grid``/``grid_sample``.

    With flips alone the images are mirrored exactly instead, which is cheaper than resampling; the random
    draws are the same either way, so the shortcut changes the cost, not which images flip. The draws are
    made on the host (the generator is checkpointed) and reach the device in one copy that does not wait.
    """
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    angle = torch.deg2rad(uniform(-aug.rotation, aug.rotation))
    scale = uniform(1 - aug.zoom, 1 + aug.zoom)
    sx = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if aug.hflip else torch.ones(n)
    sy = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if aug.vflip else torch.ones(n)
    if not (aug.rotation or aug.zoom):
        return _flip(x, sx, sy)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * sx, -sin * sy, torch.zeros(n)], 1), torch.stack([sin * sx, cos * sy, torch.zeros(n)], 1)],
        1,
    ).to(x.device, x.dtype, non_blocking=True)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _flip(x: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose ``sx`` is -1 and upside down those whose ``sy`` is -1 (host tensors)."""
    for sign, dim in ((sx, -1), (sy, -2)):
        flipped = sign < 0
        if flipped.any():
            x = torch.where(flipped.view(-1, 1, 1, 1).to(x.device, non_blocking=True), x.flip(dim), x)
    return x


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (sklearn's "balanced"): n / (k * count_c); absent classes get 0."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    return torch.where(counts > 0, labels.numel() / (num_classes * counts.clamp(min=1)), 0.0)


@torch.inference_mode()
def predict(
    model: nn.Module, split: Split, pipeline: BatchPipeline, batch_size: int = 512, amp: AmpDtype | None = None
) -> np.ndarray:
    """float32 logits for every image of ``split`` (eval mode, no augmentation); softmax them in float64.

    Logits, not probabilities, because a float32 softmax saturates to 1.0 and ties confident images
    (:mod:`bench.evaluation.scores`). They stay on the device until the end (one copy back, no sync per
    batch). Out of memory at a batch size halves it and goes on from the batch that failed, so the batch is the
    largest that fits.
    """
    model.eval()
    autocast = Amp(amp, pipeline.device).autocast
    out: list[torch.Tensor] = []
    start = 0
    while start < len(split.labels):
        try:
            with autocast():
                logits = model(pipeline(split.images[start : start + batch_size]))
            out.append(logits.float())
            start += batch_size
            continue
        except torch.OutOfMemoryError:
            if batch_size == 1:
                raise
        batch_size //= 2  # outside the except block: the failed batch's tensors are freed by now
        if pipeline.device.type == "cuda":
            torch.cuda.empty_cache()
    return torch.cat(out).cpu().numpy()


def _evaluate(
    model: nn.Module,
    split: Split,
    pipeline: BatchPipeline,
    classes: tuple[str, ...],
    weight: torch.Tensor | None,
    engine: EngineConfig,
    positive: str | None = None,
) -> tuple[float, dict]:
    logits = predict(model, split, pipeline, engine.eval_batch_size, engine.amp)
    labels = split.labels.cpu()
    logp = torch.log_softmax(torch.from_numpy(logits).double(), dim=1)
    loss = F.nll_loss(logp, labels, weight=None if weight is None else weight.double().cpu()).item()
    return loss, compute_metrics(labels.numpy(), softmax64(logits), classes, positive).to_dict()


def _scheduler(opt: torch.optim.Optimizer, protocol: Protocol, phase: Phase, steps_per_epoch: int):
    if protocol.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, phase.epochs * steps_per_epoch))
    if protocol.schedule == "step":
        milestones = [m * steps_per_epoch for m in protocol.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=protocol.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _optimizer(protocol: Protocol, params: list[nn.Parameter], lr: float, fused: bool = False) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if protocol.optimizer == "adamw" else torch.optim.Adam
    # fused=None keeps torch's default (for-loop on the CPU), which CPU results were recorded with
    return cls(params, lr=lr, weight_decay=protocol.weight_decay, fused=fused or None)


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
    amp: Amp | None = None,
) -> torch.Tensor:
    """One optimisation step on a uint8 batch; returns the detached loss without a host sync.

    Gradients are released before the forward pass rather than after it, so the last step's gradients
    and this step's activations are never held together (the same numbers, a lower peak).
    """
    amp = amp or Amp(None, pipeline.device)
    opt.zero_grad(set_to_none=True)
    x = pipeline(images, augment, gen)
    y = pipeline.to_device(labels)
    with amp.autocast():
        loss = F.cross_entropy(model(x), y, weight=weight)
    amp.step(loss, opt)
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
    """Saves and restores training at epoch boundaries (:class:`bench.train.checkpoint.RunCheckpoint`)."""

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
    engine: EngineConfig | None = None,
    positive: str | None = None,
) -> FitResult:
    """Train through the protocol's phases; ``model`` ends holding the best-on-validation weights.

    Selection uses ``protocol.select_on`` over every epoch of every phase (loss: lower is better);
    early stopping watches validation loss within a phase. A NaN/inf loss raises :class:`DivergedError`.
    With a ``checkpoint``, the state is saved after every epoch and a saved state is resumed from,
    RNG streams included, so an interrupted run ends exactly as an uninterrupted one. ``engine`` (default:
    all off) sets precision and memory format; ``train`` may already live on the device. ``positive`` is the
    positive class of a binary task (default ``classes[1]``) for the validation metrics.
    """
    engine = engine or EngineConfig()
    amp = Amp(engine.amp, pipeline.device)
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
        if amp.scaler is not None and "scaler" in saved:
            amp.scaler.load_state_dict(saved["scaler"])
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
        opt = _optimizer(protocol, params, phase.lr, engine.fused_optimizer)
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
            # One copy of the order per epoch, so that indexing on-device data never copies per step.
            order = torch.randperm(n, generator=gen).to(train.images.device)
            total = torch.zeros((), device=pipeline.device)
            with GpuUtilisation(pipeline.device) as busy:
                for step, i in enumerate(range(0, n, protocol.batch_size)):
                    idx = order[i : i + protocol.batch_size]
                    images, labels = train.images[idx], train.labels[idx]
                    loss = train_step(model, opt, sched, pipeline, images, labels, protocol.augment, gen, weight, amp)
                    total += loss * len(idx)
                    if progress is not None:
                        progress({"event": "step", "phase": phase.name, "epoch": state.epoch_no, "step": step + 1})
                train_loss = total.item() / n  # the epoch's one host-device sync, so the time below is real
            train_seconds = time.perf_counter() - start
            if not math.isfinite(train_loss):
                raise DivergedError(f"loss became {train_loss} in phase {phase.name!r}, epoch {state.epoch_no}")
            val_loss, val_metrics = _evaluate(model, val, pipeline, classes, weight, engine, positive)
            log = EpochLog(
                phase.name,
                state.epoch_no,
                opt.param_groups[0]["lr"],
                train_loss,
                val_loss,
                val_metrics,
                time.perf_counter() - start,
                train_seconds,
                n / train_seconds,
                busy.mean_pct,
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
                scaler = {"scaler": amp.scaler.state_dict()} if amp.scaler is not None else {}
                checkpoint.save(
                    {
                        "model": model.state_dict(),
                        "best_model": best_state,
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "generator": gen.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "state": _state_to_dict(state),
                        **scaler,
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
