"""Latency measurement: the CUDA path behind a fake backend (OOM back-off), the CPU timer, skipped
settings, the model restored, records and table from measured results, and one cross-check of a real CPU
measurement against ``torch.utils.benchmark``."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import timm
import torch
import torch.utils.benchmark as torch_benchmark
from rich.console import Console
from torch import nn

import bench.latency.measure as latency
from bench.errors import ConfigError, ResultsError
from bench.latency.measure import benchmark_backbones, measure_latency
from bench.latency.report import RECORD_SCHEMA, latency_table, save_latency_records
from bench.latency.timing import LatencyConfig, LatencyResult
from bench.timers.backends import CpuBackend

FAST = dict(warmup_iters=2, min_iters=20, max_iters=500, time_budget_s=10.0, device="cpu")


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


class FakeClock:
    """``perf_counter_ns`` stand-in: timed step k lasts ``durations_ms[k]`` (step 0 is the first call)."""

    def __init__(self, durations_ms):
        self.durations = iter(durations_ms)
        self.now = 0
        self.started = False

    def __call__(self) -> int:
        if self.started:
            self.now += round(next(self.durations) * 1e6)
        self.started = not self.started
        return self.now


class FakeCudaBackend:
    """The CUDA path's contract without a GPU: scripted step times, the CUDA OOM type, a call log."""

    kind = "cuda"
    device = torch.device("cpu")
    oom_errors = (torch.cuda.OutOfMemoryError,)
    memory_kind = "cuda_max_memory_allocated"

    def __init__(self, durations_ms=None):
        self.durations = iter(durations_ms) if durations_ms is not None else itertools.repeat(2.0)
        self.log: list[str] = []

    def time_ms(self, step):
        step()
        return next(self.durations)

    def synchronize(self):
        self.log.append("synchronize")

    def reset_peak_memory(self):
        self.log.append("reset_peak_memory")

    def peak_memory_bytes(self):
        return 4096

    def empty_cache(self):
        self.log.append("empty_cache")

    def fingerprint(self):
        return {"device_kind": "cuda", "gpu_name": "Fake GPU"}


class OomAbove(nn.Module):
    """Raises CUDA's out-of-memory error for batches larger than ``limit``, as a too-big batch would."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.body = tiny_model()

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake)")
        return self.body(x)


class FailsUnderAutocast(nn.Module):
    """Fails the way an op without a reduced-precision kernel does."""

    def __init__(self):
        super().__init__()
        self.body = tiny_model()

    def forward(self, x):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("\"slow_conv2d_cpu\" not implemented for 'Half'\nmore detail")
        return self.body(x)


def use_backend(monkeypatch, backend) -> None:
    monkeypatch.setattr(latency, "select_backend", lambda device: backend)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        measure_latency(tiny_model(), (3, 16, 16), LatencyConfig(device="cuda"))


# ------------------------------------------------------------------------------------------------ measurement

FIRST_CALL_MS = 1000.0  # a slow first call: if it leaked into the statistics the p50/mean would show it
WARMUP_MS = [7.0]  # FAST's one warm-up pass: leaked into the statistics, it would move a constant run's cv

# (case, warm-up durations, timed durations after them, config overrides, n_iters, stop reason, noisy fragment)
RUN_CASES = [
    ("stable: early stop at min_iters", WARMUP_MS, [5.0] * 500, dict(), 20, "cv", None),
    ("outliers: p50 stable", WARMUP_MS, ([5.0] * 4 + [50.0]) * 100, dict(), 20, "p50_ci", None),
    ("bimodal until the budget", WARMUP_MS, [10.0, 30.0] * 250, dict(time_budget_s=1.0), 50, "budget", "not stable"),
    ("bimodal until max_iters", WARMUP_MS, [10.0, 30.0] * 250, dict(max_iters=30), 30, "max_iters", "after 30"),
    (
        "slow model, tiny budget: says what budget min_iters need",
        [400.0],
        [400.0] * 10,
        dict(time_budget_s=1.0),
        2,  # the warm-up pass counts in the budget: 400 + 2 x 400 ms
        "budget",
        "ran out after 2 iterations (< min_iters 20) at 0.4 s a pass: 20 need a budget of about 9 s",
    ),
    (
        "slow model: warm-up ends by time, not after warmup_iters passes",
        [400.0, 400.0],
        [400.0] * 10,
        dict(warmup_iters=10, warmup_s=0.5, time_budget_s=2.0),
        3,  # 2 warm-up passes (800 ms >= 0.5 s) + 3 timed ones reach the 2 s budget
        "budget",
        "ran out after 3 iterations",
    ),
]


@pytest.mark.parametrize(
    "case, warmup, durations, overrides, n_iters, reason, noisy", RUN_CASES, ids=[c[0] for c in RUN_CASES]
)
def test_cpu_path_with_fake_clock(monkeypatch, case, warmup, durations, overrides, n_iters, reason, noisy):
    use_backend(monkeypatch, CpuBackend(clock=FakeClock([FIRST_CALL_MS, *warmup, *durations])))
    config = LatencyConfig(**{**FAST, "batch_sizes": (4,), **overrides})
    (result,) = measure_latency(tiny_model(), (3, 16, 16), config, backbone="tiny")
    timed = durations[:n_iters]
    assert (result.n_iters, result.stop_reason) == (n_iters, reason)
    assert result.noisy is (noisy is not None)
    assert noisy is None and result.noisy_reason is None or noisy in result.noisy_reason
    assert result.first_call_ms == pytest.approx(FIRST_CALL_MS)
    assert result.ms_per_batch_p50 == pytest.approx(float(np.median(timed)))
    assert result.ms_per_batch_mean == pytest.approx(float(np.mean(timed)))
    assert result.ms_per_image_p50 == pytest.approx(result.ms_per_batch_p50 / 4)
    assert result.throughput_img_s == pytest.approx(4 * 1000 / np.mean(timed))
    assert (result.backbone, result.batch_size_run, result.device_kind) == ("tiny", 4, "cpu")


def test_one_result_per_precision_and_batch(monkeypatch):
    use_backend(monkeypatch, FakeCudaBackend())
    config = LatencyConfig(**{**FAST, "batch_sizes": (1, 8), "precisions": ("fp32", "bf16")})
    results = measure_latency(tiny_model(), (3, 16, 16), config, backbone="tiny")
    assert [(r.precision, r.batch_size) for r in results] == [
        ("fp32", 1),
        ("fp32", 8),
        ("bf16", 1),
        ("bf16", 8),
    ]
    assert all(r.device_kind == "cuda" and r.fingerprint["gpu_name"] == "Fake GPU" for r in results)
    assert all(r.peak_memory_bytes == 4096 and r.peak_memory_kind == "cuda_max_memory_allocated" for r in results)


# (case, batch asked, largest batch that fits, batch that runs, sizes that ran out of memory)
OOM_CASES = [
    ("fits", 8, 8, 8, []),
    ("halved twice", 32, 8, 8, [32, 16]),
    ("odd batch rounds down", 12, 3, 3, [12, 6]),
    ("nothing fits", 4, 0, None, [4, 2, 1]),
]


@pytest.mark.parametrize("case, asked, limit, runs, backoff", OOM_CASES, ids=[c[0] for c in OOM_CASES])
def test_cuda_oom_halves_the_batch(monkeypatch, case, asked, limit, runs, backoff):
    backend = FakeCudaBackend()
    use_backend(monkeypatch, backend)
    (result,) = measure_latency(OomAbove(limit), (3, 16, 16), LatencyConfig(**{**FAST, "batch_sizes": (asked,)}))
    assert (result.batch_size, result.batch_size_run, result.oom_backoff) == (asked, runs, backoff)
    assert backend.log.count("empty_cache") == len(backoff)
    if runs is None:
        assert "out of memory at every batch size" in result.skipped and result.ms_per_batch_p50 is None
    else:
        assert result.skipped is None and result.ms_per_image_p50 == pytest.approx(2.0 / runs)


def test_cpu_does_not_back_off_on_oom(monkeypatch):
    """On the CPU an allocation failure is no batch-size signal: it surfaces."""
    use_backend(monkeypatch, CpuBackend())
    with pytest.raises(torch.cuda.OutOfMemoryError):
        measure_latency(OomAbove(1), (3, 16, 16), LatencyConfig(**{**FAST, "batch_sizes": (2,)}))


def test_unsupported_reduced_precision_is_skipped_not_fatal():
    config = LatencyConfig(**{**FAST, "batch_sizes": (2,), "precisions": ("fp32", "fp16"), "time_budget_s": 0.2})
    fp32, fp16 = measure_latency(FailsUnderAutocast(), (3, 16, 16), config)
    assert fp32.skipped is None and fp32.ms_per_batch_p50 > 0
    assert fp16.skipped == "fp16 failed on cpu: RuntimeError: \"slow_conv2d_cpu\" not implemented for 'Half'"
    assert fp16.ms_per_batch_p50 is None and fp16.n_iters == 0


def test_autocast_silently_disabled_is_skipped(monkeypatch):
    """torch.autocast disables itself (with a warning) for a dtype the device lacks: not to pass as fp16."""
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda device_type=None: False)
    config = LatencyConfig(**{**FAST, "batch_sizes": (2,), "precisions": ("fp16",)})
    (result,) = measure_latency(tiny_model(), (3, 16, 16), config)
    assert result.skipped == "fp16 autocast is not supported on cpu"


def test_fp32_eager_failure_is_an_error():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        measure_latency(Broken(), (3, 16, 16), LatencyConfig(**FAST))


def test_real_cpu_precisions_measured_or_skipped():
    """bf16 autocast works on recent CPUs; fp16 is measured where it works, else skipped with a reason."""
    config = LatencyConfig(
        **{**FAST, "batch_sizes": (2,), "precisions": ("fp32", "bf16", "fp16"), "time_budget_s": 0.2}
    )
    results = measure_latency(tiny_model(), (3, 16, 16), config)
    assert [r.precision for r in results] == ["fp32", "bf16", "fp16"]
    for r in results:
        assert r.skipped or (r.n_iters >= 1 and r.ms_per_batch_p50 > 0 and r.ms_per_batch_p90 >= r.ms_per_batch_p50)
    assert results[0].fingerprint["torch_threads"] == torch.get_num_threads()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("start_nhwc", [False, True])
def test_model_comes_back_as_it_went_in(channels_last, start_nhwc):
    """A training run measures its own model and carries on: mode, device and memory format are restored."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3)).train()
    if start_nhwc:
        model.to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = LatencyConfig(**{**FAST, "batch_sizes": (2,), "channels_last": channels_last, "time_budget_s": 0.1})
    (result,) = measure_latency(model, (3, 16, 16), config)
    assert result.memory_format == ("channels_last" if channels_last else "contiguous")
    assert model.training
    weight = model[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last if start_nhwc else torch.contiguous_format)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched


def test_compile_gets_a_fresh_static_graph_per_setting(monkeypatch):
    calls = []

    def fake_compile(model, **kwargs):
        calls.append(kwargs)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    # per setting: the first call (compiling), one warm-up pass, 20 timed passes
    use_backend(monkeypatch, FakeCudaBackend(itertools.cycle([30_000.0, *[2.0] * 21])))
    config = LatencyConfig(**{**FAST, "batch_sizes": (1, 4), "compile": True})
    results = measure_latency(tiny_model(), (3, 16, 16), config)
    assert calls == [{"dynamic": False}] * 2
    assert all(r.compiled and r.first_call_ms == 30_000.0 for r in results)
    assert "first call (compile) 30.0 s" in _render(results)


def test_compile_failure_is_skipped(monkeypatch):
    def failing_compile(model, **kwargs):
        def run(x):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    config = LatencyConfig(**{**FAST, "batch_sizes": (1,), "compile": True})
    (result,) = measure_latency(tiny_model(), (3, 16, 16), config)
    assert result.skipped.startswith("torch.compile failed on cpu: RuntimeError: InvalidCxxCompiler")


def test_cpu_peak_memory_sees_activations():
    """On Linux the peak-RSS delta grows with the batch (activations); elsewhere it is None by design."""
    config = LatencyConfig(**{**FAST, "batch_sizes": (1, 64), "time_budget_s": 0.2})
    small, large = measure_latency(nn.Conv2d(3, 64, 3, padding=1), (3, 64, 64), config)
    if small.peak_memory_bytes is None:
        pytest.skip("no /proc/self/clear_refs here")
    assert large.peak_memory_bytes > 64 * 64 * 64 * 64 * 4 * 0.9 > small.peak_memory_bytes


# ------------------------------------------------------------------------------------------------ reporting


def _render(results) -> str:
    console = Console(record=True, width=400)
    console.print(latency_table(results))
    return console.export_text()


def _fake_results(monkeypatch) -> list[LatencyResult]:
    use_backend(monkeypatch, FakeCudaBackend())
    return measure_latency(OomAbove(8), (3, 16, 16), LatencyConfig(**{**FAST, "batch_sizes": (1, 32)}), "tiny")


@pytest.mark.parametrize("width", [60, 80, 120])
def test_a_narrow_terminal_keeps_the_p50s_and_the_note_that_a_figure_is_noisy(monkeypatch, width):
    """Was: at 80 columns the Notes column, which says a figure is noisy, was the one left out."""
    import dataclasses
    import io

    from bench.cli.output import show

    results = [
        dataclasses.replace(r, noisy=True, noisy_reason="CV 0.31 above 0.10") if r.batch_size == 32 else r
        for r in _fake_results(monkeypatch)
    ]
    console = Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)
    show(latency_table(results), out=console)
    text = console.file.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    assert "noisy: CV 0.31" in " ".join(text.split()) and "OOM at 32, 16" in " ".join(text.split())
    for r in results:
        assert f"{r.ms_per_batch_p50:.2f}" in text or f"{r.ms_per_batch_p50:.3f}" in text
    left_out = " ".join(text.split(f"not shown at {width} columns:")[1:])
    assert not {"Notes", "p50", "Batch", "Backbone"} & set(left_out.replace(",", " ").split())


def test_table_labels_batch_and_image(monkeypatch):
    text = _render(_fake_results(monkeypatch))
    for header in ("p50 ms/batch", "p90 ms/batch", "p99 ms/batch", "p50 ms/image", "img/s"):
        assert header in text
    assert "8 (asked 32)" in text and "OOM at 32, 16" in text and "Fake GPU" in text


def test_records_round_trip_one_file_per_invocation(monkeypatch, tmp_path):
    results = _fake_results(monkeypatch)
    first = save_latency_records(results, tmp_path)
    second = save_latency_records(results, tmp_path)
    assert first != second and first.parent == tmp_path / "latency"
    stems = sorted([first.stem, second.stem])
    files = sorted(p.name for p in (tmp_path / "latency").iterdir())
    assert files == [f"{s}.{x}" for s in stems for x in ("json", "md")]
    summary = first.with_suffix(".md").read_text()  # the Markdown beside the JSON, for READMEs
    assert "| 8 (asked 32) |" in summary and "Fake GPU" in summary and "ms/batch: one forward pass" in summary
    payload = json.loads(first.read_text())
    assert payload["schema"] == RECORD_SCHEMA
    assert payload["records"][1]["oom_backoff"] == [32, 16] and payload["records"][1]["batch_size_run"] == 8
    assert payload["records"][0]["fingerprint"]["gpu_name"] == "Fake GPU"


def test_records_unwritable_folder_is_results_error(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ResultsError, match="cannot write"):
        save_latency_records(_fake_results(monkeypatch), blocker)


def test_benchmark_backbones_upsizes_and_labels(monkeypatch):
    """Each backbone is built at its effective resolution (inception_resnet_v2 needs 75 px)."""
    built = []

    def fake_create(name, num_classes):
        built.append((name, num_classes))
        return tiny_model(), {"source": "random-init"}

    monkeypatch.setattr(latency, "create_backbone", fake_create)
    use_backend(monkeypatch, FakeCudaBackend())
    config = LatencyConfig(**{**FAST, "batch_sizes": (1,)})
    results = benchmark_backbones(["resnet18", "inception_resnet_v2"], 28, config, num_classes=2)
    assert built == [("resnet18", 2), ("inception_resnet_v2", 2)]
    assert [(r.backbone, r.resolution) for r in results] == [("resnet18", 28), ("inception_resnet_v2", 75)]


# ------------------------------------------------------------------------------------------------ cross-check


def test_p50_agrees_with_torch_utils_benchmark():
    """The harness's p50 matches torch.utils.benchmark's blocked_autorange median within 10%.

    Same model, input and thread count (one thread: spin-waiting OpenMP threads turn a neighbour's load on a
    shared CPU into 10x swings). The two alternate in short paired rounds, so that drifting background load
    hits both alike, and the median of the paired ratios is compared; one retry. A systematic error
    (warm-up in the figures, a per-image/per-batch mix-up, a mis-scaled clock) still fails.
    """
    model = timm.create_model("resnet18", num_classes=10).eval()
    config = LatencyConfig(batch_sizes=(8,), warmup_iters=2, min_iters=10, time_budget_s=0.3, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        inputs = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        timer = torch_benchmark.Timer(
            stmt="with torch.inference_mode():\n    model(x)",
            globals={"model": model, "x": inputs, "torch": torch},
            num_threads=torch.get_num_threads(),
        )
        attempts = []
        for _ in range(2):
            ratios = []
            for _ in range(5):
                ours = measure_latency(model, (3, 64, 64), config)[0].ms_per_batch_p50
                theirs = timer.blocked_autorange(min_run_time=0.3).median * 1000
                ratios.append(ours / theirs)
            attempts.append(round(float(np.median(ratios)), 3))
            if abs(attempts[-1] - 1) <= 0.10:
                return
    finally:
        torch.set_num_threads(threads)
    pytest.fail(f"harness p50 / torch.utils.benchmark median, median over 5 pairs, per attempt: {attempts}")
