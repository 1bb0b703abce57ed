"""``bench profile --engines``: each engine setting's training speed on the CPU or a GPU, as a ratio to fp32 NCHW
and as a share of the machine's peak.

For each backbone and resolution the harness training step of every setting this CPU has (fp32 or bf16
autocast, NCHW or channels-last: :func:`bench.train.cpu_engine.setting_steps`) runs in interleaved rounds, so a
busy neighbour slows all alike; each setting's ratio is the median over rounds of its step over the fp32 NCHW
step of the same round. One more step of each, under torch's FLOP counter, gives the step's FLOPs
(:func:`bench.train.flops.step_flops`); over the median step time that is the achieved FLOP/s, and over a large
matrix product's FLOP/s in the setting's dtype on the same threads (:func:`bench.train.flops.matmul_peak`) the
share of the peak the backbone reaches. The row ``bench run`` would train in is marked ``auto``: the choice
``BENCH_CPU_ENGINE`` pins, else the cached measurement planning reads, else what this measurement ranks first.
With ``compile`` each setting is also timed through ``torch.compile`` (``bench run --compile``): its first call,
which compiles, is timed apart as the compile time, and its FLOPs are its eager twin's (the same arithmetic).
On a GPU (``device="cuda"``) the same settings are timed by CUDA events, the batch on the GPU and the optimiser
fused as ``bench run --device cuda`` trains, and the peak is a larger product's; the ``auto`` row there is what
:func:`bench.train.engine.engine_for` gives a run (bf16 channels-last on a GPU with native bf16), not a measurement.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from rich.table import Table

from bench.environment.device import device_fingerprint
from bench.errors import ConfigError
from bench.models.registry import get_backbone, resolve_resolution
from bench.timers.backends import select_backend
from bench.timers.median import median_ci95
from bench.train.cpu_engine import (
    PIN_ENV,
    STANDING,
    CpuMeasurement,
    CpuSetting,
    MeasureKey,
    cached_measurement,
    measure_settings,
    setting_steps,
    settings_here,
)
from bench.train.engine import engine_for, torch_threads
from bench.train.flops import CUDA_PEAK_SIDE, PEAK_SIDE, matmul_peak, step_flops

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class EngineSpeedConfig:
    """What ``bench profile --engines`` measures; the defaults are issue 30's table (32 px, batch 128)."""

    backbones: tuple[str, ...] = ("resnet18", "densenet121", "efficientnet_b0")
    resolutions: tuple[int, ...] = (32,)
    batch_size: int = 128
    rounds: int = 5  # timed rounds; each runs every setting once
    warmup: int = 1  # untimed rounds first (oneDNN primitives, the allocator)
    threads: int | None = None  # torch CPU threads while measuring (None: leave as is)
    fused: bool = False  # also each setting with the fused optimiser (RunSpec.fused_optimizer)
    compile: bool = False  # also each setting through torch.compile (RunSpec.compile)
    device: str = "cpu"  # cpu, cuda or cuda:N
    settings: tuple[str, ...] = ()  # only these (fp32-nchw, bf16-nhwc+compile, ...) and the fp32-nchw baseline

    def __post_init__(self) -> None:
        for name in ("backbones", "resolutions"):
            if not getattr(self, name):
                raise ConfigError(f"profile --engines: {name} is empty: name at least one")
        for name in ("batch_size", "rounds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"profile --engines: {name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or (self.threads is not None and self.threads < 1):
            raise ConfigError("profile --engines: warmup must be >= 0 and threads >= 1")
        device = torch.device(self.device)
        if self.fused and device.type == "cuda":
            raise ConfigError(f"--fused-optimizer: on {device} every setting already trains with the fused optimiser")
        if self.settings:
            named_settings(self.settings, device)  # a misspelt setting fails before a model is built


@dataclass(frozen=True)
class EngineSpeed:
    """One setting's training step for one backbone at one resolution."""

    backbone: str
    resolution: int
    batch_size: int
    setting: str  # CpuSetting.name
    step_ms: float  # median over rounds
    ratio: float  # median over rounds of this step / the fp32 NCHW step of the same round
    ratio_ci95: tuple[float, float]
    flops: int  # of one step, forward and backward (bench.train.flops.step_flops)
    peak_flops: float  # the matmul peak in this setting's dtype, same threads
    auto: bool  # the setting `bench run` trains this backbone in here
    rounds: int
    fingerprint: dict = field(default_factory=dict)
    compile_s: float | None = None  # a compiled setting's first step, which compiles (the others: None)

    @property
    def images_per_s(self) -> float:
        return self.batch_size / (self.step_ms / 1000)

    @property
    def achieved_flops(self) -> float:
        return self.flops / (self.step_ms / 1000)

    @property
    def share_of_peak(self) -> float:
        return self.achieved_flops / self.peak_flops


def engine_speeds(config: EngineSpeedConfig) -> list[EngineSpeed]:
    """Every setting of every backbone and resolution of ``config``, measured as the module docstring says."""
    for name in config.backbones:
        get_backbone(name)  # an unknown name fails before minutes of measuring
    device = torch.device(config.device)
    with torch_threads(config.threads):
        threads = torch.get_num_threads()
        settings = named_settings(config.settings, device) if config.settings else settings_here(device)
        plain = tuple(s for s in settings if s.plain)
        if config.fused:
            settings += tuple(dataclasses.replace(s, fused=True) for s in plain)
        if config.compile:
            settings += tuple(dataclasses.replace(s, compiled=True) for s in plain)
        settings = tuple(dict.fromkeys(settings))
        peaks = {p: matmul_peak(DTYPES[p], device) for p in dict.fromkeys(s.precision for s in settings)}
        rows = []
        for name in config.backbones:
            for asked in config.resolutions:
                side = resolve_resolution(get_backbone(name), asked, "upsize")
                rows += _backbone_speeds(name, side, config, threads, settings, peaks, device)
    return rows


def _backbone_speeds(
    name: str,
    side: int,
    config: EngineSpeedConfig,
    threads: int,
    settings: Sequence[CpuSetting],
    peaks: dict,
    device: torch.device,
) -> list[EngineSpeed]:
    steps = setting_steps(name, side, config.batch_size, settings, device)
    clock = select_backend(device)
    compile_s = {s.name: clock.time_ms(steps[s.name]) / 1000 for s in settings if s.compiled}
    times = measure_settings(steps, config.rounds, config.warmup, budget_s=float("inf"), clock=clock)
    eager = {s: dataclasses.replace(s, compiled=False) for s in settings}  # a compiled step's arithmetic is its twin's
    untimed = [twin for twin in dict.fromkeys(eager.values()) if twin.name not in steps]  # counted, never timed
    counted = steps | (setting_steps(name, side, config.batch_size, untimed, device) if untimed else {})
    flops = {s.name: step_flops(counted[eager[s].name]) for s in settings}
    medians = {setting: statistics.median(ms) for setting, ms in times.items()}
    plain = [s for s in settings if s.plain]
    if device.type == "cuda":
        auto = gpu_auto_setting(device)
    else:
        auto = auto_setting(name, side, config.batch_size, threads, times, plain)
    fingerprint = device_fingerprint(device)
    rows = []
    for setting in settings:
        ratios = [t / base for t, base in zip(times[setting.name], times[STANDING.name], strict=True)]
        rows.append(
            EngineSpeed(
                backbone=name,
                resolution=side,
                batch_size=config.batch_size,
                setting=setting.name,
                step_ms=medians[setting.name],
                ratio=statistics.median(ratios),
                ratio_ci95=median_ci95(ratios),
                flops=flops[setting.name],
                peak_flops=peaks[setting.precision],
                auto=setting == auto,
                rounds=len(ratios),
                compile_s=compile_s.get(setting.name),
                fingerprint=fingerprint,
            )
        )
    return rows


def auto_setting(
    name: str, side: int, batch_size: int, threads: int, times: dict[str, list[float]], settings: Sequence[CpuSetting]
) -> CpuSetting:
    """What ``auto`` resolves to for ``bench run`` here: the pin, the cached measurement, else ``times``' ranking."""
    pin = os.environ.get(PIN_ENV)
    if pin:
        return CpuSetting.parse(pin, PIN_ENV)
    cached, _ = cached_measurement(name, side, batch_size, threads)
    if cached is None:
        cached = CpuMeasurement.of(MeasureKey.here(name, side, batch_size, threads), times)
    return cached.fastest(settings)


def named_settings(names: Sequence[str], device: torch.device) -> tuple[CpuSetting, ...]:
    """The settings ``names`` spell (``bf16-nhwc``, ``bf16-nhwc+compile``, ``fp32-nchw+fused`` on a CPU), after
    fp32 NCHW, the baseline of every ratio; a ConfigError names one ``device`` cannot train in.

    Compiling takes minutes a setting, so a short GPU lease times the compiled twin of the one setting that
    matters rather than of all four (``--compile``)."""
    here = settings_here(device)
    extras = {"compile"} if device.type == "cuda" else {"compile", "fused"}
    chosen = [STANDING]
    for text in names:
        base, *plus = text.strip().lower().split("+")
        plain = next((s for s in here if s.name == base), None)
        if plain is None or not set(plus) <= extras:
            spelt = ", ".join(s.name for s in here)
            raise ConfigError(
                f"--settings {text!r}: {device.type} trains in {spelt}, each with {' or '.join(sorted(extras))} "
                "after a + (bench profile --engines --help)"
            )
        chosen.append(dataclasses.replace(plain, fused="fused" in plus, compiled="compile" in plus))
    return tuple(dict.fromkeys(chosen))


def gpu_auto_setting(device: torch.device) -> CpuSetting | None:
    """The setting ``bench run --device cuda`` trains in on ``device`` (:func:`bench.train.engine.engine_for`):
    bf16 channels-last with native bf16; None before Ampere, where its fp16 with a GradScaler is not timed here."""
    engine = engine_for(device, data_bytes=0)
    if engine.amp == "fp16":
        return None
    return CpuSetting("bf16" if engine.amp == "bf16" else "fp32", engine.channels_last)


def engine_speed_table(rows: Sequence[EngineSpeed]) -> Table:
    """One row per setting: the step, images/s, the ratio to fp32 NCHW, FLOPs and the share of the peak."""
    where = "GPU" if rows and rows[0].fingerprint.get("device_kind") == "cuda" else "CPU"
    table = Table(
        title=f"{where} training step by engine setting (interleaved rounds; ratio: step / fp32-nchw step, same round)",
        caption=_caption(rows),
        header_style="bold",
    )
    headers = (
        "backbone", "res", "batch", "setting", "auto", "ms/step", "img/s", "vs fp32-nchw", "95% CI",
        "GFLOP/step", "GFLOP/s", "peak GFLOP/s", "% of peak",
    ) + (("compile s",) if (compiled := any(r.compile_s is not None for r in rows)) else ())  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header in ("backbone", "setting", "auto") else "right")
    for r in rows:
        table.add_row(
            r.backbone,
            str(r.resolution),
            str(r.batch_size),
            r.setting,
            "auto" if r.auto else "",
            f"{r.step_ms:.1f}",
            f"{r.images_per_s:.0f}",
            f"{r.ratio:.2f}",
            f"{r.ratio_ci95[0]:.2f}-{r.ratio_ci95[1]:.2f}",
            f"{r.flops / 1e9:.2f}",
            f"{r.achieved_flops / 1e9:.1f}",
            f"{r.peak_flops / 1e9:.1f}",
            f"{100 * r.share_of_peak:.1f}",
            *(("" if r.compile_s is None else f"{r.compile_s:.0f}",) if compiled else ()),
        )
    return table


def _caption(rows: Sequence[EngineSpeed]) -> str:
    if not rows:
        return ""
    fp = rows[0].fingerprint
    flops = "FLOPs: torch's FlopCounterMode over one step (convolutions and matmuls, forward and backward)"
    if fp.get("device_kind") == "cuda":
        return (
            f"{fp.get('gpu_name')}, torch {fp.get('torch_version')}, CUDA events. Medians over {rows[0].rounds} "
            "rounds. Batch on the GPU, fused optimiser, as `bench run --device cuda` trains. auto: the setting "
            f"`bench run --device cuda` trains in. {flops}; peak: an {CUDA_PEAK_SIDE} x {CUDA_PEAK_SIDE} matmul in the "
            f"setting's dtype (fp32 at torch's float32 matmul precision {fp.get('float32_matmul_precision')!r})."
        )
    load = fp.get("load_avg_1m")
    auto = f"auto: pinned by {PIN_ENV}" if os.environ.get(PIN_ENV) else "auto: what `bench run` resolves to here"
    return (
        f"{fp.get('cpu_model')}, {fp.get('torch_threads')} torch threads, torch {fp.get('torch_version')}, load "
        f"average (1 min) {'unknown' if load is None else f'{load:.1f}'}. Medians over {rows[0].rounds} rounds. "
        f"{auto}. {flops}; peak: a {PEAK_SIDE} x {PEAK_SIDE} matmul in the setting's dtype on the same threads."
    )
