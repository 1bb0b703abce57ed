"""What the harness adds to a backbone's own training cost, as a ratio measured in one run.

For each backbone and resolution, rounds alternate between

* the **harness step**: a uint8 batch gathered from an in-memory dataset, then :func:`bench.train.loop.train_step`
  (conversion to float, normalisation, batched augmentation, loss, optimiser, scheduler) and the loss
  bookkeeping of :func:`bench.train.loop.fit`, and
* the **bare step**: ``model(x); loss.backward(); opt.step()`` on pre-made float tensors,

so that whatever the machine does meanwhile (a neighbour's job, thermal drift) hits both alike. The ratio is
the median over rounds of ``harness / bare`` of the two steps of one round, with a distribution-free 95%
confidence interval (on a busy machine it is wide, and says so). The parts the harness adds are
timed on their own in the same rounds (data: gather + uint8 -> normalised float; augmentation; scheduler and
bookkeeping), so a ratio above target says which part to look at.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from rich.table import Table
from timm.data import resolve_data_config
from torch import nn

from bench.environment.device import device_fingerprint, resolve_device
from bench.errors import ConfigError
from bench.models.registry import create_backbone, get_backbone, resolve_resolution
from bench.protocol.finetune import apply_phase, set_train_mode
from bench.protocol.spec import Protocol, get_protocol
from bench.timers.backends import Backend, select_backend
from bench.timers.median import median_ci95
from bench.train.engine import Amp, EngineConfig, engine_for, torch_threads
from bench.train.loop import train_step
from bench.train.optim import optimizer_for, scheduler_for
from bench.train.pipeline import BatchPipeline, augment_batch

TARGET_RATIO = 1.10  # the target: the harness step costs at most 10% more than the bare step
PARTS = ("data", "augment", "schedule")


@dataclass(frozen=True)
class ProfileConfig:
    """What ``bench profile`` measures. Defaults: the issue's table (batch 128 as in the protocols)."""

    backbones: tuple[str, ...] = ("resnet18", "efficientnet_b0")
    resolutions: tuple[int, ...] = (28, 64)
    batch_size: int = 128
    rounds: int = 8  # timed rounds per (backbone, resolution); each runs both steps and every part once
    warmup: int = 2  # untimed rounds first (allocator, oneDNN primitive caches, cuDNN autotuning)
    protocol: str = "scratch"  # whose first phase, optimiser, schedule and augmentation the harness step uses
    channels: int = 3  # 1 = grayscale data, expanded to RGB by the pipeline as in a real run
    num_classes: int = 2
    pool: int = 4  # the in-memory dataset holds pool x batch_size images; a batch is gathered from it
    device: str = "cpu"
    threads: int | None = None  # torch CPU threads while measuring (None: leave as is)

    def __post_init__(self) -> None:
        for name in ("backbones", "resolutions"):
            if not getattr(self, name):
                raise ConfigError(f"profile: {name} is empty: name at least one")
        for name in ("batch_size", "rounds", "channels", "num_classes", "pool"):
            if getattr(self, name) < 1:
                raise ConfigError(f"profile: {name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or (self.threads is not None and self.threads < 1):
            raise ConfigError("profile: warmup must be >= 0 and threads >= 1")
        if self.channels not in (1, 3):
            raise ConfigError(f"profile: channels must be 1 or 3, got {self.channels}")


@dataclass
class ProfileResult:
    """Per-step milliseconds (medians over rounds) of one backbone at one resolution."""

    backbone: str
    resolution: int
    batch_size: int
    bare_ms: float
    harness_ms: float
    ratio: float  # median over rounds of harness / bare within a round
    ratio_ci95: tuple[float, float]
    parts_ms: dict[str, float]  # median ms of each part the harness adds (PARTS)
    rounds: int
    engine: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)

    @property
    def unexplained_ms(self) -> float:
        """Harness minus bare minus the timed parts: Python glue, cache effects, noise."""
        return self.harness_ms - self.bare_ms - sum(self.parts_ms.values())


def paired_ratios(numerator_ms: Sequence[float], denominator_ms: Sequence[float]) -> list[float]:
    """Per-round ratios: each pair ran back to back, so slow drift cancels within a pair."""
    if len(numerator_ms) != len(denominator_ms) or not numerator_ms:
        raise ValueError("paired ratios need two equally long, non-empty series")
    return [n / d for n, d in zip(numerator_ms, denominator_ms, strict=True)]


@dataclass
class Steps:
    """The two steps and the parts, as zero-argument callables over shared state."""

    harness: Callable[[], object]
    bare: Callable[[], object]
    parts: dict[str, Callable[[], object]]


def _build_steps(
    model: nn.Module, side: int, protocol: Protocol, config: ProfileConfig, engine: EngineConfig, device: torch.device
) -> Steps:
    """Both steps on one model (the same parameters train), each with its own optimiser state."""
    phase = protocol.phases[0]
    names = set(apply_phase(model, phase))
    params = [p for name, p in model.named_parameters() if name in names]
    set_train_mode(model, phase)
    gen = torch.Generator().manual_seed(0)
    n = config.pool * config.batch_size
    images = torch.randint(0, 256, (n, config.channels, side, side), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, config.num_classes, (n,), generator=gen)
    if engine.data_on_device:
        images, labels = images.to(device), labels.to(device)
    cfg = resolve_data_config({}, model=model)
    pipeline = BatchPipeline(cfg["mean"], cfg["std"], device, engine.channels_last, engine.pin_memory)
    amp = Amp(engine.amp, device)
    harness_opt = optimizer_for(protocol, params, phase.lr, engine.fused_optimizer)
    sched = scheduler_for(harness_opt, protocol, phase, steps_per_epoch=config.pool)
    bare_opt = optimizer_for(protocol, params, phase.lr, engine.fused_optimizer)
    idx = torch.randperm(n, generator=gen)[: config.batch_size].to(images.device)
    x = pipeline(images[idx])  # the bare step's pre-made float batch
    y = pipeline.to_device(labels[idx])
    total = torch.zeros((), device=device)
    loss_like = torch.ones((), device=device)

    def harness() -> None:
        loss = train_step(model, harness_opt, sched, pipeline, images[idx], labels[idx], protocol.augment, gen, amp=amp)
        total.add_(loss * len(idx))  # fit's bookkeeping: the epoch loss stays on the device

    def bare() -> None:
        bare_opt.zero_grad(set_to_none=True)
        with amp.autocast():
            loss = F.cross_entropy(model(x), y)
        amp.step(loss, bare_opt)

    def schedule() -> None:
        sched.step()
        total.add_(loss_like * len(idx))

    def data() -> object:
        return pipeline(images[idx])

    def augment() -> object:
        return augment_batch(x, protocol.augment, gen) if protocol.augment.enabled else x

    return Steps(harness, bare, {"data": data, "augment": augment, "schedule": schedule})


def measure(steps: Steps, rounds: int, warmup: int, backend: Backend) -> tuple[list[float], list[float], dict]:
    """Interleaved timings: per round the harness and bare steps (alternating which goes first), then the parts.

    Returns the harness and bare milliseconds per round and each part's milliseconds per round.
    """
    harness, bare = [], []
    parts: dict[str, list[float]] = {name: [] for name in steps.parts}
    for i in range(warmup + rounds):
        order = [(harness, steps.harness), (bare, steps.bare)]
        timed = [(sink, backend.time_ms(step)) for sink, step in (order if i % 2 == 0 else order[::-1])]
        timed += [(parts[name], backend.time_ms(step)) for name, step in steps.parts.items()]
        if i >= warmup:
            for sink, ms in timed:
                sink.append(ms)
    return harness, bare, parts


def profile_backbone(
    name: str, resolution: int, config: ProfileConfig, backend: Backend | None = None
) -> ProfileResult:
    """The ratio and the part costs of one backbone at ``resolution`` (upsized to its minimum if needed)."""
    device = resolve_device(config.device, "profile device")
    backend = backend or select_backend(device)
    protocol = get_protocol(config.protocol)
    side = resolve_resolution(get_backbone(name), resolution, "upsize")
    engine = engine_for(device, data_bytes=config.pool * config.batch_size * config.channels * side * side)
    torch.manual_seed(0)
    model, _ = create_backbone(name, config.num_classes)
    model.to(device, memory_format=torch.channels_last if engine.channels_last else torch.contiguous_format)
    steps = _build_steps(model, side, protocol, config, engine, device)
    fingerprint = device_fingerprint(device)
    harness, bare, parts = measure(steps, config.rounds, config.warmup, backend)
    ratios = paired_ratios(harness, bare)
    return ProfileResult(
        backbone=name,
        resolution=side,
        batch_size=config.batch_size,
        bare_ms=statistics.median(bare),
        harness_ms=statistics.median(harness),
        ratio=statistics.median(ratios),
        ratio_ci95=median_ci95(ratios),
        parts_ms={k: statistics.median(v) for k, v in parts.items()},
        rounds=config.rounds,
        engine=engine.to_dict(),
        fingerprint=fingerprint,
    )


def profile(config: ProfileConfig) -> list[ProfileResult]:
    """:func:`profile_backbone` for every backbone and resolution of ``config``."""
    for name in config.backbones:
        get_backbone(name)  # an unknown name fails before minutes of measuring
    with torch_threads(config.threads):
        return [profile_backbone(n, r, config) for n in config.backbones for r in config.resolutions]


def profile_table(results: Sequence[ProfileResult], protocol: str = "") -> Table:
    """Ratio and part costs; each part also as a share of the bare step, the unit the target is set in."""
    title = f"harness training step vs bare model step, protocol {protocol!r} (target ratio <= {TARGET_RATIO:.2f})"
    table = Table(title=title, caption=_caption(results), header_style="bold")
    for header in ("backbone", "res", "batch", "bare ms", "harness ms", "ratio", "95% CI"):
        table.add_column(header, justify="left" if header == "backbone" else "right")
    for part in (*PARTS, "rest"):
        table.add_column(f"{part} ms (%)", justify="right")
    for r in results:
        cells = [f"{ms:.1f} ({100 * ms / r.bare_ms:+.1f}%)" for ms in (*r.parts_ms.values(), r.unexplained_ms)]
        ratio = f"{r.ratio:.3f}" if r.ratio <= TARGET_RATIO else f"[red]{r.ratio:.3f}[/]"
        ci = f"{r.ratio_ci95[0]:.3f}-{r.ratio_ci95[1]:.3f}"
        row = [r.backbone, str(r.resolution), str(r.batch_size), f"{r.bare_ms:.1f}", f"{r.harness_ms:.1f}", ratio, ci]
        table.add_row(*row, *cells)
    return table


def _caption(results: Sequence[ProfileResult]) -> str:
    if not results:
        return ""
    fp = results[0].fingerprint
    device = fp.get("gpu_name") if fp.get("device_kind") == "cuda" else fp.get("cpu_model")
    loads = [r.fingerprint.get("load_avg_1m") for r in results]
    load = ", ".join(f"{x:.1f}" for x in loads if x is not None) or "unknown"
    return (
        f"{device}, {fp.get('torch_threads')} torch threads, torch {fp.get('torch_version')}; load average (1 min) "
        f"before each row: {load}. Medians over {results[0].rounds} interleaved rounds. "
        "data: gather + uint8 -> normalised float; augment: flips/rotation/zoom; schedule: lr scheduler + "
        "loss bookkeeping; rest: harness - bare - parts (glue and noise)."
    )
