"""Shared benchmark fixtures: one torch thread, and the machine's speed measured beside every benchmark."""

from __future__ import annotations

import time

import pytest
import torch

THREADS = 1
"""One torch thread: on a shared 2-core machine two threads swing by 40x, and CI runners differ in cores."""

REFERENCE_ROUNDS = 15


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield THREADS
    torch.set_num_threads(before)


class ReferenceStep:
    """A fixed plain-torch training step, timed in CPU seconds on one thread: the machine's speed.

    The same shared VM has run the same code 1.5-1.7x slower from one hour to the next, and by 20% from one
    second to the next, every benchmark alike. This workload holds no harness code (a two-layer CNN built
    here, SGD, a fixed batch), so dividing a benchmark by it cancels the machine and keeps the harness: a
    harness change moves the benchmark and not this. ``best`` is the fastest step seen; benchmarks pass
    :meth:`setup` to ``benchmark.pedantic`` so steps are timed between their rounds (untimed by
    pytest-benchmark), in the same seconds as the rounds themselves.

    Slow spells last a fraction of a second (the data pipeline's fastest of 200 rounds, 0.1 s of work, has
    read 897 and 535 us in one process), so a fastest round means something only over a span of a second
    or more; each benchmark runs that long, and the reference is sampled across the whole span.
    """

    EVERY_S = 0.05
    """:meth:`setup` times a step when this much wall time has passed since the last: ~20 samples a second,
    however short the benchmark's rounds."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1),
            torch.nn.BatchNorm2d(32),
            torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(64, 2),
        )
        self.x = torch.randn(32, 3, 28, 28, generator=gen)
        self.y = torch.randint(0, 2, (32,), generator=gen)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.01)
        self.best = float("inf")
        self._last = 0.0
        for _ in range(3):  # warm-up, not counted
            self._step()

    def _step(self) -> float:
        before = torch.get_num_threads()
        torch.set_num_threads(THREADS)
        try:
            start = time.process_time()
            self.opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(self.net(self.x), self.y).backward()
            self.opt.step()
            return time.process_time() - start
        finally:
            torch.set_num_threads(before)

    def time(self, steps: int = 1) -> float:
        """Time ``steps`` steps; returns (and keeps, if faster) the fastest."""
        fastest = min(self._step() for _ in range(steps))
        self.best = min(self.best, fastest)
        self._last = time.perf_counter()
        return fastest

    def setup(self) -> None:
        """For ``benchmark.pedantic(setup=...)``: a reference step before a round, every ``EVERY_S`` seconds."""
        if time.perf_counter() - self._last >= self.EVERY_S:
            self.time()


@pytest.fixture
def reference() -> ReferenceStep:
    return ReferenceStep()


@pytest.fixture(autouse=True)
def machine_speed(request):
    """Record ``reference_s`` for every benchmark: the fastest reference step before, during and after it.

    The blocks before and after cover a benchmark that does not pass ``reference.setup``; the speed gate
    (tests/benchmarks/speed_gate.py) divides each benchmark's fastest round by this.
    """
    if "benchmark" not in request.fixturenames:
        yield
        return
    benchmark = request.getfixturevalue("benchmark")
    ref = request.getfixturevalue("reference")
    ref.time(REFERENCE_ROUNDS)
    yield
    ref.time(REFERENCE_ROUNDS)
    benchmark.extra_info["reference_s"] = ref.best
