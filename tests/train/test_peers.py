"""``bench profile --peers``: each peer's loop really trains, in the precision and memory format it claims, and
timm's own train.py is run and read. No timing is asserted: the figures are printed by the command.

The tests that run timm's real ``train.py`` need a copy of it (the timm wheel lacks it): they run where
``BENCH_TIMM_SCRIPT`` names one and are skipped elsewhere; a stand-in script that logs in train.py's format checks
the subprocess plumbing everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from console import run_bench
from rich.console import Console

from bench.errors import BenchError, ConfigError
from bench.train import peer_timm
from bench.train.cpu_engine import PIN_ENV, STANDING, CpuSetting, setting_steps, settings_here
from bench.train.peer_table import peer_frame, peer_table, target_table
from bench.train.peers import (
    LOOPS,
    PeerConfig,
    PeerSpeed,
    bare_loop,
    harness_loop,
    medmnist_loop,
    peer_speeds,
)

TINY, SIDE, BATCH = "test_resnet", 16, 4
REAL_SCRIPT = os.environ.get("BENCH_TIMM_SCRIPT")
needs_real_script = pytest.mark.skipif(
    not (REAL_SCRIPT and Path(REAL_SCRIPT).is_file()), reason="BENCH_TIMM_SCRIPT names no copy of timm's train.py"
)


class Probe:
    """What the first convolution of ``model`` sees while training: autocast, dtypes and memory formats."""

    def __init__(self, model: torch.nn.Module):
        self.seen: dict = {}
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(self._hook)

    def _hook(self, module, args, out) -> None:
        self.seen = {
            "autocast": torch.is_autocast_enabled("cpu"),
            "autocast_dtype": torch.get_autocast_dtype("cpu"),
            "out_dtype": out.dtype,
            "input_channels_last": args[0].is_contiguous(memory_format=torch.channels_last),
            "weight_channels_last": module.weight.is_contiguous(memory_format=torch.channels_last),
        }


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _changed(before: list[torch.Tensor], model: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    "make, bf16, channels_last",
    [
        (lambda: bare_loop(TINY, SIDE, BATCH, 2), False, False),
        (lambda: medmnist_loop(TINY, SIDE, BATCH, 2, pool=1), False, False),
        (lambda: harness_loop("harness-fp32", TINY, SIDE, BATCH, 2, STANDING), False, False),
        (lambda: harness_loop("harness-auto", TINY, SIDE, BATCH, 2, CpuSetting("bf16", True)), True, True),
        (lambda: harness_loop("harness-auto", TINY, SIDE, BATCH, 2, CpuSetting("fp32", True)), False, True),
    ],
    ids=["bare", "medmnist", "harness-fp32", "harness-bf16-nhwc", "harness-fp32-nhwc"],
)
def test_each_in_process_loop_trains_in_the_engine_it_claims(make, bf16, channels_last):
    loop = make()
    assert loop.engine == CpuSetting("bf16" if bf16 else "fp32", channels_last).name
    probe, before = Probe(loop.model), _weights(loop.model)
    steps = loop.run()
    assert len(steps) == 2 and all(ms > 0 and data >= 0 for ms, data in steps)
    assert _changed(before, loop.model), f"{loop.name}: a step left every weight as it was"
    assert loop.model.training
    seen = probe.seen
    assert seen["autocast"] is bf16 and seen["out_dtype"] == (torch.bfloat16 if bf16 else torch.float32)
    assert seen["input_channels_last"] is channels_last and seen["weight_channels_last"] is channels_last


def test_the_medmnist_loop_times_its_loader_and_wraps_to_the_next_epoch():
    loop = medmnist_loop(TINY, SIDE, BATCH, 3, pool=2)  # 2 batches an epoch: the third step starts another
    steps = loop.run()
    assert len(steps) == 3 and all(0 < data < ms for ms, data in steps)


def test_peer_speeds_measures_every_asked_loop_in_the_same_rounds(monkeypatch):
    monkeypatch.setenv(PIN_ENV, "fp32-nhwc")
    loops = ("bare-fp32", "medmnist", "harness-auto", "harness-fp32")
    config = PeerConfig((TINY,), (SIDE,), BATCH, rounds=2, steps=1, threads=1, loops=loops)
    before = torch.get_num_threads()
    rows = peer_speeds(config)
    assert torch.get_num_threads() == before
    assert [r.loop for r in rows] == list(loops)
    auto = rows[2]
    assert auto.engine == "fp32-nhwc" and "pinned" in auto.note
    for r in rows:
        assert r.rounds == 2 and r.step_ms > 0 and set(r.speedup) == set(loops)
        assert r.speedup[r.loop] == 1.0 and r.speedup_ci95[r.loop] == (1.0, 1.0)
        assert r.fingerprint["torch_threads"] == 1


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_harness_auto_runs_in_a_process_of_its_own_set_up_as_a_cpu_run(monkeypatch):
    def refuse() -> bool:
        raise AssertionError("this process was told to hold freed memory: its in-process loops would time with it")

    monkeypatch.setattr("bench.train.cpu_engine.hold_freed_memory", refuse)  # the child process is not patched
    monkeypatch.delenv(PIN_ENV, raising=False)
    config = PeerConfig((TINY,), (SIDE,), BATCH, rounds=2, steps=2, threads=1, loops=("harness-auto", "harness-fp32"))
    auto, fp32 = peer_speeds(config)
    assert auto.note.startswith("auto: ") and auto.engine in {s.name for s in settings_here()}
    assert "a process of its own each round, glibc holding freed memory, as bench run trains" in auto.note
    assert auto.rounds == 2 and auto.step_ms > 0 and fp32.note == ""


def test_a_fused_harness_auto_trains_with_the_fused_optimiser(monkeypatch):
    monkeypatch.setenv(PIN_ENV, "fp32-nhwc")
    config = PeerConfig((TINY,), (SIDE,), BATCH, rounds=1, steps=1, threads=1, loops=("harness-auto",), fused=True)
    (row,) = peer_speeds(config)
    assert row.engine == "fp32-nhwc+fused" and "fused optimiser asked for" in row.note
    steps = setting_steps(TINY, SIDE, BATCH, [STANDING, dataclasses.replace(STANDING, fused=True)])
    optimisers = {name: step.args[1] for name, step in steps.items()}  # a partial of train_step(model, opt, ...)
    assert optimisers["fp32-nchw+fused"].defaults["fused"] is True and not optimisers["fp32-nchw"].defaults["fused"]


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"loops": ("bare-fp32", "keras")}, "unknown loop 'keras'"),
        ({"loops": ()}, "loops is empty"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"loops": ("timm-best",)}, "--timm-script"),
        ({"loops": ("timm-default",), "timm_script": Path("/nonexistent/train.py")}, "cannot read"),
    ],
)
def test_config_refuses_nonsense(fields, match):
    with pytest.raises(ConfigError, match=match):
        PeerConfig(**fields)


def test_a_script_that_is_not_timms_train_py_is_refused(tmp_path):
    other = tmp_path / "train.py"
    other.write_text("print('hello')\n")
    with pytest.raises(ConfigError, match="does not look like timm's train.py"):
        PeerConfig(loops=("timm-best",), timm_script=other)


LOG = """\
AMP not enabled. Training in torch.float32.
Train: 0 [   0/4 ( 25%)]  Loss: 0.723 (0.723)  Time: 0.698s,  183.31/s  (0.698s,  183.31/s)  LR: 1.000e-05  Data: 0.099 (0.099)
Train: 0 [   1/4 ( 50%)]  Loss: 0.734 (0.729)  Time: 0.643s,  199.07/s  (0.671s,  190.86/s)  LR: 1.000e-05  Data: 0.072 (0.086)
Train: 0 [   2/4 ( 75%)]  Loss: 0.701 (0.720)  Time: 0.598s,  214.20/s  (0.646s,  198.06/s)  LR: 1.000e-05  Data: 0.068 (0.080)
Train: 0 [   3/4 (100%)]  Loss: 0.800 (0.740)  Time: 0.680s,  188.36/s  (0.655s,  195.54/s)  LR: 1.000e-05  Data: 0.000 (0.077)
"""  # noqa: E501  (train.py's own lines, as it logs them with --log-interval 1)


def test_train_py_log_lines_are_read_as_time_and_data():
    assert peer_timm.read_updates(LOG) == [(698.0, 99.0), (643.0, 72.0), (598.0, 68.0), (680.0, 0.0)]


def _stand_in(tmp_path: Path, body: str) -> Path:
    """A script that passes for train.py and prints ``body`` (it records its arguments in args.json)."""
    script = tmp_path / "stand_in.py"
    script.write_text(
        textwrap.dedent(f"""\
        # def train_one_epoch, --amp-dtype: what check_script looks for
        import json, os, sys
        json.dump({{"argv": sys.argv[1:], "threads": os.environ["OMP_NUM_THREADS"]}}, open("args.json", "w"))
        sys.stdout.write({body!r})
        """)
    )
    return script


def test_the_stand_in_process_is_run_with_the_flags_and_its_warm_updates_dropped(tmp_path):
    script = peer_timm.check_script(_stand_in(tmp_path, LOG))
    folder = tmp_path / "run"
    folder.mkdir()
    peer_timm.prepare(script, folder, side=8, images=6)
    assert len(list((folder / "data" / "train").rglob("*.png"))) == 6
    steps = peer_timm.run(folder, "resnet18", 8, 3, peer_timm.FLAGS["timm-default"], threads=1)
    assert steps == [(598.0 - 68.0, 68.0), (680.0, 0.0)]  # updates 0 and 1 dropped (WARM); Time - Data
    called = json.loads((folder / "args.json").read_text())
    assert called["threads"] == "1"
    argv = called["argv"]
    assert argv[argv.index("--model") + 1] == "resnet18" and argv[argv.index("--img-size") + 1] == "8"
    assert argv[argv.index("--batch-size") + 1] == "3" and "--amp" not in argv
    with pytest.raises(BenchError, match="Using native Torch AMP"):  # asked for bf16, the log says fp32
        peer_timm.run(folder, "resnet18", 8, 3, peer_timm.FLAGS["timm-best"], threads=1)


def test_a_failing_train_py_says_why(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("# def train_one_epoch --amp-dtype\nraise SystemExit('no such model')\n")
    folder = tmp_path / "run"
    folder.mkdir()
    peer_timm.prepare(script, folder, side=8, images=2)
    with pytest.raises(BenchError, match="no such model"):
        peer_timm.run(folder, "nope", 8, 2, (), threads=1)


PROBE = """\
import atexit, json, runpy, sys
import torch, timm.models
seen = {}
made = timm.models.create_model
def create_model(*args, **kwargs):
    model = made(*args, **kwargs)
    before = [p.detach().clone() for p in model.parameters()]
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    def hook(module, inputs, out):
        if module.training:
            seen.update(autocast=torch.is_autocast_enabled("cpu"), out_dtype=str(out.dtype),
                        input_channels_last=inputs[0].is_contiguous(memory_format=torch.channels_last),
                        weight_channels_last=module.weight.is_contiguous(memory_format=torch.channels_last))
    conv.register_forward_hook(hook)
    def done():
        seen["changed"] = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        json.dump(seen, open("probe.json", "w"))
    atexit.register(done)
    return model
timm.models.create_model = create_model
import timm.optim
made_opt = timm.optim.create_optimizer_v2
def create_optimizer_v2(*args, **kwargs):
    opt = made_opt(*args, **kwargs)
    seen["optimizer"] = type(opt).__name__
    seen["foreach"] = [group.get("foreach") for group in opt.param_groups]
    return opt
timm.optim.create_optimizer_v2 = create_optimizer_v2
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@needs_real_script
@pytest.mark.parametrize("loop", ["timm-default", "timm-best", "timm-best-adam"])
def test_timms_real_train_py_trains_in_the_engine_its_flags_claim(tmp_path, loop):
    folder = tmp_path / loop
    folder.mkdir()
    peer_timm.prepare(Path(REAL_SCRIPT), folder, side=SIDE, images=(peer_timm.WARM + 2) * BATCH)
    flags = peer_timm.FLAGS[loop]
    argv = peer_timm.command(folder, TINY, SIDE, BATCH, flags)
    (folder / "probe.py").write_text(PROBE)  # the same command line, train.py run under a probe of its model
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "probe.py", *argv[1:]], cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    seen = json.loads((folder / "probe.json").read_text())
    best = loop.startswith("timm-best")
    assert seen["changed"], "train.py's steps left every weight as it was"
    # timm-best-adam: the harness's optimiser, in torch's default per-tensor loop as the harness runs it on the CPU
    assert seen["optimizer"] == ("Adam" if loop == "timm-best-adam" else "SGD") and not any(seen["foreach"])
    assert seen["autocast"] is best and seen["out_dtype"] == ("torch.bfloat16" if best else "torch.float32")
    assert seen["input_channels_last"] is best and seen["weight_channels_last"] is best
    steps = peer_timm.run(folder, TINY, SIDE, BATCH, flags, threads=1)  # the timed run itself, unprobed
    assert len(steps) == 2 and all(ms > 0 for ms, _ in steps)


@needs_real_script
def test_profile_peers_prints_every_loop_and_the_targets(monkeypatch, capsys):
    monkeypatch.setenv(PIN_ENV, "fp32-nchw")
    args = ("profile", "--peers", "--timm-script", REAL_SCRIPT, "--backbones", TINY, "--resolutions", str(SIDE))
    args += ("--batch-size", str(BATCH), "--rounds", "1", "--warmup", "0", "--threads", "1", "--format", "json")
    result = run_bench(monkeypatch, capsys, *args)
    assert result.status == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["loop"] for r in rows] == list(LOOPS) and all(r["x_timm-best"] > 0 for r in rows)


def test_profile_peers_without_timm_loops_needs_no_script(monkeypatch, capsys):
    monkeypatch.setenv(PIN_ENV, "fp32-nchw")
    monkeypatch.delenv("BENCH_TIMM_SCRIPT", raising=False)
    args = ("profile", "--peers", "--loops", "bare-fp32,harness-auto", "--backbones", TINY, "--resolutions", "16")
    args += ("--batch-size", "2", "--rounds", "1", "--warmup", "0", "--threads", "1", "--format", "md")
    result = run_bench(monkeypatch, capsys, *args)
    assert result.status == 0, result.stderr
    assert "| harness-auto |" in result.stdout and "issue 30's targets" in result.stdout
    refused = run_bench(monkeypatch, capsys, "profile", "--peers", "--backbones", TINY, "--resolutions", "16")
    assert refused.status != 0 and "--timm-script" in refused.stderr


def _row(loop: str, speedup: dict[str, float], backbone: str = "resnet18") -> PeerSpeed:
    fingerprint = {"cpu_model": "Some CPU", "torch_threads": 1, "torch_version": "2.14", "load_avg_1m": 2.5}
    intervals = {k: (v * 0.9, v * 1.1) for k, v in speedup.items()}
    return PeerSpeed(backbone, 32, 128, loop, "bf16-nhwc", 256.0, 0.0, speedup, intervals, 4, "auto: x", fingerprint)


def test_the_tables_show_the_ratios_and_which_targets_are_unmet():
    rows = [
        _row("harness-auto", {"bare-fp32": 2.5, "timm-best": 1.2, "timm-default": 1.5, "harness-fp32": 2.0}),
        _row(
            "harness-auto",
            {"timm-best": 0.9, "timm-best-adam": 0.7, "timm-default": 2.0, "harness-fp32": 1.1},
            backbone="vgg16",
        ),
    ]
    console = Console(width=250, record=True)
    console.print(peer_table(rows))
    console.print(target_table(rows))
    text = console.export_text()
    assert "500" in text and "2.50" in text and "2.25-2.75" in text and "1.20" in text  # img/s, x bare, its CI
    assert "load average" in text.lower() and "Only the ratios are meaningful" in text
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ ") and " px " in line}
    assert lines["resnet18"].rstrip(" │").endswith("timm-default")  # 1.5 < 1.8; 2.0 >= 1.8; 1.2 >= 1.0
    assert lines["vgg16"].rstrip(" │").endswith("timm-best")  # no fp32 target for vgg16: 1.1 is no miss
    assert "0.70 " in lines["vgg16"] and "0.70 (>=" not in lines["vgg16"]  # same-optimiser: shown, not a target
    frame = peer_frame(rows)
    assert frame.loc[0, "x_timm-best"] == 1.2 and frame.loc[1, "x_timm-best_ci_low"] == pytest.approx(0.81)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_allocator_gain_times_the_step_with_glibc_as_it_is_and_holding_memory():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    argv = [sys.executable, "-m", "bench.train.peer_child", TINY, str(SIDE), str(BATCH), "2", "1", "fp32-nhwc"]
    replies = [
        json.loads(subprocess.run(a, env=env, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        for a in (argv, [*argv, "--default-allocator"])
    ]
    assert [r["held"] for r in replies] == [True, False]
    assert all(r["engine"] == "fp32-nhwc" and len(r["steps"]) == 2 and r["faults"] >= 0 for r in replies)
    assert all(r["peak_mib"] > 100 for r in replies)  # torch alone is more than that: KiB were read as KiB
    script = [sys.executable, str(root / "scripts" / "allocator_gain.py"), "--backbones", TINY, "--resolution"]
    done = subprocess.run([*script, str(SIDE), "--batch-size", str(BATCH), "--rounds", "2"], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    (row,) = [line for line in done.stdout.splitlines() if line.startswith(f"| {TINY} |")]
    assert len(row.split("|")) == 11, row  # backbone, engine, two times, two fault counts, two peaks, the ratio
