"""timm's own ``train.py``, run for real in a subprocess, and its per-update times read from its log.

``bench profile --peers`` (:mod:`bench.train.peers`) compares the harness's training step with timm's training
script. The script is not in the timm wheel and is not vendored here: the caller names a copy of it
(``--timm-script`` or ``BENCH_TIMM_SCRIPT``; e.g. ``git show v1.0.x:train.py`` in a pytorch-image-models
clone, the version matching the installed timm), whose text :func:`prepare` copies into a temporary folder at
run time, beside a synthetic ImageFolder (random RGB PNGs at the measured side, two classes). There it runs
with this interpreter as ::

    train.py --data-dir data --model ARCH --num-classes 2 --img-size SIDE --batch-size B --epochs 1
             --device cpu --workers 0 --val-split '' --log-interval 1 --output out [FLAGS]

and train.py's defaults for everything else: SGD with Nesterov momentum 0.9, weight decay 2e-5 (none on biases
and norms), label-smoothing cross-entropy (0.1; mixup is off), fp32 NCHW, the prefetcher (uint8 to normalised
float in the loader), a per-epoch cosine schedule, ``loss.item()`` every update. ``--amp --amp-dtype bfloat16``
puts the forward pass and loss under ``torch.autocast("cpu", bfloat16)`` with no grad scaler (train.py makes one
for float16 on CUDA only) and ``--channels-last`` turns the model and every batch channels-last. ``timm-best-adam``
is the best flags with the harness's optimiser (``--opt adam --weight-decay 0 --lr 1e-3``, the scratch protocol's;
torch's ``Adam`` in its default per-tensor loop on the CPU, as the harness's): the engines side by side with the
optimiser no longer differing.

With ``--log-interval 1`` train.py logs each update's ``Time`` (from the end of the previous update: loading the
batch, forward, loss, backward, optimiser step, ``zero_grad``, ``loss.item()``) and ``Data`` (the loading part:
the DataLoader's PIL decoding and augmentation and the prefetcher's normalisation, in this process with
``--workers 0``). ``Time - Data`` is the training step alone, what is compared: with its default 4 workers the
loading runs in other processes, beside the step. Each process's first :data:`WARM` updates are dropped
(oneDNN primitives are made then), and its log must say the precision asked for (``AMP not enabled`` or
``Using native Torch AMP``), so a flag that stopped working fails loudly instead of timing the wrong loop.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.errors import BenchError, ConfigError

WARM = 2
"""Updates dropped at the start of each train.py process."""

_BEST = ("--channels-last", "--amp", "--amp-dtype", "bfloat16")
FLAGS: dict[str, tuple[str, ...]] = {
    "timm-default": (),
    "timm-best": _BEST,
    "timm-best-adam": (*_BEST, "--opt", "adam", "--weight-decay", "0", "--lr", "1e-3"),
}
"""The command-line flags of each timm loop: its defaults, its best CPU flags, and those with the harness's Adam."""

NUM_CLASSES = 2
SCRIPT_NAME = "train.py"
_UPDATE = re.compile(r"Train: \d+ \[\s*(\d+)/\s*\d+.*?Time: ([\d.]+)s,.*?Data: ([\d.]+) \(")
_PRECISION = {True: "Using native Torch AMP", False: "AMP not enabled"}


def script_digest(script: Path) -> str:
    """The first 12 hex digits of the script's SHA-256: which train.py the figures are of."""
    return hashlib.sha256(script.read_bytes()).hexdigest()[:12]


def check_script(script: Path | None) -> Path:
    """``script`` if it is a readable timm ``train.py``, else a ConfigError saying how to get one."""
    how = (
        "name timm's train.py with --timm-script or BENCH_TIMM_SCRIPT (it is not in the timm wheel: "
        "`git show v<timm version>:train.py` in a clone of huggingface/pytorch-image-models)"
    )
    if script is None:
        raise ConfigError(f"profile --peers: the timm loops run timm's own training script: {how}")
    try:
        text = script.read_text()
    except OSError as err:
        raise ConfigError(f"profile --peers: cannot read timm's train.py at {script}: {err}") from None
    if "def train_one_epoch" not in text or "--amp-dtype" not in text:
        raise ConfigError(f"profile --peers: {script} does not look like timm's train.py: {how}")
    return script


def prepare(script: Path, folder: Path, side: int, images: int, seed: int = 0) -> Path:
    """Copy ``script`` into ``folder`` and write ``images`` random RGB PNGs of ``side`` px under
    ``folder/data/train/<class>/``, split over :data:`NUM_CLASSES` classes; returns the copy's path."""
    from PIL import Image

    copy = folder / SCRIPT_NAME
    shutil.copyfile(script, copy)
    rng = np.random.default_rng(seed)
    for i in range(images):
        label = f"c{i % NUM_CLASSES}"
        (folder / "data" / "train" / label).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "data" / "train" / label / f"{i:05d}.png")
    return copy


def command(folder: Path, arch: str, side: int, batch_size: int, flags: Sequence[str]) -> list[str]:
    """The train.py command line for one timed process (the module docstring's)."""
    return [
        sys.executable, str(folder / SCRIPT_NAME), "--data-dir", str(folder / "data"), "--model", arch,
        "--num-classes", str(NUM_CLASSES), "--img-size", str(side), "--batch-size", str(batch_size),
        "--epochs", "1", "--device", "cpu", "--workers", "0", "--val-split", "", "--log-interval", "1",
        "--output", str(folder / "out"), *flags,
    ]  # fmt: skip


def read_updates(log: str) -> list[tuple[float, float]]:
    """``(Time, Data)`` in milliseconds of every ``Train:`` line of a train.py log, in update order."""
    found = {int(m[1]): (1000 * float(m[2]), 1000 * float(m[3])) for m in _UPDATE.finditer(log)}
    return [found[i] for i in sorted(found)]


def run(
    folder: Path, arch: str, side: int, batch_size: int, flags: Sequence[str], threads: int, timeout_s: float = 1800
) -> list[tuple[float, float]]:
    """One train.py process over the prepared folder: ``(step ms, data ms)`` of each update after :data:`WARM`,
    the step being ``Time - Data``. ``threads``: torch's CPU threads there (``OMP_NUM_THREADS``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    shutil.rmtree(folder / "out", ignore_errors=True)  # checkpoints of the last process: not read
    argv = command(folder, arch, side, batch_size, flags)
    done = subprocess.run(
        argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s
    )
    log = done.stdout
    tail = "\n".join(log.splitlines()[-15:])
    if done.returncode != 0:
        raise BenchError(f"timm's train.py failed ({done.returncode}) for {arch} at {side} px:\n{tail}")
    amp = "--amp" in flags
    if _PRECISION[amp] not in log:
        raise BenchError(f"timm's train.py did not log {_PRECISION[amp]!r} for flags {list(flags)}:\n{tail}")
    updates = read_updates(log)
    if len(updates) <= WARM:
        raise BenchError(f"timm's train.py logged {len(updates)} updates, more than {WARM} needed:\n{tail}")
    return [(max(0.0, total - data), data) for total, data in updates[WARM:]]
