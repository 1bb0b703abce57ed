"""Which engine trains a backbone fastest on this CPU: fp32 or bf16 autocast, NCHW or channels-last, measured.

No rule of thumb picks it. On an AMD EPYC with AVX512-BF16 (one thread, batch 128, 32 px; training steps
relative to fp32 NCHW) resnet18 is fastest in bf16 channels-last (0.54) and so is densenet121 (0.42), but
efficientnet_b0 in fp32 channels-last (0.46), its bf16 NCHW step being slower than fp32 (1.06): the depthwise
convolutions decide. So :func:`measure_settings` times a few real harness training steps of every setting the
CPU has, interleaved round by round so that a busy neighbour slows them alike, and :func:`cpu_measurement` keeps
the medians in the cache folder, keyed by everything the ranking depends on (backbone, resolution, batch size,
torch threads, torch version, CPU model). The measurement is paid once per machine, and a rerun reads the same
file, so ``auto`` resolves the same way every time, as it must: the precision enters a run's key
(:func:`bench.runs.spec.identity_precision`).

``BENCH_CPU_ENGINE`` (``fp32-nchw``, ``fp32-nhwc``, ``bf16-nchw`` or ``bf16-nhwc``) pins what ``auto`` resolves
to without measuring. ``fp32-nchw`` is the engine of every CPU record made before the choice existed: the test
suite pins it, and remaking ``results/reference`` for the exact accuracy gate does.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from timm.data import resolve_data_config

from bench.environment.allocator import hold_freed_memory
from bench.environment.device import device_fingerprint
from bench.errors import ConfigError
from bench.files import write_json
from bench.models.registry import create_backbone
from bench.paths import cache_dir
from bench.precision import MemoryFormat, Precision, engine_name
from bench.protocol.finetune import apply_phase, set_train_mode
from bench.protocol.spec import get_protocol
from bench.timers.backends import Backend, CpuBackend
from bench.train.engine import Amp, check_precision, native_bf16, torch_threads, training_net
from bench.train.loop import train_step
from bench.train.optim import optimizer_for, scheduler_for
from bench.train.pipeline import BatchPipeline

CPU = torch.device("cpu")
PIN_ENV = "BENCH_CPU_ENGINE"

BF16_MARGIN = 0.95
"""bf16 is chosen only where its step takes at most 95% of the fastest fp32 step's time: it changes the numbers
and makes another experiment, so a tie within measurement noise keeps fp32 (and the records' keys)."""

STEP_PROTOCOL = "scratch"
"""Whose optimiser (Adam), schedule and augmentation the timed step uses: the harness step of a typical run."""


@dataclass(frozen=True)
class CpuSetting:
    """One way to train on a CPU: the autocast precision, whether images and weights are channels-last, whether
    the optimiser is torch's fused kernel, and whether the step runs through ``torch.compile``. ``auto`` chooses
    among the plain settings only: fusing and compiling round otherwise, so they are asked for
    (``RunSpec.fused_optimizer``, ``RunSpec.compile``), never measured into a run."""

    precision: Literal["fp32", "bf16"]
    channels_last: bool
    fused: bool = False
    compiled: bool = False

    @property
    def memory_format(self) -> MemoryFormat:
        return "nhwc" if self.channels_last else "nchw"

    @property
    def name(self) -> str:
        """``fp32-nchw``, ``bf16-nhwc``: the spelling of tables, the cache and ``BENCH_CPU_ENGINE``; ``+fused`` with
        the fused optimiser, ``+compile`` compiled (tables only)."""
        return engine_name(self.precision, self.channels_last, self.fused, self.compiled)

    @property
    def plain(self) -> bool:
        """Neither fused nor compiled: a setting ``auto`` may choose."""
        return not (self.fused or self.compiled)

    @classmethod
    def parse(cls, text: str, what: str) -> CpuSetting:
        for setting in ALL_SETTINGS:
            if setting.name == text.strip().lower():
                return setting
        raise ConfigError(f"{what} {text!r} is not one of {', '.join(s.name for s in ALL_SETTINGS)}")


STANDING = CpuSetting("fp32", False)
"""What a CPU trained with before the choice was measured, and what ``auto`` still means in a run's identity."""
ALL_SETTINGS = (STANDING, CpuSetting("fp32", True), CpuSetting("bf16", False), CpuSetting("bf16", True))


def settings_here(device: torch.device = CPU) -> tuple[CpuSetting, ...]:
    """The settings ``device`` can train in: bf16 only with native bf16 (emulated bf16 is slower than fp32). A
    GPU has the same four (``bench profile --engines --device cuda`` times them); only a CPU's are measured into
    ``auto``."""
    return ALL_SETTINGS if native_bf16(device) else ALL_SETTINGS[:2]


@dataclass(frozen=True)
class MeasureKey:
    """Everything the ranking of the settings depends on: another value of any of them is measured anew."""

    backbone: str
    resolution: int
    batch_size: int
    threads: int
    torch_version: str
    cpu_model: str

    @classmethod
    def here(cls, backbone: str, resolution: int, batch_size: int, threads: int) -> MeasureKey:
        cpu_model = str(device_fingerprint(CPU).get("cpu_model"))
        return cls(backbone, resolution, batch_size, threads, torch.__version__, cpu_model)

    def file_name(self) -> str:
        """Readable first, unique by a digest of the whole key (the CPU model and torch version included)."""
        import hashlib

        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.backbone}-r{self.resolution}-b{self.batch_size}-t{self.threads}-{digest}.json"


@dataclass(frozen=True)
class CpuMeasurement:
    """Each setting's training step for one :class:`MeasureKey`: its median and its ratio to fp32 NCHW.

    The ranking reads the ratios: each is the median over rounds of the setting's step over the fp32 NCHW step
    of the same round, so drift on a shared machine (a neighbour's job starting mid-measurement) cancels within
    a round, where the medians of separate series would carry it into the comparison.
    """

    key: MeasureKey
    step_ms: dict[str, float]  # median ms by CpuSetting.name
    ratio: dict[str, float]  # median over rounds of step / the fp32 NCHW step of the same round, by name
    rounds: int  # timed rounds per setting (each round runs every setting once)
    measured_at: str  # ISO time, UTC
    load_avg_1m: float | None = None  # the machine's load when measured: a busy one ranks less reliably

    @classmethod
    def of(cls, key: MeasureKey, times: dict[str, list[float]], load_avg_1m: float | None = None) -> CpuMeasurement:
        """From :func:`measure_settings`' per-round milliseconds (fp32 NCHW among them)."""
        base = times[STANDING.name]
        return cls(
            key=key,
            step_ms={name: statistics.median(ms) for name, ms in times.items()},
            ratio={name: statistics.median(t / b for t, b in zip(ms, base, strict=True)) for name, ms in times.items()},
            rounds=len(base),
            measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            load_avg_1m=load_avg_1m,
        )

    def fastest(self, allowed: Sequence[CpuSetting]) -> CpuSetting:
        """The fastest of ``allowed``; a bf16 one only if it beats every fp32 one by :data:`BF16_MARGIN`."""
        timed = [s for s in allowed if s.name in self.ratio]
        if not timed:
            raise ConfigError(f"the CPU engine measurement of {self.key.backbone} has none of the settings asked for")
        best = {p: min((s for s in timed if s.precision == p), key=self._ratio, default=None) for p in ("fp32", "bf16")}
        fp32, bf16 = best["fp32"], best["bf16"]
        if fp32 is None or (bf16 is not None and self._ratio(bf16) <= BF16_MARGIN * self._ratio(fp32)):
            return bf16  # type: ignore[return-value]  (one of the two is set: timed is not empty)
        return fp32

    def _ratio(self, setting: CpuSetting) -> float:
        return self.ratio[setting.name]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CpuMeasurement:
        return cls(**{**data, "key": MeasureKey(**data["key"])})


@dataclass(frozen=True)
class CpuChoice:
    """The setting a run trains in, and how it was decided: asked for, pinned, measured now, or read back."""

    setting: CpuSetting
    how: Literal["asked", "pinned", "measured", "cached"]
    measurement: CpuMeasurement | None = None
    path: Path | None = None  # the cache file, where a measurement decided


def choose_cpu_setting(
    backbone: str,
    resolution: int,
    batch_size: int,
    threads: int,
    precision: Precision = "auto",
    memory_format: MemoryFormat = "auto",
    folder: Path | None = None,
) -> CpuChoice:
    """The setting to train ``backbone`` in on this CPU, given what the run asked for.

    A concrete ``precision`` or ``memory_format`` is kept; each ``auto`` is decided by ``BENCH_CPU_ENGINE``
    when it is set, else by the (cached) measurement. A precision the CPU cannot run is a ConfigError.
    """
    check_precision(CPU, precision)
    precisions = ("fp32", "bf16") if precision == "auto" else (precision,)
    formats = (False, True) if memory_format == "auto" else (memory_format == "nhwc",)
    allowed = [s for s in settings_here() if s.precision in precisions and s.channels_last in formats]
    if len(allowed) == 1:
        return CpuChoice(allowed[0], "asked")
    pin = os.environ.get(PIN_ENV)
    if pin:
        pinned = CpuSetting.parse(pin, PIN_ENV)
        setting = CpuSetting(
            pinned.precision if precision == "auto" else precision,  # type: ignore[arg-type]
            pinned.channels_last if memory_format == "auto" else memory_format == "nhwc",
        )
        check_precision(CPU, setting.precision)
        return CpuChoice(setting, "pinned")
    measurement, path, cached = cpu_measurement(backbone, resolution, batch_size, threads, folder)
    return CpuChoice(measurement.fastest(allowed), "cached" if cached else "measured", measurement, path)


def cpu_measurement(
    backbone: str, resolution: int, batch_size: int, threads: int, folder: Path | None = None
) -> tuple[CpuMeasurement, Path, bool]:
    """The measurement of every setting for this key: read from ``folder`` (the cache's ``engines/``) or made
    now and saved there. Returns it, its file and whether it was read back."""
    found, path = cached_measurement(backbone, resolution, batch_size, threads, folder)
    if found is not None:
        return found, path, True
    with torch_threads(threads):
        times = measure_settings(setting_steps(backbone, resolution, batch_size, settings_here()))
    key = MeasureKey.here(backbone, resolution, batch_size, threads)
    measurement = CpuMeasurement.of(key, times, device_fingerprint(CPU).get("load_avg_1m"))
    write_json(path, measurement.to_dict())
    return measurement, path, False


def cached_measurement(
    backbone: str, resolution: int, batch_size: int, threads: int, folder: Path | None = None
) -> tuple[CpuMeasurement | None, Path]:
    """The saved measurement for this key and machine, if there is a readable one covering every setting here;
    and its file (where one is saved)."""
    key = MeasureKey.here(backbone, resolution, batch_size, threads)
    path = (folder or cache_dir() / "engines") / key.file_name()
    try:
        found = CpuMeasurement.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None, path  # absent or unreadable: to be measured again
    complete = found.key == key and set(found.ratio) >= {s.name for s in settings_here()}
    return (found if complete else None), path


def measure_settings(
    steps: dict[str, Callable[[], object]],
    rounds: int = 3,
    warmup: int = 1,
    budget_s: float = 60.0,
    clock: Backend | None = None,
) -> dict[str, list[float]]:
    """Milliseconds of each step per round, by name (:func:`setting_steps`), the steps interleaved.

    Each round runs every setting once, starting one further along each time, so none always runs on
    another's warm caches. The ``warmup`` rounds (oneDNN primitives, allocator) are not kept. Timed rounds are
    cut to what fits ``budget_s`` at the warm-up round's pace, one at least: at 224 px a large backbone's step
    takes many seconds on one thread, and the ranking it needs is coarse. ``clock``: the steps' device's timer
    (CUDA events on a GPU, :func:`bench.timers.backends.select_backend`); the CPU's by default. With the CPU's,
    glibc keeps freed memory first (:func:`bench.environment.allocator.hold_freed_memory`), as in a CPU run.
    """
    clock = clock or CpuBackend()
    if clock.device.type == "cpu":
        hold_freed_memory()  # the CPU settings timed under the allocator that bench run trains with
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(times)
    done = 0
    for i in range(warmup + rounds):
        order = names[i % len(names) :] + names[: i % len(names)]
        lap = {name: clock.time_ms(steps[name]) for name in order}
        if i < warmup:
            per_round_s = sum(lap.values()) / 1000
            if per_round_s * rounds > budget_s:
                rounds = max(1, int(budget_s / per_round_s))
            continue
        for name, ms in lap.items():
            times[name].append(ms)
        done += 1
        if done >= rounds:
            break
    return times


def setting_steps(
    backbone: str, resolution: int, batch_size: int, settings: Sequence[CpuSetting], device: torch.device = CPU
) -> dict[str, Callable[[], torch.Tensor]]:
    """A harness training step per setting (:func:`bench.train.loop.train_step`), each on its own copy of one
    freshly made model with its own optimiser, on one random uint8 batch of RGB images; a compiled setting's step
    calls ``torch.compile`` of its copy, which compiles at its first call. On a GPU the batch lives on it and the
    optimiser is the fused one, as in ``bench run --device cuda`` (:func:`bench.train.engine.engine_for`)."""
    protocol = get_protocol(STEP_PROTOCOL)
    phase = protocol.phases[0]
    torch.manual_seed(0)
    base, _ = create_backbone(backbone, num_classes=2)
    cfg = resolve_data_config({}, model=base)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, resolution, resolution), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 2, (batch_size,), generator=gen)
    images, labels = images.to(device), labels.to(device)
    fused_here = device.type == "cuda"
    steps = {}
    for setting in settings:
        model = copy.deepcopy(base)
        model.to(device, memory_format=torch.channels_last if setting.channels_last else torch.contiguous_format)
        names = set(apply_phase(model, phase))
        set_train_mode(model, phase)
        params = [p for n, p in model.named_parameters() if n in names]
        opt = optimizer_for(protocol, params, phase.lr, setting.fused or fused_here)
        sched = scheduler_for(opt, protocol, phase, steps_per_epoch=1000)
        pipeline = BatchPipeline(cfg["mean"], cfg["std"], device, setting.channels_last)
        amp = Amp("bf16" if setting.precision == "bf16" else None, device)
        net = training_net(model, setting.compiled)
        steps[setting.name] = partial(
            train_step, net, opt, sched, pipeline, images, labels, protocol.augment, gen, amp=amp
        )
    return steps
