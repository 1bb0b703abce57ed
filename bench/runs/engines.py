"""The CPU engine of each run of a sweep, decided while the sweep is planned, so its run key is known up front.

A CPU trains some backbones fastest in bf16 autocast and others in fp32, some channels-last and some not
(:mod:`bench.train.cpu_engine` measures it). The precision changes the numbers, so it is part of a run's
identity and key, and the key must be known before anything trains (finished runs are skipped by it, workers
check it). So :func:`resolve_engines` decides each local CPU run's setting here, in the driver, at the thread
count every worker of the sweep gets, and writes what differs from the CPU's standing fp32 NCHW into the spec
(``auto_precision``, ``memory_format``); a run that resolves to fp32 NCHW keeps its spec, identity and key as
they always were. Workers then only follow the spec. Runs on a Ray cluster are not measured here (their
machines are elsewhere): they train in the standing setting unless they ask for another.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.models.registry import get_backbone, resolve_resolution
from bench.precision import engine_name
from bench.protocol.spec import get_protocol
from bench.runs.spec import RunSpec, identity_precision
from bench.train.cpu_engine import STANDING, CpuChoice, choose_cpu_setting


@dataclass(frozen=True)
class EngineNote:
    """One decided setting, for the plan's output: which runs it covers and how it was decided; ``fused`` and
    ``compiled`` say what the runs asked for on top of it (``--fused-optimizer``, ``--compile``)."""

    backbone: str
    resolution: int  # the side the model sees
    batch_size: int
    threads: int
    choice: CpuChoice
    fused: bool = False
    compiled: bool = False

    def line(self) -> str:
        """``engine: resnet18 at 28 px, batch 128, 1 torch thread: bf16-nhwc (measured; step vs fp32-nchw ...)``."""
        c = self.choice
        setting = dataclasses.replace(c.setting, fused=self.fused, compiled=self.compiled)
        head = (
            f"engine: {self.backbone} at {self.resolution} px, batch {self.batch_size}, {self.threads} torch "
            f"thread{'s' if self.threads != 1 else ''}: {setting.name}"
        )
        if c.how == "asked":
            return f"{head} (asked for)"
        if c.how == "pinned":
            return f"{head} (pinned by BENCH_CPU_ENGINE)"
        assert c.measurement is not None
        steps = ", ".join(f"{name} {ratio:.2f}" for name, ratio in c.measurement.ratio.items())
        how = "measured now" if c.how == "measured" else f"measured {c.measurement.measured_at}"
        return f"{head} ({how}; training step vs fp32-nchw: {steps}; {c.path})"


def resolve_engines(specs: list[RunSpec], threads: int) -> tuple[list[RunSpec], list[EngineNote]]:
    """``specs`` with each run's CPU setting written in, and one note per (backbone, resolution, batch size).

    ``threads``: the torch threads each run will have. A measurement is made once per key and machine, then read
    from the cache (:func:`bench.train.cpu_engine.cpu_measurement`), so planning the same sweep again resolves
    every run the same way and finds its finished records.
    """
    notes: dict[tuple, EngineNote] = {}
    resolved = []
    for spec in specs:
        entry = get_backbone(spec.backbone)
        side = resolve_resolution(entry, spec.resolution, spec.resolution_policy)  # type: ignore[arg-type]
        batch = get_protocol(spec.protocol).batch_size
        asked = (spec.backbone, side, batch, spec.precision, spec.memory_format, spec.fused_optimizer, spec.compile)
        if asked not in notes:
            choice = choose_cpu_setting(spec.backbone, side, batch, threads, spec.precision, spec.memory_format)
            notes[asked] = EngineNote(spec.backbone, side, batch, threads, choice, spec.fused_optimizer, spec.compile)
        resolved.append(with_setting(spec, notes[asked].choice))
    return resolved, list(notes.values())


def with_setting(spec: RunSpec, choice: CpuChoice) -> RunSpec:
    """``spec`` saying what differs from the standing fp32 NCHW: a measured bf16, channels-last."""
    setting = choice.setting
    auto_precision = "bf16" if spec.precision == "auto" and setting.precision == "bf16" else None
    memory_format = spec.memory_format
    if memory_format == "auto" and setting.channels_last != STANDING.channels_last:
        memory_format = setting.memory_format
    return dataclasses.replace(spec, auto_precision=auto_precision, memory_format=memory_format)


def engine_label(spec: RunSpec, device_type: str) -> str:
    """What a planned run trains in, as the plan's table shows it (``bf16-nhwc`` on a CPU, ``auto`` on CUDA)."""
    precision = identity_precision(spec)
    if device_type != "cpu":
        return f"{precision} {spec.memory_format}" if spec.memory_format != "auto" else precision
    nhwc = spec.memory_format == "nhwc"
    return engine_name("fp32" if precision == "auto" else precision, nhwc, spec.fused_optimizer, spec.compile)
