"""``harness-auto`` of ``bench profile --peers`` in a process of its own, set up as a ``bench run`` worker trains.

A CPU run keeps freed memory in the process (:func:`bench.environment.allocator.hold_freed_memory`), which cannot
be undone once set, so the harness's auto engine is timed in a fresh process per round, like timm's
``train.py`` beside it, while the loops that stand for the old engine and the peers' own (``bare-fp32``,
``medmnist``, ``harness-fp32``) stay in the parent with the allocator as those programs run it. Called by
:func:`bench.train.peers.process_loop` as::

    python -m bench.train.peer_child NAME SIDE BATCH STEPS THREADS SETTING [--fused] [--default-allocator]

``SETTING`` is a CPU setting's name, or ``auto`` to resolve it here (pinned, cached, else measured now). The last
line of stdout is JSON: the setting (and its label, ``+fused`` where asked), how it was decided, whether freed
memory is held (``--default-allocator`` leaves glibc as it is, to measure what holding it buys:
``scripts/allocator_gain.py``), the minor page faults per timed step, the process's peak resident memory, and
``STEPS`` steps' (ms, data ms) after the :data:`bench.train.peer_timm.WARM` dropped ones, as train.py's first
updates are dropped.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import sys

import torch

from bench.environment.allocator import hold_freed_memory
from bench.train.cpu_engine import CpuSetting, setting_steps
from bench.train.peer_timm import WARM
from bench.train.peers import Step, auto_engine, timed


def main(argv: list[str]) -> dict:
    """Time ``argv``'s harness step (the module docstring's arguments); returns what is printed."""
    name, side, batch, steps, threads, asked = argv[0], *map(int, argv[1:5]), argv[5]
    fused = "--fused" in argv[6:]
    torch.set_num_threads(threads)
    held = False if "--default-allocator" in argv[6:] else hold_freed_memory()
    if asked == "auto":
        setting, note = auto_engine(name, side, batch, threads)
    else:
        setting, note = CpuSetting.parse(asked, "setting"), ""
    trained = dataclasses.replace(setting, fused=True) if fused else setting
    (step,) = setting_steps(name, side, batch, [trained]).values()

    def one() -> None:  # as harness_loop times it: the step, its loading inside
        step()

    timed(WARM, one)  # dropped, as train.py's first updates are
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out: list[Step] = timed(steps, one)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    reply = {"setting": setting.name, "engine": trained.name, "note": note, "held": held, "faults": faults}
    return reply | {"peak_mib": peak_mib, "steps": out}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
