"""``bench profile --peers``: the harness's training step against its peers' loops, side by side in one run.

For each backbone and resolution seven loops train the same architecture on batches of the same size, on the same
torch threads, round-robin in rounds (each round runs every loop for :attr:`PeerConfig.steps` timed steps, the
first loop one further along each round), so a busy neighbour slows them alike:

* ``bare-fp32``: ``zero_grad; F.cross_entropy(model(x), y).backward(); Adam.step()`` on a pre-made float batch;
* ``medmnist``: the MedMNIST v2 authors' ``train()`` (MedMNIST/experiments, ``MedMNIST2D/train_and_eval_pytorch.py``)
  around the same backbone: a ``DataLoader`` (shuffled, no workers, so its loading is part of its loop) over
  MedMNIST's ``__getitem__`` (``Image.fromarray``, ``convert("RGB")``, ``ToTensor``, ``Normalize(.5, .5)``),
  ``zero_grad``, forward, ``squeeze(targets, 1).long()``, ``nn.CrossEntropyLoss``, ``loss.item()`` twice (the
  epoch's list and the TensorBoard scalar, whose writer is left out), backward, ``Adam(lr=1e-3).step()``; fp32 NCHW;
* ``timm-default`` and ``timm-best``: timm's real ``train.py`` with its defaults, and with ``--channels-last --amp
  --amp-dtype bfloat16``, one process per round (:mod:`bench.train.peer_timm`), its step without its loader;
* ``timm-best-adam``: timm's best flags with the harness's optimiser (Adam, lr 1e-3, no weight decay) instead of
  its SGD: the engines compared with the optimiser no longer differing;
* ``harness-auto``: :func:`bench.train.loop.train_step` (uint8 batch, normalisation, the scratch protocol's batched
  augmentation, loss, Adam, scheduler) in the engine ``auto`` resolves to for ``bench run`` here (the
  ``BENCH_CPU_ENGINE`` pin, else the cached measurement, else one made now and not saved), in a process of its own
  each round set up as a CPU run is, glibc keeping freed memory (:mod:`bench.train.peer_child`,
  :mod:`bench.environment.allocator`), its first steps dropped as train.py's are;
* ``harness-fp32``: the same step in fp32 NCHW, the engine of every published CPU record, in this process, whose
  allocator is left as it is (as it was for those records, and for the bare and MedMNIST loops).

A loop's figure in a round is the median of its steps there; its ratio to another loop is the median over rounds
of the other's step over its own (images/s over images/s), with a distribution-free 95% interval. Only the ratios
carry over to another machine or another load.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.environment.device import device_fingerprint
from bench.errors import BenchError, ConfigError
from bench.models.registry import create_backbone, get_backbone, resolve_resolution
from bench.timers.median import median_ci95
from bench.train import peer_timm
from bench.train.cpu_engine import (
    CPU,
    PIN_ENV,
    STANDING,
    CpuSetting,
    cached_measurement,
    measure_settings,
    setting_steps,
    settings_here,
)
from bench.train.engine import torch_threads
from bench.train.engine_speed import auto_setting

LOOPS = ("bare-fp32", "medmnist", "timm-default", "timm-best", "timm-best-adam", "harness-auto", "harness-fp32")
TIMM_LOOPS = tuple(peer_timm.FLAGS)
NUM_CLASSES = peer_timm.NUM_CLASSES

Step = tuple[float, float]  # one step's milliseconds, and those of its loading part (0 where it loads nothing)


@dataclass(frozen=True)
class PeerConfig:
    """What ``bench profile --peers`` measures; the defaults are issue 30's (32 px, batch 128)."""

    backbones: tuple[str, ...] = ("resnet18", "densenet121", "efficientnet_b0")
    resolutions: tuple[int, ...] = (32,)
    batch_size: int = 128
    rounds: int = 4
    warmup: int = 1  # untimed steps of each in-process loop first (a train.py process drops peer_timm.WARM)
    steps: int = 3  # timed steps of every loop in each round
    threads: int | None = None  # torch CPU threads of every loop (None: as they are)
    loops: tuple[str, ...] = LOOPS
    timm_script: Path | None = None  # timm's train.py (peer_timm.check_script)
    fused: bool = False  # harness-auto with the fused optimiser (RunSpec.fused_optimizer)

    def __post_init__(self) -> None:
        for name in ("backbones", "resolutions", "loops"):
            if not getattr(self, name):
                raise ConfigError(f"profile --peers: {name} is empty: name at least one")
        for name in ("batch_size", "rounds", "steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"profile --peers: {name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or (self.threads is not None and self.threads < 1):
            raise ConfigError("profile --peers: warmup must be >= 0 and threads >= 1")
        unknown = [name for name in self.loops if name not in LOOPS]
        if unknown:
            raise ConfigError(f"profile --peers: unknown loop {unknown[0]!r}: the loops are {', '.join(LOOPS)}")
        if any(name in TIMM_LOOPS for name in self.loops):
            peer_timm.check_script(self.timm_script)


@dataclass
class Loop:
    """One peer's training loop, ready to run a round: ``run()`` returns that round's :data:`Step` list."""

    name: str
    engine: str  # fp32-nchw, bf16-nhwc: the precision and memory format the loop trains in
    run: Callable[[], list[Step]]
    model: nn.Module | None = None  # the model an in-process loop trains (None: in another process)
    note: str = ""  # how the engine was decided (harness-auto)


@dataclass(frozen=True)
class PeerSpeed:
    """One loop's training step for one backbone at one resolution, and its speed relative to every other loop."""

    backbone: str
    resolution: int
    batch_size: int
    loop: str
    engine: str
    step_ms: float  # median over rounds of the round's median step
    data_ms: float  # the same of its loading part (medmnist: inside step_ms; timm: left out of it)
    speedup: dict[str, float]  # by loop: median over rounds of that loop's step / this one's (x faster)
    speedup_ci95: dict[str, tuple[float, float]]
    rounds: int
    note: str = ""
    fingerprint: dict = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.batch_size / (self.step_ms / 1000)


def peer_speeds(config: PeerConfig) -> list[PeerSpeed]:
    """Every loop of ``config`` for every backbone and resolution, measured as the module docstring says."""
    entries = [get_backbone(name) for name in config.backbones]  # an unknown name fails before any measuring
    stemmed = [e.name for e in entries if e.small_input_stem]
    if stemmed and any(name in TIMM_LOOPS for name in config.loops):
        raise ConfigError(f"profile --peers: {stemmed[0]} replaces timm's stem, which timm's train.py cannot build")
    rows = []
    with torch_threads(config.threads), tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        threads = torch.get_num_threads()
        for asked in config.resolutions:
            for entry in entries:
                side = resolve_resolution(entry, asked, "upsize")
                folder = Path(tmp) / f"r{side}"
                if not folder.exists() and any(name in TIMM_LOOPS for name in config.loops):
                    folder.mkdir()
                    images = (peer_timm.WARM + config.steps) * config.batch_size
                    peer_timm.prepare(config.timm_script, folder, side, images)  # type: ignore[arg-type]
                fingerprint = device_fingerprint(CPU)
                loops = build_loops(entry.name, side, config, threads, folder)
                times = measure(loops, config.rounds, config.warmup)
                rows += summarise(entry.name, side, config.batch_size, loops, times, fingerprint)
                del loops  # this backbone's models go before the next one's are made
    return rows


def build_loops(name: str, side: int, config: PeerConfig, threads: int, folder: Path) -> list[Loop]:
    """The loops of ``config.loops`` for ``name`` at ``side``, in :data:`LOOPS` order; ``folder``: train.py's."""
    batch, steps = config.batch_size, config.steps

    def make(loop: str) -> Loop:
        if loop == "bare-fp32":
            return bare_loop(name, side, batch, steps)
        if loop == "medmnist":
            return medmnist_loop(name, side, batch, steps)
        if loop == "harness-auto":
            return process_loop(name, side, batch, steps, threads, config.fused)
        if loop == "harness-fp32":
            return harness_loop(loop, name, side, batch, steps, STANDING)
        return timm_loop(loop, get_backbone(name).arch, side, batch, threads, folder)

    return [make(loop) for loop in LOOPS if loop in config.loops]


def measure(loops: list[Loop], rounds: int, warmup: int) -> dict[str, list[list[Step]]]:
    """Each loop's steps per round, by name: ``warmup`` untimed steps of every in-process loop first, then
    ``rounds`` rounds of every loop, each round starting one loop further along."""
    for loop in loops:
        if loop.model is not None:
            for _ in range(warmup):
                loop.run()
    times: dict[str, list[list[Step]]] = {loop.name: [] for loop in loops}
    for i in range(rounds):
        for loop in loops[i % len(loops) :] + loops[: i % len(loops)]:
            times[loop.name].append(loop.run())
    return times


def summarise(
    name: str, side: int, batch_size: int, loops: list[Loop], times: dict[str, list[list[Step]]], fingerprint: dict
) -> list[PeerSpeed]:
    """One :class:`PeerSpeed` per loop from :func:`measure`'s steps: per round the median step, then ratios."""
    per_round = {loop: [statistics.median(ms for ms, _ in steps) for steps in rounds] for loop, rounds in times.items()}
    rows = []
    for loop in loops:
        own = per_round[loop.name]
        ratios = {other: [o / s for o, s in zip(ms, own, strict=True)] for other, ms in per_round.items()}
        rows.append(
            PeerSpeed(
                backbone=name,
                resolution=side,
                batch_size=batch_size,
                loop=loop.name,
                engine=loop.engine,
                step_ms=statistics.median(own),
                data_ms=statistics.median(statistics.median(d for _, d in steps) for steps in times[loop.name]),
                speedup={other: statistics.median(r) for other, r in ratios.items()},
                speedup_ci95={other: median_ci95(r) for other, r in ratios.items()},
                rounds=len(own),
                note=loop.note,
                fingerprint=fingerprint,
            )
        )
    return rows


def auto_engine(name: str, side: int, batch_size: int, threads: int) -> tuple[CpuSetting, str]:
    """What ``auto`` resolves to for ``bench run`` of ``name`` here, and how: pinned, cached or measured now
    (:func:`bench.train.cpu_engine.measure_settings`' three rounds, not saved, as ``--engines`` does)."""
    pin = os.environ.get(PIN_ENV)
    if pin:
        return CpuSetting.parse(pin, PIN_ENV), f"auto: pinned by {PIN_ENV}"
    cached, _ = cached_measurement(name, side, batch_size, threads)
    if cached is not None:
        return cached.fastest(settings_here()), "auto: the cached measurement"
    times = measure_settings(setting_steps(name, side, batch_size, settings_here()))
    return auto_setting(name, side, batch_size, threads, times, settings_here()), "auto: measured now"


def process_loop(name: str, side: int, batch_size: int, steps: int, threads: int, fused: bool = False) -> Loop:
    """``harness-auto`` in a fresh process each round (:mod:`bench.train.peer_child`), set up as a CPU run is
    (freed memory held, which this process is not); ``auto`` is resolved there in the first round."""
    loop = Loop("harness-auto", "auto", lambda: [])
    asked = "auto"

    def run() -> list[Step]:
        nonlocal asked
        reply = run_child([name, side, batch_size, steps, threads, asked, *(["--fused"] if fused else [])], threads)
        if asked == "auto":
            held = "glibc holding freed memory" if reply["held"] else "the allocator as it is"
            fused_note = ", fused optimiser asked for" if fused else ""
            loop.note = f"{reply['note']}{fused_note}; a process of its own each round, {held}, as bench run trains"
        asked, loop.engine = reply["setting"], reply["engine"]
        return [tuple(s) for s in reply["steps"]]

    loop.run = run
    return loop


def run_child(args: list[object], threads: int, timeout_s: float = 1800) -> dict:
    """Run :mod:`bench.train.peer_child` with ``args`` and ``threads`` OpenMP threads, this checkout importable;
    its reply (the last stdout line, parsed)."""
    argv = [sys.executable, "-m", "bench.train.peer_child", *map(str, args)]
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the bench package
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": path}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise BenchError(f"the harness's own process failed ({done.returncode}): {' '.join(argv[3:])}\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(steps: int, step: Callable[[], float | None]) -> list[Step]:
    """``steps`` calls of ``step`` (which may return its loading part's milliseconds), each timed."""
    out = []
    for _ in range(steps):
        start = time.perf_counter()
        data_ms = step()
        out.append(((time.perf_counter() - start) * 1000, data_ms or 0.0))
    return out


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model, _ = create_backbone(name, NUM_CLASSES)
    return model.train()


def bare_loop(name: str, side: int, batch_size: int, steps: int) -> Loop:
    """The bare fp32 NCHW step: Adam at torch's defaults, cross-entropy, on one pre-made normalised float batch."""
    model = _model(name)
    opt = torch.optim.Adam(model.parameters())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, side, side, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (batch_size,), generator=gen)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return Loop("bare-fp32", STANDING.name, lambda: timed(steps, step), model)


class MedMNISTLike(torch.utils.data.Dataset):
    """medmnist's ``MedMNIST2D.__getitem__`` over in-memory uint8 images (N, H, W, 3) and labels (N, 1), with
    ``as_rgb``: a PIL image, converted to RGB, then ``transform``; the target a (1,) int array."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable):
        self.imgs, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.imgs)

    def __getitem__(self, index: int):
        from PIL import Image

        img, target = self.imgs[index], self.labels[index].astype(int)
        return self.transform(Image.fromarray(img).convert("RGB")), target


def medmnist_loop(name: str, side: int, batch_size: int, steps: int, pool: int = 4) -> Loop:
    """MedMNIST v2's ``train()`` step around ``name`` (the module docstring), its loader over ``pool`` batches."""
    from torchvision import transforms

    model = _model(name)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (pool * batch_size, side, side, 3), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, (pool * batch_size, 1))
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=[0.5], std=[0.5])])
    loader = torch.utils.data.DataLoader(MedMNISTLike(images, labels, transform), batch_size=batch_size, shuffle=True)
    state = {"batches": iter(loader)}
    total_loss: list[float] = []

    def step() -> float:
        start = time.perf_counter()
        try:
            inputs, targets = next(state["batches"])
        except StopIteration:  # the next epoch
            state["batches"] = iter(loader)
            inputs, targets = next(state["batches"])
        data_ms = (time.perf_counter() - start) * 1000
        optimizer.zero_grad()
        outputs = model(inputs)
        targets = torch.squeeze(targets, 1).long()
        loss = criterion(outputs, targets)
        total_loss.append(loss.item())
        loss.item()  # writer.add_scalar("train_loss_logs", loss.item(), iteration)
        loss.backward()
        optimizer.step()
        return data_ms

    return Loop("medmnist", STANDING.name, lambda: timed(steps, step), model)


def harness_loop(
    loop: str, name: str, side: int, batch_size: int, steps: int, setting: CpuSetting, note: str = ""
) -> Loop:
    """The harness training step in ``setting`` (:func:`bench.train.cpu_engine.setting_steps`), named ``loop``."""
    (step,) = setting_steps(name, side, batch_size, [setting]).values()
    model = step.args[0]  # a partial of bench.train.loop.train_step: the model it trains comes first

    def run_step() -> None:  # its loading (uint8 to float, augmentation) is inside the step: not told apart
        step()

    return Loop(loop, setting.name, lambda: timed(steps, run_step), model, note)


def timm_loop(loop: str, arch: str, side: int, batch_size: int, threads: int, folder: Path) -> Loop:
    """timm's train.py with the flags of ``loop`` (:data:`bench.train.peer_timm.FLAGS`), one process per round."""
    flags = peer_timm.FLAGS[loop]
    engine = CpuSetting("bf16" if "--amp" in flags else "fp32", "--channels-last" in flags).name
    return Loop(loop, engine, lambda: peer_timm.run(folder, arch, side, batch_size, flags, threads))
