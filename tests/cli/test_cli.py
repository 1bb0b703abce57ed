"""The ``bench`` command end to end on a tiny dataset: run, resume, leaderboard, and user errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from console import run_bench

from bench.cli.commands import main
from bench.paths import WORKING_RESULTS
from bench.runs.record import load_records


def bench(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real console entry point, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-c", "from bench.cli.commands import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"bench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


RUN = (
    "run",
    "--backbones",
    "test_resnet",
    "--datasets",
    "tiny",
    "--seeds",
    "0,1",
    "--epochs",
    "2",
    "--results-dir",
    "results",
    "--device",
    "cpu",
)


def test_run_trains_records_and_ranks(project, tmp_path):
    out = bench(*RUN).stdout
    assert "2 run(s) done (0 failed)" in out
    assert "tiny: test split" in out and "majority" in out
    records = load_records(tmp_path / "results")
    assert len(records) == 2 and {r.status for r in records} == {"ok"}
    rec = records[0]
    # Provenance a reader needs to trust the number.
    assert rec.backbone.weights == {"source": "random-init"} and rec.backbone.params > 0
    assert rec.dataset.fingerprint and rec.environment.versions["torch"]
    assert len(rec.history) == 2 and rec.test.confusion_matrix
    assert rec.latency[0].batch_size == 1
    assert (tmp_path / "results" / "leaderboards" / "tiny.md").exists()
    assert list((tmp_path / "results" / "splits").glob("tiny-*.csv"))
    assert len(list((tmp_path / "results" / "runs").rglob("*.probs.npz"))) == 2

    # Resume: the same sweep again finds everything finished and writes no duplicate.
    again = bench(*RUN).stdout
    assert again.splitlines()[0].endswith(
        "; 2 skipped: a finished record with the same run key is in results/runs (to train them again, pass "
        "another --results-dir or delete those records)"
    )
    assert "0 run(s) done (0 failed), 2 already finished" in again
    assert len(load_records(tmp_path / "results")) == 2

    # The plan of a larger sweep, timed by the runs just made, trains nothing.
    plan = bench(*[("0,1,2,3" if a == "0,1" else a) for a in RUN], "--dry-run").stdout
    assert "4 runs: 2 done, 2 to do" in plan and "nothing was trained" in plan
    assert plan.count("median of 2 run(s)") == 2 and "tiny/test_resnet/scratch/s3" in plan
    # ... and says which engine the runs train in (the suite pins the CPU's standing one: tests/conftest.py)
    engine = r"^engine: test_resnet at 28 px, batch 128, \d+ torch threads?: fp32-nchw \(pinned by BENCH_CPU_ENGINE\)$"
    assert re.search(engine, plan, re.MULTILINE) and plan.count("fp32-nchw") >= 3, plan  # the line, a row a run
    assert len(load_records(tmp_path / "results")) == 2


def test_leaderboard_from_records_alone(project, tmp_path):
    bench(*RUN[:-4], "--seeds", "0", "--epochs", "1", "--results-dir", "results")
    out = bench("leaderboard", "--results-dir", "results", "--metric", "auc").stdout
    assert "sorted by auc" in out and "test_resnet" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (("run", "--backbones", "resnet181", "--datasets", "tiny"), "unknown backbone 'resnet181'"),
        (("run", "--backbones", "resnet18", "--datasets", "tiny2"), "unknown dataset 'tiny2'"),
        (("run", "--backbones", "resnet18"), "needs both --backbones and --datasets"),
        (("run", "--backbones", "resnet18", "--datasets", "tiny", "--seeds", "a"), "--seeds takes"),
        (("run", "--sweep", "missing.toml"), "--sweep missing.toml: no such file, and no sweep of that name"),
        (("run", "--sweep", "mision-cpu"), "(did you mean mission-cpu?)"),
        (("run", "--backbones", "resnet18", "--datasets", "tiny", "--protocol", "nope"), "unknown protocol 'nope'"),
        (("leaderboard", "--results-dir", "empty"), "no run records under empty/runs"),
        (
            ("run", "--backbones", "test_resnet", "--datasets", "tiny", "--precision", "fp8"),
            "--precision takes auto, fp32, bf16, fp16, got 'fp8'",
        ),
        (
            ("run", "--backbones", "test_resnet", "--datasets", "tiny", "--device", "cpu", "--precision", "bf16"),
            "--precision bf16: this CPU has no native bf16",
        ),
        (
            ("run", "--backbones", "test_resnet", "--datasets", "tiny", "--memory-format", "nwhc"),
            "--memory-format takes auto, nchw, nhwc, got 'nwhc'",
        ),
    ],
)
def test_user_errors_are_one_line(project, args, message, monkeypatch, capsys):
    """In-process (the subprocess path is covered above): exit status 2 and exactly one line."""
    import bench.train.engine

    monkeypatch.setattr(bench.train.engine, "cpu_native_bf16", lambda: False)  # bf16 refused as on an older CPU
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    assert exit_info.value.code == 2, out
    assert message in out.err and "Traceback" not in out.out + out.err
    assert len(out.err.strip().splitlines()) == 1, out.err


def test_pretrained_unavailable_is_a_failed_run_not_a_random_model(project, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = bench(
        "run", "--backbones", "test_resnet", "--datasets", "tiny", "--protocol", "linear", "--epochs", "1", check=False
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a failed run fails the sweep, after the others
    (record,) = load_records(tmp_path / WORKING_RESULTS)
    assert record.status == "failed" and "WeightsError" in record.error
    assert record.test is None and "test" not in json.loads(record.path.read_text())


def test_sweep_file(project, tmp_path):
    sweep = tmp_path / "mine.toml"
    sweep.write_text(
        'name = "mine"\n[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["tiny"]\nseeds = [3]\nepochs = 1\n'
    )
    bench("run", "--sweep", str(sweep))
    (record,) = load_records(tmp_path / WORKING_RESULTS)
    assert record.spec.seed == 3 and record.protocol.name == "scratch"


def _in_process(monkeypatch, capsys, *args: str) -> str:
    out = run_bench(monkeypatch, capsys, *args)
    assert out.status == 0, f"bench {' '.join(args)} exited {out.status}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_precision_is_a_run_of_its_own_unless_auto(project, tmp_path, monkeypatch, capsys):
    """fp32 is another run than auto (on the CPU, the same numbers); --precision auto finds the plain run done."""
    adhoc = ("run", "--backbones", "test_resnet", "--datasets", "tiny", "--epochs", "1", "--device", "cpu")
    assert "1 run(s) done (0 failed), 0 already finished" in _in_process(monkeypatch, capsys, *adhoc)
    out = _in_process(monkeypatch, capsys, *adhoc, "--precision", "fp32")
    assert "1 run(s) done (0 failed), 0 already finished" in out
    out = _in_process(monkeypatch, capsys, *adhoc, "--precision", "auto")
    assert "0 run(s) done (0 failed), 1 already finished" in out
    records = {r.spec.precision: r for r in load_records(tmp_path / WORKING_RESULTS)}
    assert records.keys() == {"auto", "fp32"} and records["auto"].key != records["fp32"].key
    assert records["fp32"].test == records["auto"].test  # autocast is off on the CPU either way
    assert [r.engine.amp for r in records.values()] == [None, None]


@pytest.mark.parametrize(
    "line, precision, refused_on_cpu",
    [
        ("", "auto", None),
        ('precision = "fp32"', "fp32", None),
        ('precision = "bf16"', "bf16", "--precision bf16: this CPU has no native bf16"),
        ('precision = "fp16"', "fp16", "--precision fp16 needs a CUDA device, not cpu"),
    ],
)
def test_sweep_group_precision(line, precision, refused_on_cpu, project, tmp_path, monkeypatch, capsys):
    import bench.train.engine
    from bench.runs.sweep import load_sweep

    monkeypatch.setattr(bench.train.engine, "cpu_native_bf16", lambda: False)

    sweep = tmp_path / "mine.toml"
    sweep.write_text(f'name = "mine"\n[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["tiny"]\n{line}\n')
    assert [s.precision for s in load_sweep(sweep).expand()] == [precision]
    if refused_on_cpu:
        out = run_bench(monkeypatch, capsys, "run", "--sweep", str(sweep), "--device", "cpu")
        err = out.stderr
        assert out.status == 2 and refused_on_cpu in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "results").exists()


def test_sweep_group_precision_is_checked(project, tmp_path):
    from bench.errors import ConfigError
    from bench.runs.sweep import load_sweep

    sweep = tmp_path / "mine.toml"
    sweep.write_text('name = "mine"\n[[group]]\nbackbones = ["r"]\ndatasets = ["d"]\nprecision = "fp8"\n')
    with pytest.raises(ConfigError, match=r"mine.toml: .*precision.* 'fp8'.*'auto', 'fp32', 'bf16', 'fp16'"):
        load_sweep(sweep)


def test_piped_run_names_every_run_whole(project):
    """A log of ``bench run`` (stdout not a terminal) holds each run's name whole, however narrow COLUMNS is."""
    args = ("run", "--backbones", "test_resnet", "--datasets", "tiny", "--seeds", "0", "--epochs", "1")
    proc = subprocess.run(
        [sys.executable, "-c", "from bench.cli.commands import main; main()", *args, "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "30"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bars = [line for line in proc.stdout.splitlines() if "tiny/test_resnet" in line]
    assert bars and all("tiny/test_resnet/scratch/s0" in line for line in bars), proc.stdout
