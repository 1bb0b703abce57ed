"""The catalogue of bad input (issue 15): each case a user mistake that must exit 2 with one line naming it.

Every case runs the real console entry point in a subprocess, as a user would, in a tiny project whose
results folder already holds files; after the case every file under the test's folder (results, registry,
the places a path-like name points at) must be byte-identical and no file may have appeared. Cases fail
before anything trains, so the table stays fast; the last tests are the two tiny real runs (Ctrl-C, and
a protocol given as a file path elsewhere) and the pixel checks that need a decode.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import get_args, get_type_hints

import numpy as np
import pytest
from console import as_from_a_terminal

from bench.paths import WORKING_RESULTS

ENTRY = "from bench.cli import main; main()"
ADHOC = ("run", "--backbones", "test_resnet", "--datasets", "tiny", "--device", "cpu")


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def write_npz(path: Path, images: Callable | None = None, labels: Callable | None = None) -> None:
    """The tiny two-class npz, with ``images(array)`` / ``labels(array)`` applied to every split's arrays."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 48), ("val", 16), ("test", 24)):
        y = np.arange(n) % 2
        x = (np.where(y[:, None, None] == 1, 170, 80) + rng.normal(0, 30, (n, 28, 28))).clip(0, 255).astype(np.uint8)
        arrays[f"{split}_images"] = images(x) if images else x
        arrays[f"{split}_labels"] = labels(y[:, None]) if labels else y[:, None].astype(np.uint8)
    np.savez(path, **arrays)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


SWEEP = 'name = "{name}"\n[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["{dataset}"]\n{line}\n'


PROTOCOL_TOP = 'name = "p"\npretrained = false\n{top}\n'
PROTOCOL = PROTOCOL_TOP + '[[phases]]\nname = "full"\nepochs = 1\nlr = 0.01\ntrainable = 1.0\n{phase}\n'


def protocol_file(top: str = "", phase: str = "") -> Callable[[Path, Path], None]:
    return lambda home, tmp: write(tmp / "p.toml", PROTOCOL.format(top=top, phase=phase))


def sweep_file(line: str, name: str = "mine", dataset: str = "tiny") -> Callable[[Path, Path], None]:
    return lambda home, tmp: write(tmp / "mine.toml", SWEEP.format(name=name, dataset=dataset, line=line))


def backbone_file(name: str) -> Callable[[Path, Path], None]:
    return lambda home, tmp: write(home / "backbones" / "evil.toml", f'name = "{name}"\ntimm_name = "resnet18"\n')


def npz_file(**change: Callable) -> Callable[[Path, Path], None]:
    return lambda home, tmp: write_npz(home / "data" / "tiny.npz", **change)


def damaged_npz(keep: float) -> Callable[[Path, Path], None]:
    """The tiny npz cut to ``keep`` of its bytes (0: an empty file, as a full disk or a killed copy leaves)."""

    def damage(home: Path, tmp: Path) -> None:
        path = home / "data" / "tiny.npz"
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])

    return damage


# Every command with --results-dir, with what else it needs to reach the option's check.
RESULTS_DIR_COMMANDS = {
    "run": ADHOC,
    "leaderboard": ("leaderboard",),
    "plot": ("plot",),
    "report": ("report",),
    "compare": ("compare", "test_resnet", "resnet18"),
    "export": ("export",),
    "latency": ("latency", "--backbones", "test_resnet"),
    "reproduction": ("reproduction", "--sweep", "default"),
    "rank": ("rank",),
    "check": ("check",),
}


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    culprit: str  # what the one line must name ({tmp}: the test's folder)
    setup: Callable[[Path, Path], None] | None = None


CASES = [
    # Usage errors of the command line itself (typer's bundled click raised them past main()).
    Case("no-arguments", (), "Usage: bench"),
    Case("list-alone", ("list",), "Usage: bench list"),
    Case("unknown-command", ("lst",), "No such command 'lst'"),
    Case("missing-argument", ("compare", "resnet18"), "Missing argument 'b'"),
    Case("agreement-no-records", ("agreement", "{tmp}", "{tmp}"), "no run records under {tmp}/runs"),
    Case("unknown-option", ("report", "--outdir", "X"), "No such option: --outdir"),
    Case("not-an-integer", ("list", "backbones", "--resolution", "big"), "'--resolution'"),
    # Values out of range on the command line.
    Case("device-tpu", (*ADHOC, "--device", "tpu"), "--device takes auto, cpu, cuda or cuda:N, got 'tpu'"),
    Case("latency-device-tpu", ("latency", "--device", "tpu"), "--device takes auto, cpu, cuda or cuda:N"),
    Case("seed-negative", (*ADHOC, "--seeds", "-1"), "--seeds holds -1"),
    Case("seed-too-big", (*ADHOC, "--seeds", "99999999999"), "--seeds holds 99999999999"),
    # A weights file that is not one, refused while the sweep is planned (it failed each run before).
    Case(
        "weights-text-file",
        (*ADHOC, "--protocol", "linear", "--weights", "{tmp}/notes.txt"),
        "weights file {tmp}/notes.txt: not a safetensors file or PyTorch checkpoint",
        lambda project, tmp: (tmp / "notes.txt").write_text("root:x:0:0:root:/root:/bin/bash\n"),
    ),
    Case(
        "weights-empty-file",
        (*ADHOC, "--protocol", "linear", "--weights", "{tmp}/empty.pt"),
        "weights file {tmp}/empty.pt: not a safetensors file or PyTorch checkpoint (an empty file)",
        lambda project, tmp: (tmp / "empty.pt").write_bytes(b""),
    ),
    Case("seeds-empty", (*ADHOC, "--seeds", ","), "--seeds is empty"),
    Case("resolution-0", (*ADHOC, "--resolution", "0"), "'--resolution'"),
    Case("resolution-negative", (*ADHOC, "--resolution=-28"), "'--resolution'"),
    Case("resolution-huge", (*ADHOC, "--resolution", "100000"), "'--resolution'"),
    Case("list-resolution-0", ("list", "backbones", "--resolution", "0"), "'--resolution'"),
    Case("profile-resolution-huge", ("profile", "--resolutions", "28,100000"), "--resolutions is 100000"),
    Case("profile-compile-alone", ("profile", "--compile"), "--compile goes with --engines"),
    Case("profile-compile-peers", ("profile", "--peers", "--compile"), "--compile goes with --engines"),
    Case("profile-settings-alone", ("profile", "--settings", "bf16-nhwc"), "--settings goes with --engines"),
    Case("profile-settings-empty", ("profile", "--engines", "--settings", ","), "--settings is empty"),
    Case("profile-settings-unknown", ("profile", "--engines", "--settings", "fp16-nhwc"), "--settings 'fp16-nhwc'"),
    Case(
        "sweep-compile-word",
        ("run", "--sweep", "mine.toml"),
        "group[0].compile",
        sweep_file('compile = "yes"'),
    ),
    Case("epochs-0", (*ADHOC, "--epochs", "0"), "--epochs holds 0"),
    Case("epochs-per-phase-0", (*ADHOC, "--epochs", "3,0"), "--epochs holds 0"),
    Case("train-fraction-0", (*ADHOC, "--train-fractions", "0,0.5"), "--train-fractions holds 0.0: a training"),
    Case("train-fraction-percent", (*ADHOC, "--train-fractions", "10,25"), "--train-fractions holds 10.0"),
    Case("train-fraction-word", (*ADHOC, "--train-fractions", "half"), "--train-fractions takes comma-separated"),
    Case(
        "sweep-train-fraction-big",
        ("run", "--sweep", "mine.toml"),
        "group[0].train_fractions' holds 1.5",
        sweep_file("train_fractions = [0.5, 1.5]"),
    ),
    Case("sweep-and-adhoc", (*ADHOC, "--sweep", "default"), "--sweep and --backbones/--datasets"),
    # Names that would become paths outside --results-dir (or read a dataset file outside datasets/). A dataset
    # that reads as a path is a folder (bench.data.folder), named by its own checked name: a missing one is named.
    Case("dataset-relative-path", (*ADHOC[:4], "../../outside", "--device", "cpu"), "outside: no such folder"),
    Case("dataset-absolute-path", (*ADHOC[:4], "{tmp}/abs", "--device", "cpu"), "{tmp}/abs: no such folder"),
    Case("backbone-absolute-path", ("run", "--backbones", "{tmp}/abs", "--datasets", "tiny"), "backbone name"),
    Case("backbone-entry-relative", ADHOC, "evil.toml: field 'name'", backbone_file("../../../outside")),
    Case("sweep-name", ("run", "--sweep", "mine.toml"), "mine.toml: field 'name'", sweep_file("", name="../x")),
    Case(
        "sweep-dataset-path",
        ("run", "--sweep", "mine.toml"),
        "outside: no such folder",
        sweep_file("", dataset="../../outside"),
    ),
    # Values out of range in a sweep file: the file and the field are named.
    Case(
        "sweep-seed-too-big",
        ("run", "--sweep", "mine.toml"),
        "group[0].seeds' holds 99999999999",
        sweep_file("seeds = [99999999999]"),
    ),
    Case("sweep-seeds-empty", ("run", "--sweep", "mine.toml"), "group[0].seeds' is empty", sweep_file("seeds = []")),
    Case("sweep-epochs-0", ("run", "--sweep", "mine.toml"), "group[0].epochs' holds 0", sweep_file("epochs = 0")),
    Case(
        "sweep-resolution-0", ("run", "--sweep", "mine.toml"), "group[0].resolution' is 0", sweep_file("resolution = 0")
    ),
    Case(
        "sweep-resolution-negative",
        ("run", "--sweep", "mine.toml"),
        "group[0].resolution' is -28",
        sweep_file("resolution = -28"),
    ),
    Case(
        "sweep-resolution-huge",
        ("run", "--sweep", "mine.toml"),
        "group[0].resolution' is 100000",
        sweep_file("resolution = 100000"),
    ),
    Case(
        "sweep-resolution-policy",
        ("run", "--sweep", "mine.toml"),
        "group[0].resolution_policy' is 'shrink'",
        sweep_file('resolution_policy = "shrink"'),
    ),
    # npz files that decoded to nonsense or crashed: caught from their headers, so `bench list datasets` names them.
    Case("npz-strips", ("list", "datasets"), "train_images has shape (48, 28)", npz_file(images=lambda x: x[:, 0, :])),
    Case(
        "npz-object-images",
        ("list", "datasets"),
        "train_images has dtype object",
        npz_file(images=lambda x: x.astype(object)),
    ),
    Case("npz-float-labels", ("list", "datasets"), "holds label 0.5", npz_file(labels=lambda y: y + 0.5)),
    # Damaged npz files (issue 28): numpy's EOFError on an empty file read as Ctrl-D ("aborted: no input", 130).
    Case("npz-empty", ("list", "datasets"), "cannot read npz file {tmp}/home/data/tiny.npz: No data", damaged_npz(0)),
    Case("npz-empty-run", ADHOC, "cannot read npz file {tmp}/home/data/tiny.npz: No data left", damaged_npz(0)),
    Case("npz-truncated", ADHOC, "{tmp}/home/data/tiny.npz: File is not a zip file", damaged_npz(0.5)),
    # An empty --results-dir is the current folder to pathlib: runs/, splits/, leaderboards/ written there (issue 28).
    *(
        Case(f"results-dir-empty-{name}", (*args, "--results-dir", ""), "--results-dir is empty: name a folder")
        for name, args in RESULTS_DIR_COMMANDS.items()
    ),
    Case("results-dir-blank", (*ADHOC, "--results-dir", "  "), "--results-dir is only whitespace"),
    *(
        Case(f"protocol-{field}", (*ADHOC, "--protocol", "{tmp}/p.toml"), f"p.toml: field '{field}' is {shown}", setup)
        for field, shown, setup in (
            ("split", "'70/30'", protocol_file(top='split = "70/30"')),
            ("drop_rate", "1.5", protocol_file(top="drop_rate = 1.5")),
            ("sampler", "'even'", protocol_file(top='sampler = "even"')),
            ("phases[0].layer_decay", "0.0", protocol_file(phase="layer_decay = 0.0")),
            ("phases[0].unfreeze", "'slowly'", protocol_file(phase='unfreeze = "slowly"')),
            ("search.lr.low", "0.01", protocol_file(phase="[search]\ntrials = 2\nlr = { low = 1e-2, high = 1e-4 }")),
            ("search.trials", "0", protocol_file(phase="[search]\ntrials = 0\nlr = { low = 1e-4, high = 1e-2 }")),
        )
    ),
    Case("search-storage-not-a-url", (*ADHOC, "--search-storage", "not a url"), "'not a url' is not a database URL"),
]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the decode cache, by relative path, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "cache"
    }


@pytest.fixture
def filled_results(project, tmp_path) -> Path:
    """A results folder holding a record, its probabilities and a leaderboard, as after an earlier sweep."""
    results = tmp_path / WORKING_RESULTS  # where the commands look without --results-dir
    run_dir = results / "runs" / "tiny" / "test_resnet"
    write(run_dir / "scratch-r28-s0-0123456789ab.json", '{"schema": 1, "status": "ok", "key": "0123456789ab"}\n')
    (run_dir / "scratch-r28-s0-0123456789ab.probs.npz").write_bytes(b"not really an npz")
    write(results / "leaderboards" / "tiny.md", "| backbone |\n| --- |\n")
    return results


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, project, filled_results, tmp_path):
    if case.setup:
        case.setup(project, tmp_path)
    before = snapshot(tmp_path)
    proc = bench(*(a.format(tmp=tmp_path) for a in case.args))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output, output
    assert case.culprit.format(tmp=tmp_path) in output, output
    if not case.culprit.startswith("Usage"):  # help is the answer to a bare `bench`; everything else is one line
        assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout.strip(), output
    assert snapshot(tmp_path) == before  # nothing changed, nothing written, inside the results folder or out


def test_resolution_policies_read_from_sweeps_are_the_registrys():
    """Group names the choices without importing the registry (it would load torch for `bench --help`): same set."""
    from bench.models.registry import ResolutionPolicy
    from bench.runs.sweep import Group

    assert get_args(get_type_hints(Group)["resolution_policy"]) == get_args(ResolutionPolicy)


# ------------------------------------------------------------------------------------- pixels, checked on decoding


@pytest.mark.parametrize(
    "images, problem",
    [
        (lambda x: x.astype(np.int64) + 100, r"_images \(int64\) holds values 100\.\.3\d\d"),
        (lambda x: x.astype(np.float32) + 0.5, r"_images \(float32\) holds values .*whole-number floats"),
        (lambda x: np.where(x > 200, np.nan, x).astype(np.float64), "NaN or infinite"),
    ],
    ids=["int64-above-255", "float-fractional", "float-nan"],
)
def test_pixels_that_would_not_convert_exactly_are_refused(project, images, problem):
    from bench.data.loading import load_dataset
    from bench.errors import DataError

    write_npz(project / "data" / "tiny.npz", images=images)
    with pytest.raises(DataError, match=problem):
        load_dataset("tiny", 28)


@pytest.mark.parametrize(
    "images, labels",
    [
        (lambda x: x.astype(np.int64), None),  # crashed PIL ("Cannot handle this data type")
        (lambda x: x.astype(np.float32) / 255, None),  # [0, 1] floats, as ToTensor writes them
        (lambda x: x.astype(np.float64), lambda y: y.astype(np.float32)),  # whole-number floats, float labels 0./1.
        (lambda x: x[..., None], None),  # (N, H, W, 1)
    ],
    ids=["int64", "float-0-1", "float-whole", "channel-axis"],
)
def test_pixels_that_convert_exactly_load_as_the_uint8_file(project, tmp_path, monkeypatch, images, labels):
    from bench.data.loading import load_dataset

    write_npz(project / "data" / "tiny.npz")
    expected = load_dataset("tiny", 28)
    write_npz(project / "data" / "tiny.npz", images=images, labels=labels)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache2"))
    loaded = load_dataset("tiny", 28)
    for split in ("train", "val", "test"):
        assert (getattr(loaded, split).images[:] == getattr(expected, split).images[:]).all()
        assert (getattr(loaded, split).labels == getattr(expected, split).labels).all()


# ------------------------------------------------------------------------------------------------- two real runs


def test_ctrl_c_says_what_was_saved_and_how_to_resume(project, tmp_path):
    args = (*ADHOC, "--epochs", "200", "--results-dir", "results")
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=as_from_a_terminal,
    )
    deadline = time.monotonic() + 240
    while not list((tmp_path / "results").rglob("*.ckpt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before its first checkpoint"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    (line,) = err.strip().splitlines()
    assert line.startswith("interrupted: 0 run(s) finished now and 0 before are saved in results/runs")
    assert "resumes from its last epoch" in line and f"`bench {' '.join(args)}` again" in line
    assert list((tmp_path / "results").rglob("*.ckpt")), "the checkpoint the line promises is there"


# ------------------------------------------------------------------------------ the same checks through the API


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"images": lambda x: np.stack([x] * 4, axis=-1)}, r"train_images has shape \(48, 28, 28, 4\).*C = 1 or 3"),
        ({"labels": lambda y: y.astype(object)}, "train_labels has dtype object"),
        ({"labels": lambda y: y * 2}, "train_labels holds label 2, not in the class list"),
        ({"labels": lambda y: np.where(y == 1, np.nan, y)}, "holds label nan; labels must be whole"),
    ],
    ids=["rgba", "object-labels", "label-out-of-range", "nan-label"],
)
def test_npz_headers_and_labels_are_checked_before_any_decoding(project, change, problem):
    from bench.data.entries import get_dataset_entry
    from bench.data.loading import describe_dataset
    from bench.errors import DataError

    write_npz(project / "data" / "tiny.npz", **change)
    with pytest.raises(DataError, match=problem):
        describe_dataset(get_dataset_entry("tiny"))


def test_a_backbone_entry_named_by_an_absolute_path_is_refused(project, tmp_path):
    from bench.errors import ConfigError
    from bench.models.registry import list_backbones

    backbone_file(str(tmp_path / "abs"))(project, tmp_path)
    with pytest.raises(ConfigError, match=r"evil.toml: field 'name': backbone name '/.*/abs' is not a name"):
        list_backbones()


def test_a_protocol_file_is_named_by_its_stem(tmp_path):
    """What a record is to be filed under (RunSpec's wiring of it is the runs layer's): never a path."""
    from bench.errors import ConfigError
    from bench.protocol.spec import get_protocol, protocol_name

    assert protocol_name("scratch") == "scratch" and protocol_name(str(tmp_path / "x" / "good.toml")) == "good"
    with pytest.raises(ConfigError, match=r"my protocol.toml: protocol file name 'my protocol' is not a name"):
        get_protocol(str(tmp_path / "my protocol.toml"))


# ------------------------------------------------------------- damaged files and a full disk (issue 28), on the CLI


@pytest.fixture
def scored_results(tmp_path) -> Path:
    """Two backbones x two seeds on dataset ``d``, each record with its test probabilities beside it."""
    from factories import make_record, write_run

    labels = np.array([0] * 40 + [1] * 60)  # the factory's test class counts
    probs = np.stack([1 - labels * 0.8 - 0.1, labels * 0.8 + 0.1], axis=1)
    results = tmp_path / "scored"
    for backbone in ("resnet18", "vgg16"):
        for seed in (0, 1):
            write_run(make_record(backbone, seed), results, probs=probs, labels=labels)
    return results


# damage done to one probs file -> what the warning says after naming it
PROBS_DAMAGE = {
    "empty": (lambda path: path.write_bytes(b""), "unreadable test scores file, damaged (No data left in file)"),
    "truncated": (
        lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
        "unreadable test scores file, damaged (File is not a zip file)",
    ),
    "missing": (lambda path: path.unlink(), "missing, so"),  # not damaged: the warning's format alone was wrong
}


@pytest.mark.parametrize("command", ["leaderboard", "report"])
@pytest.mark.parametrize(("damage", "problem"), PROBS_DAMAGE.values(), ids=PROBS_DAMAGE.keys())
def test_a_damaged_probs_file_is_skipped_with_one_warning_line_naming_it(scored_results, command, damage, problem):
    """Was: "aborted: no input" (exit 130) for an empty file, a BadZipFile traceback for a truncated one, and
    Python's warning format (the harness's file, line number and source line) for a missing one."""
    (path, *_) = sorted(scored_results.rglob("*.probs.npz"))
    damage(path)
    proc = bench(command, "--results-dir", str(scored_results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = [line for line in proc.stderr.strip().splitlines() if not line.startswith("written: ")]
    assert line.startswith(f"warning: {path}: {problem}") and line.endswith(" its leaderboard row has no 95% CI")
    assert (scored_results / "leaderboards" / "d.md").is_file()


def test_the_one_line_warnings_are_the_commands_alone(scored_results, monkeypatch, capsys):
    """A library user calling bench's functions after a command still gets Python's own warnings."""
    import warnings

    from console import run_bench

    python_own = warnings.showwarning
    assert run_bench(monkeypatch, capsys, "leaderboard", "--results-dir", str(scored_results)).status == 0
    assert warnings.showwarning is python_own


FULL_DISK = """
import errno, sys
from PIL import Image

def full_disk(im, fp, filename, *args, **kwargs):  # some bytes reach the file, then the disk is full
    fp.write(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(100))
    raise OSError(errno.ENOSPC, "No space left on device")

Image.init()
Image.SAVE["PNG"] = full_disk
"""


@pytest.mark.parametrize("command", ["plot", "report"])
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_partial_file(scored_results, command):
    """Was: an OSError traceback and a 108-byte PNG left where the plot should be."""
    before = snapshot(scored_results)
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK + ENTRY, command, "--results-dir", str(scored_results)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    plot = scored_results / "plots" / "d-tradeoff.png"
    assert proc.stderr.strip() == f"error: cannot write {plot}: No space left on device"
    after = snapshot(scored_results)
    assert {path: after.get(path) for path in before} == before  # the records and their scores, untouched
    assert not [p for p in after if p.endswith(".png") or p.endswith(".tmp")], sorted(after)


def test_leakage_writes_the_clean_source_table_whole_or_not_at_all(tmp_path, monkeypatch, capsys):
    """Was: pandas' to_csv straight to the path, a traceback and a truncated CSV on a full disk."""
    from types import SimpleNamespace

    import pandas as pd
    from console import run_bench

    import bench.data.leakage as leakage

    overlap = SimpleNamespace(count=0, summary=lambda: "no overlap")
    monkeypatch.setattr(leakage, "check_overlap", lambda source, target: overlap)
    monkeypatch.setattr(leakage, "without_overlap", lambda source, target: pd.DataFrame({"image_id": ["a", "b"]}))
    out = tmp_path / "clean.csv"
    args = ("leakage", "ham10000", "isic", "--write-source", str(out))

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr("bench.files.os.fsync", full_disk)
        failed = run_bench(monkeypatch, capsys, *args)
    assert (failed.status, failed.stderr.strip()) == (2, f"error: cannot write {out}: No space left on device")
    assert list(tmp_path.iterdir()) == []
    assert run_bench(monkeypatch, capsys, *args).status == 0
    assert out.read_text() == "image_id\na\nb\n"
