"""Planning decides each CPU run's engine: what differs from fp32 NCHW goes into the spec, the key follows, a rerun
resolves the same way, and a bf16 run repeats bit for bit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import bench
import bench.train.cpu_engine as cpu_engine
from bench.data.loading import load_dataset
from bench.evaluation.scores import TestScores
from bench.runs.engines import engine_label, resolve_engines, with_setting
from bench.runs.plan import ExecutorRequest, SweepRequest, plan_sweep
from bench.runs.planned import sweep_records, sweep_runs
from bench.runs.record import RunRecord, probs_path, weights_path
from bench.runs.resolve import resolve
from bench.runs.runner import run
from bench.runs.spec import RunSpec
from bench.train.cpu_engine import ALL_SETTINGS, PIN_ENV, CpuChoice
from bench.train.engine import cpu_native_bf16
from bench.train.history import EpochLog
from bench.train.loop import predict
from bench.train.pipeline import BatchPipeline

SPEC = RunSpec(backbone="test_resnet", dataset="tiny", protocol="scratch", seed=0, epochs=2)
CPU = torch.device("cpu")
FP32_NCHW, FP32_NHWC, BF16_NCHW, BF16_NHWC = ALL_SETTINGS
needs_bf16 = pytest.mark.skipif(not cpu_native_bf16(), reason="this CPU has no native bf16")


@pytest.mark.parametrize(
    "asked, setting, auto_precision, memory_format",
    [
        ({}, FP32_NCHW, None, "auto"),  # the standing engine: the spec, and so the key, as before
        ({}, FP32_NHWC, None, "nhwc"),
        ({}, BF16_NHWC, "bf16", "nhwc"),
        ({}, BF16_NCHW, "bf16", "auto"),
        ({"precision": "bf16"}, BF16_NHWC, None, "nhwc"),  # asked for: already in the identity as bf16
        ({"memory_format": "nchw"}, BF16_NCHW, "bf16", "nchw"),
    ],
)
def test_the_spec_says_what_differs_from_fp32_nchw(asked, setting, auto_precision, memory_format):
    spec = dataclasses.replace(SPEC, **asked)
    resolved = with_setting(spec, CpuChoice(setting, "pinned"))
    assert (resolved.auto_precision, resolved.memory_format) == (auto_precision, memory_format)
    assert engine_label(resolved, "cpu") == setting.name


def test_fp32_nchw_leaves_the_spec_and_its_key_alone(project):
    (resolved,), (note,) = resolve_engines([SPEC], threads=1)  # the suite pins fp32-nchw (tests/conftest.py)
    assert resolved == SPEC and resolve(resolved).key == resolve(SPEC).key
    pinned = "engine: test_resnet at 28 px, batch 128, 1 torch thread: fp32-nchw (pinned by BENCH_CPU_ENGINE)"
    assert note.line() == pinned
    extras = dataclasses.replace(SPEC, fused_optimizer=True, compile=True)
    (_, (plain, both)) = resolve_engines([SPEC, extras], threads=1)  # one note each: the line says what runs
    assert both.line() == pinned.replace("fp32-nchw", "fp32-nchw+fused+compile") and plain.line() == pinned


def _scripted(fastest: str):
    """A measurement in which ``fastest`` takes half the time of the others."""

    def measure(steps, *args, **kwargs):
        return {name: [5.0 if name == fastest else 10.0] * 3 for name in steps}

    return measure


@needs_bf16
def test_a_measured_bf16_is_planned_keyed_and_run_and_a_rerun_finds_it(project, tmp_path, monkeypatch):
    monkeypatch.delenv(PIN_ENV)
    monkeypatch.setattr(cpu_engine, "measure_settings", _scripted("bf16-nhwc"))
    request = SweepRequest(backbones=("test_resnet",), datasets=("tiny",), epochs=1)
    executor = ExecutorRequest(device="cpu", workers=1)
    plan = plan_sweep(request, tmp_path / "results", executor)
    (planned,) = plan.planned
    assert (planned.spec.auto_precision, planned.spec.memory_format) == ("bf16", "nhwc")
    assert planned.identity.precision == "bf16" and planned.key == resolve(planned.spec).key
    assert planned.key != resolve(dataclasses.replace(planned.spec, auto_precision=None)).key
    (note,) = plan.engines
    assert note.choice.how == "measured" and note.line().startswith("engine: test_resnet at 28 px, batch 128, ")
    (record,) = plan.executor.run(plan.todo, tmp_path / "results", lambda planned: None)
    assert record.status == "ok", record.error
    assert (record.engine.amp, record.engine.channels_last) == ("bf16", True)
    assert record.path.name.startswith("scratch-r28-s0-bf16-") and record.protocol_label == "scratch@bf16"
    monkeypatch.setattr(cpu_engine, "measure_settings", _scripted("fp32-nchw"))  # a rerun does not measure again
    again = plan_sweep(request, tmp_path / "results", executor)
    assert again.engines[0].choice.how == "cached" and again.planned[0].key == planned.key and not again.todo
    assert (json.loads(record.path.read_text())["spec"]["auto_precision"]) == "bf16"
    # the sweep's auto run, whichever precision it resolved to
    assert sweep_records([record], sweep_runs([dataclasses.replace(SPEC, epochs=1)])) == [record]


def test_only_a_local_cpu_sweep_is_measured_here():
    """A Ray cluster's machines are elsewhere: its CPU runs train in the standing engine unless they ask."""
    from bench.runs.plan import planned_cpu_threads

    assert planned_cpu_threads(ExecutorRequest(kind="ray", device="cpu")) is None
    assert planned_cpu_threads(ExecutorRequest(device="cpu", workers=1)) >= 1


def _stable(record: RunRecord) -> dict:
    data = record.to_json()
    for epoch in data["history"]:
        for timing in EpochLog.TIMINGS:
            del epoch[timing]
    return {k: v for k, v in data.items() if k not in {"created", "timings_s", "latency", "environment"}}


@needs_bf16
@pytest.mark.parametrize("setting", ["bf16-nchw", "bf16-nhwc"])
def test_a_bf16_cpu_run_repeats_bit_for_bit(setting, project, tmp_path, monkeypatch):
    """The measured default engine is as deterministic as fp32 NCHW for a given thread count: records and saved
    probabilities equal to the bit."""
    monkeypatch.setenv(PIN_ENV, setting)
    (spec,), _ = resolve_engines([SPEC], threads=torch.get_num_threads())
    assert spec.auto_precision == "bf16"
    first, second = (run(spec, tmp_path / folder, CPU) for folder in ("a", "b"))
    assert first.status == second.status == "ok", first.error
    assert first.engine.amp == "bf16" and first.engine.channels_last == setting.endswith("nhwc")
    assert json.dumps(_stable(first), sort_keys=True) == json.dumps(_stable(second), sort_keys=True)
    assert Path(probs_path(first.path)).read_bytes() == Path(probs_path(second.path)).read_bytes()


@pytest.mark.parametrize("setting", ["fp32-nchw", pytest.param("bf16-nhwc", marks=needs_bf16)])
def test_a_fused_optimizer_run_is_its_own_experiment_and_repeats_bit_for_bit(setting, project, tmp_path, monkeypatch):
    """Fused AdamW on the CPU rounds otherwise than the loop: a key of its own (the loop's key untouched), the engine
    and label say so, and two runs agree to the bit."""
    monkeypatch.setenv(PIN_ENV, setting)
    (loop,), _ = resolve_engines([SPEC], threads=torch.get_num_threads())
    (fused,), _ = resolve_engines([dataclasses.replace(SPEC, fused_optimizer=True)], threads=torch.get_num_threads())
    assert resolve(fused).key != resolve(loop).key and resolve(loop).key == resolve(dataclasses.replace(loop)).key
    assert resolve(fused).identity.to_dict()["fused_optimizer"] is True
    assert "fused_optimizer" not in resolve(loop).identity.to_dict() and "fused_optimizer" not in loop.to_dict()
    assert engine_label(fused, "cpu") == f"{setting}+fused"
    first, second, unfused = (run(s, tmp_path / f, CPU) for s, f in ((fused, "a"), (fused, "b"), (loop, "c")))
    assert first.status == second.status == unfused.status == "ok", first.error
    assert first.engine.fused_optimizer and not unfused.engine.fused_optimizer
    assert first.protocol_label.endswith("+fused") and "-fused-" in first.path.name
    assert json.dumps(_stable(first), sort_keys=True) == json.dumps(_stable(second), sort_keys=True)
    assert Path(probs_path(first.path)).read_bytes() == Path(probs_path(second.path)).read_bytes()
    # the trained weights differ from the loop's (the probabilities of so tiny a model may round alike in bf16)
    fused_w, loop_w = (load_file(weights_path(r.path)) for r in (first, unfused))
    assert fused_w.keys() == loop_w.keys() and not all(torch.equal(fused_w[k], loop_w[k]) for k in fused_w)


@pytest.mark.slow
def test_a_compiled_run_is_its_own_experiment_repeats_bit_for_bit_and_scores_the_eager_model(
    project, tmp_path, monkeypatch
):
    """Training through torch.compile (TorchInductor's own kernels, rounded otherwise): a key of its own, the engine
    and label say so, Dynamo really compiled, two runs agree to the bit, and the recorded test probabilities are the
    eager model's (its kept weights rescored eagerly give them again)."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv(PIN_ENV, "fp32-nchw")
    (eager,), _ = resolve_engines([SPEC], threads=torch.get_num_threads())
    compiled = dataclasses.replace(eager, compile=True)
    assert resolve(compiled).key != resolve(eager).key and resolve(compiled).identity.to_dict()["compile"] is True
    assert "compile" not in resolve(eager).identity.to_dict() and "compile" not in eager.to_dict()
    assert engine_label(compiled, "cpu") == "fp32-nchw+compile"
    counters.clear()
    first = run(compiled, tmp_path / "a", CPU)
    assert first.status == "ok", first.error
    assert counters["stats"]["unique_graphs"] > 0  # Dynamo captured the training step
    second = run(compiled, tmp_path / "b", CPU)
    assert second.status == "ok", second.error
    assert first.engine.compile and first.protocol_label.endswith("+compile") and "-compile-" in first.path.name
    assert json.dumps(_stable(first), sort_keys=True) == json.dumps(_stable(second), sort_keys=True)
    assert Path(probs_path(first.path)).read_bytes() == Path(probs_path(second.path)).read_bytes()
    kept = first.kept_weights
    model = bench.load_model(first)  # eager, as a user reloads it
    data = load_dataset(SPEC.dataset, kept.input_size[-1])
    logits = predict(model, data.test, BatchPipeline(tuple(kept.mean), tuple(kept.std), CPU))
    assert np.array_equal(logits, TestScores.load(first.probs_path()).logits)
