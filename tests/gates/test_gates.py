"""The CI gates: the accuracy gate (exact on the reference's platform, tolerant elsewhere, and saying which),
the docs-numbers gate (the README and the docs pages), and both as commands, including a real rerun and a
planted regression."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from console import run_bench
from factories import make_record

from bench.errors import ConfigError
from bench.files import write_json
from bench.gates.accuracy import (
    REFERENCE_DIR,
    MetricCheck,
    Tolerance,
    compare_records,
    environment_differences,
    load_tolerance,
    reference_threads,
)
from bench.gates.readme import check_readme, generated_blocks, refresh_readme
from bench.reports.leaderboard import leaderboard
from bench.reports.render import write_leaderboard
from bench.runs.identity import run_key
from bench.runs.record import RunRecord, load_records, save_record
from bench.runs.resolve import experiment_identity
from bench.runs.spec import RunSpec
from bench.train.engine import EngineConfig

METRICS = {"accuracy": 0.8, "balanced_accuracy": 0.7, "macro_f1": 0.6, "auc": 0.9, "sensitivity": 0.5}


def record(dataset="d", seed=0, torch_version="2.14.1", threads=2, cpu="cpu-x", status="ok", **changes) -> RunRecord:
    """A run record as the runner writes it (the shared factory's); the key changes with torch."""
    config = {k: changes.pop(k) for k in ("lr", "fingerprint", "epochs") if k in changes}
    metrics = METRICS | changes | {"confusion_matrix": [[1, 2], [3, 4]], "absent_classes": []}
    return make_record(
        "resnet18", seed, status=status, dataset=dataset, metrics=metrics, torch_version=torch_version,
        threads=threads, device=cpu, **config,
    )  # fmt: skip


# (case, changes to the rerun, passes, text in the first problem or in the verdicts)
COMPARE_CASES = [
    ("same platform, same numbers", {}, True, "equal"),
    ("same platform, 1e-9 lower", {"auc": 0.9 - 1e-9}, False, "d/resnet18/scratch/r28/s0 auc: 0.9000 -> 0.9000"),
    ("same platform, higher is a change too", {"accuracy": 0.81}, False, "accuracy: 0.8000 -> 0.8100 (+0.01), higher"),
    ("same platform, non-headline metric changed", {"sensitivity": 0.4}, False, "sensitivity"),
    ("other torch, drop within tolerance", {"torch_version": "2.15.0", "auc": 0.85}, True, "within tolerance"),
    ("other torch, drop beyond tolerance", {"torch_version": "2.15.0", "auc": 0.75}, False, "lower (tolerance 0.1)"),
    ("other thread count, metric undefined now", {"threads": 1, "auc": None}, False, "undefined now"),
    ("other CPU, sensitivity is not gated", {"cpu": "cpu-y", "sensitivity": 0.0}, True, "lower"),
    ("other CPU, a rise passes", {"cpu": "cpu-y", "auc": 0.99}, True, "higher"),
]


@pytest.mark.parametrize("case, changes, passes, text", COMPARE_CASES, ids=[c[0] for c in COMPARE_CASES])
def test_compare(case, changes, passes, text):
    report = compare_records([record()], [record(**changes)])
    assert report.passed is passes, report.problems
    if passes:
        assert text in {c.verdict for c in report.checks}
        assert report.summary().startswith("accuracy gate passed: 1 runs, 5 metrics")
    else:
        assert text in report.problems[0] and report.summary().startswith("accuracy regression: d/resnet18")
        assert "\n" not in report.summary()


# (case, reference, reruns, text in the first problem)
RUN_CASES = [
    ("rerun missing", [record()], [], "d/resnet18/scratch/r28/s0: no finished rerun"),
    ("rerun failed", [record()], [record(status="failed")], "rerun failed: DivergedError"),
    ("rerun without reference", [record()], [record(), record(seed=1)], "s1: rerun has no reference record"),
]


@pytest.mark.parametrize("case, reference, current, text", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_runs_that_cannot_be_compared_fail(case, reference, current, text):
    report = compare_records(reference, current)
    assert not report.passed and text in report.problems[0]


def test_basis_says_how_runs_were_matched_and_compared():
    """A new torch changes the run key: runs pair by what they are and the comparison says why it is tolerant."""
    report = compare_records([record(), record("e")], [record(torch_version="2.15.0"), record("e")])
    basis = {p.label: p.basis() for p in report.pairings}
    assert basis["d/resnet18/scratch/r28/s0"] == (
        "matched by experiment identity and seed (run key differs: other versions); "
        "tolerance 0.1 (torch 2.14.1 -> 2.15.0, torch_version 2.14.1 -> 2.15.0)"
    )
    assert basis["e/resnet18/scratch/r28/s0"] == "matched by run key; exact (same versions, cpu-x, 2 torch threads)"


def test_config_and_data_differences_are_named():
    """Another experiment under the same label is still paired, and what differs is said."""
    reference, changed = record(fingerprint="0" * 64), record(lr=1e-2, fingerprint="1" * 64)
    reference.engine, changed.engine = EngineConfig(), EngineConfig(channels_last=True)
    (pairing,) = compare_records([reference], [changed]).pairings
    assert pairing.exact and pairing.matched == "label"
    assert pairing.config == (
        "engine.channels_last False -> True",
        "identity.data.fingerprint 000000000000 -> 111111111111",
        "identity.protocol.phases.0.lr 0.001 -> 0.01",
    )


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, []),
        ({"threads": 1}, ["torch_threads 2 -> 1"]),
        ({"cpu": "cpu-y"}, ["cpu_model cpu-x -> cpu-y"]),
    ],
)
def test_environment_differences(changes, expected):
    assert environment_differences(record(), record(**changes)) == expected


def test_nan_equals_nan_and_tolerance_is_one_sided():
    assert MetricCheck("r", "auc", None, None, exact=True, tolerance=0.0, gated=True).verdict == "equal"
    drop = MetricCheck("r", "auc", 0.9, 0.8, exact=False, tolerance=0.1, gated=True)
    assert drop.verdict == "within tolerance" and not drop.failed  # exactly at the tolerance passes


def test_reference_threads(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1}, raising=False)
    assert reference_threads([record(threads=2), record("e", threads=2)]) == 2
    assert reference_threads([record(threads=2), record("e", threads=1)]) is None  # disagree: leave as is
    assert reference_threads([record(threads=4)]) is None  # more than this machine has


def test_tolerance_is_per_dataset(tmp_path):
    (tmp_path / "tolerance.toml").write_text("default = 0.1\n[datasets]\ne = 0.3\n")
    tolerance = load_tolerance(tmp_path)
    other = {"cpu": "cpu-y", "auc": 0.7}  # a drop of 0.2 on another CPU
    report = compare_records([record(), record("e")], [record(**other), record("e", **other)], tolerance)
    assert [p.tolerance for p in report.pairings] == [0.1, 0.3]
    assert [c.run for c in report.checks if c.failed] == ["d/resnet18/scratch/r28/s0"]
    assert load_tolerance(tmp_path / "none") == Tolerance()


@pytest.mark.parametrize(
    "text, message",
    [
        ("default = -0.1\n", "tolerance for default must be a number >= 0, got -0.1"),
        ("[datasets]\nisic = 'x'\n", "tolerance for isic must be a number >= 0, got 'x'"),
        ("tol = 1\n", "tolerance.toml: unknown field 'tol'"),
    ],
)
def test_malformed_tolerance_file(tmp_path, text, message):
    (tmp_path / "tolerance.toml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_tolerance(tmp_path)


def test_no_reference_is_a_user_error():
    with pytest.raises(ConfigError, match="bench run --sweep reference --results-dir results/reference"):
        compare_records([], [record()])


# --- README numbers ------------------------------------------------------------------------------------


def _write_runs(results: Path, records: list[RunRecord]) -> None:
    for rec in records:
        save_record(rec, results)


def _docs_project(root: Path, metric: str = "balanced_accuracy") -> str:
    """results/ with records and the leaderboard `bench leaderboard` writes; returns a README quoting it."""
    records = [record(seed=0, accuracy=0.8), record(seed=1, accuracy=0.84)]
    _write_runs(root / "results", records)
    (md, *_) = write_leaderboard(leaderboard(records, "d", metric), root / "results" / "leaderboards", "d")
    return f"# t\n\nSee:\n\n<!-- generated: results/leaderboards/d.md -->\n\n{md.read_text()}\n<!-- end generated -->\n"


def _edit(path: str, old: str, new: str):
    def apply(root: Path, readme: str) -> str:
        file = root / path
        file.write_text(file.read_text().replace(old, new, 1))
        return (root / "README.md").read_text()

    return apply


def _quote(path: str):
    """Quote a new file at ``path`` in a generated block."""

    def apply(root: Path, readme: str) -> str:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("1\n")
        return readme + f"<!-- generated: {path} -->\n1\n<!-- end generated -->\n"

    return apply


def _record_changed(root: Path, readme: str) -> str:
    _write_runs(root / "results", [record(seed=0, accuracy=0.8), record(seed=1, accuracy=0.86)])
    return readme


# (case, change to the project, text in the first problem; None: passes)
DOCS_CASES = [
    ("block equals file equals records", lambda root, readme: readme, None),
    ("README number edited", _edit("README.md", "0.820 ± 0.028", "0.830 ± 0.028"), "README.md:5: block differs"),
    ("file edited", _edit("results/leaderboards/d.md", "0.820 ± 0.028", "0.830 ± 0.028"), "README.md:5: block differs"),
    ("records changed", _record_changed, "results/leaderboards/d.md: differs from what the records give today"),
    ("unclosed marker", lambda root, readme: readme + "<!-- generated: results/x.md -->\n", "has no `<!-- end"),
    ("path outside results", _quote("docs/x.md"), "docs/x.md is not a file under results/"),
    ("no generator for the file", _quote("results/x.md"), "no generator re-derives results/x.md"),
    (
        "leaderboard of a dataset without records",
        _quote("results/leaderboards/e.md"),
        "cannot re-derive results/leaderboards/e.md: no run records of e under results/runs",
    ),
]


@pytest.mark.parametrize("case, change, problem", DOCS_CASES, ids=[c[0] for c in DOCS_CASES])
def test_readme_numbers(tmp_path, case, change, problem):
    (tmp_path / "README.md").write_text(_docs_project(tmp_path))
    (tmp_path / "README.md").write_text(change(tmp_path, (tmp_path / "README.md").read_text()))
    report = check_readme(tmp_path / "README.md", tmp_path)
    assert "results/leaderboards/d.md" in report.checked
    if problem is None:
        assert report.problems == [] and "1 generated block(s) re-derived" in report.summary()
    else:
        assert problem in report.problems[0], report.problems


def test_leaderboard_sorted_by_another_metric_is_re_derived(tmp_path):
    (tmp_path / "README.md").write_text(_docs_project(tmp_path, metric="auc"))
    assert check_readme(tmp_path / "README.md", tmp_path).problems == []


def test_generated_blocks_are_found_with_their_line():
    text = "a\n<!-- generated: results/a.md -->\nx\n<!-- end generated -->\nb\n<!-- generated: results/b.csv -->\n"
    text += "y\n<!-- end generated -->\n"
    assert [(b.path, b.body, b.line) for b in generated_blocks(text)] == [
        ("results/a.md", "x\n", 2),
        ("results/b.csv", "y\n", 6),
    ]


# --- docs pages: the site's pages are checked with the README -----------------------------------------


def _docs_site(root: Path) -> Path:
    """A README without blocks and a docs page quoting the leaderboard (line 5); returns the page."""
    block = _docs_project(root).split("\n", 4)[4]  # from the `<!-- generated:` line on
    (root / "README.md").write_text("# t\n\nSee [the page](docs/guide/page.md).\n")
    page = root / "docs" / "guide" / "page.md"
    page.parent.mkdir(parents=True)
    page.write_text(f"# Page\n\nThe table:\n\n{block}")
    return page


def _stale_page(root: Path, page: Path) -> None:
    page.write_text(page.read_text().replace("0.820 ± 0.028", "0.830 ± 0.028", 1))


# (case, change to the project, text in the first problem; None: passes)
PAGE_CASES = [
    ("page block equals file equals records", lambda root, page: None, None),
    ("page number edited", _stale_page, "docs/guide/page.md:5: block differs from results/leaderboards/d.md"),
    ("records changed", lambda root, page: _record_changed(root, ""), "results/leaderboards/d.md: differs from what"),
    ("page marker unclosed", lambda root, page: page.write_text(page.read_text() + "<!-- generated: results/x -->\n"),
     "docs/guide/page.md: a `<!-- generated: PATH -->` marker has no `<!-- end generated -->`"),
]  # fmt: skip


@pytest.mark.parametrize("case, change, problem", PAGE_CASES, ids=[c[0] for c in PAGE_CASES])
def test_docs_pages_numbers_are_checked_with_the_readme(tmp_path, case, change, problem):
    page = _docs_site(tmp_path)
    change(tmp_path, page)
    report = check_readme(tmp_path / "README.md", tmp_path)
    assert report.checked == ["results/leaderboards/d.md (in docs/guide/page.md)"]
    assert report.pages == ["docs/guide/page.md"]
    if problem is None:
        assert report.problems == []
        assert report.summary().endswith("1 generated block(s) re-derived (the README and 1 docs page(s))")
    else:
        assert problem in report.problems[0], report.problems


def test_a_file_quoted_in_the_readme_and_a_page_is_re_derived_once(tmp_path, monkeypatch):
    from bench.gates import readme as gate

    _docs_site(tmp_path)
    (tmp_path / "README.md").write_text(_docs_project(tmp_path))
    calls = []
    real = gate.regenerate_leaderboard
    monkeypatch.setattr(
        gate, "REGENERATORS", (lambda path, root: calls.append(path) or real(path, root), *gate.REGENERATORS[1:])
    )
    assert check_readme(tmp_path / "README.md", tmp_path).problems == []
    assert calls == ["results/leaderboards/d.md"]
    _record_changed(tmp_path, "")
    problems = check_readme(tmp_path / "README.md", tmp_path).problems
    assert [p for p in problems if "differs from what the records give" in p] == [problems[0]]  # said once


def test_explicit_pages_replace_the_docs_folder(tmp_path):
    page = _docs_site(tmp_path)
    _stale_page(tmp_path, page)
    assert check_readme(tmp_path / "README.md", tmp_path, pages=[]).problems == []
    assert check_readme(tmp_path / "README.md", tmp_path, pages=[page]).problems


def test_the_readmes_relative_links_must_exist(tmp_path):
    _docs_site(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(
        readme.read_text()
        + "![plot](results/plots/x.png) [page](docs/guide/page.md#the-table) [web](https://example.org/a.md)\n"
        + "[anchor](#t) `[code](nowhere.md)`\n\n```python\nprint([1](2))  # [x](nowhere.md)\n```\n"
    )
    assert check_readme(readme, tmp_path).problems == [
        f"{readme}:4: links to results/plots/x.png, which does not exist"
    ]
    (tmp_path / "results" / "plots").mkdir(parents=True)
    (tmp_path / "results" / "plots" / "x.png").write_bytes(b"")
    assert check_readme(readme, tmp_path).problems == []


def test_write_refreshes_the_docs_pages_too(tmp_path):
    page = _docs_site(tmp_path)
    board = tmp_path / "results" / "leaderboards" / "d.md"
    _record_changed(tmp_path, "")
    write_leaderboard(leaderboard(load_records(tmp_path / "results"), "d"), board.parent, "d")
    assert check_readme(tmp_path / "README.md", tmp_path).problems  # the page still quotes the old table
    assert refresh_readme(tmp_path / "README.md", tmp_path) == ["results/leaderboards/d.md (in docs/guide/page.md)"]
    assert board.read_text().strip() in page.read_text()
    assert check_readme(tmp_path / "README.md", tmp_path).problems == []


def test_the_repository_docs_pages_have_generated_blocks():
    """The published tables live in the docs pages now; the gate must find them there (not only the README's)."""
    from bench.gates.readme import docs_pages
    from bench.paths import project_root

    root = project_root()
    quoted = {b.path for page in docs_pages(root) for b in generated_blocks(page.read_text())}
    assert {"results/mission/leaderboards/isic.md", "results/transfer/leaderboards/isic.md"} <= quoted


# --- the commands ----------------------------------------------------------------------------------------


def bench(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """The console entry point in-process: (exit status, stdout + stderr)."""
    out = run_bench(monkeypatch, capsys, *args, columns=200)
    return out.status, out.stdout + out.stderr


@pytest.fixture
def keep_threads():
    """`bench check` sets torch's thread count to the reference's: give the next test back what it had."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


SWEEP = 'name = "ci"\n[[group]]\nbackbones = ["{b}"]\ndatasets = ["{d}"]\nseeds = [0]\nepochs = 1\n'


def sweep_run(seed: int = 0, epochs: int = 1, **metrics) -> RunRecord:
    """A record of the tiny sweep's run, with the identity planning gives it (so the sweep finds it)."""
    rec = record("tiny", seed, **metrics)
    rec.spec = RunSpec("test_resnet", "tiny", "scratch", seed=seed, epochs=epochs)
    rec.identity = experiment_identity(rec.spec)
    rec.key = run_key(rec.identity, seed, rec.versions)
    return rec


def test_check_existing_rerun(project, tmp_path, monkeypatch, capsys):
    (tmp_path / "s.toml").write_text(SWEEP.format(b="test_resnet", d="tiny"))
    _write_runs(tmp_path / "ref", [sweep_run()])
    _write_runs(tmp_path / "same", [sweep_run()])
    # seed 7 and the 2-epoch run are not the sweep's runs: ignored
    _write_runs(tmp_path / "worse", [sweep_run(auc=0.5), sweep_run(seed=7), sweep_run(epochs=2, auc=0.1)])
    args = ("check", "--sweep", str(tmp_path / "s.toml"), "--reference", str(tmp_path / "ref"), "--results-dir")

    code, out = bench(monkeypatch, capsys, *args, str(tmp_path / "same"))
    assert code == 0 and "accuracy gate passed: 1 runs, 5 metrics; 1 run(s) compared exactly" in out

    code, out = bench(monkeypatch, capsys, *args, str(tmp_path / "worse"))
    assert code == 1
    assert out.strip().splitlines()[-1] == (
        "accuracy regression: tiny/test_resnet/scratch/r28/s0 auc: 0.9000 -> 0.5000 (-0.4), lower (exact comparison)"
    )

    for where, message in (("ref", "is the reference itself"), ("empty", "no run records under")):
        code, out = bench(monkeypatch, capsys, *args, str(tmp_path / where))
        assert code == 2 and message in out and len(out.strip().splitlines()) == 1


def test_check_reruns_the_sweep_and_catches_a_planted_regression(project, tmp_path, monkeypatch, capsys, keep_threads):
    """The CI path: a real training rerun matches its reference exactly; a wrong label mapping fails the gate."""
    (tmp_path / "s.toml").write_text(SWEEP.format(b="test_resnet", d="tiny"))
    code, out = bench(monkeypatch, capsys, "run", "--sweep", "s.toml", "--results-dir", "ref", "--device", "cpu")
    assert code == 0, out
    reference = {p: p.read_bytes() for p in Path("ref").rglob("*") if p.is_file()}
    args = ("check", "--sweep", "s.toml", "--reference", "ref")
    code, out = bench(monkeypatch, capsys, *args)
    assert code == 0 and "1 run(s) compared exactly" in out and "tiny/test_resnet/scratch/r28/s0: matched by" in out
    assert {p: p.read_bytes() for p in Path("ref").rglob("*") if p.is_file()} == reference  # reruns elsewhere

    from bench.runs import runner as runner

    real = runner.compute_metrics
    monkeypatch.setattr(runner, "compute_metrics", lambda y, p, c, pos: real(1 - y, p, c, pos))  # labels swapped
    code, out = bench(monkeypatch, capsys, *args)
    assert code == 1 and "accuracy regression: tiny/test_resnet/scratch/r28/s0 " in out


LATENCY_RECORD = {
    "backbone": "resnet18", "resolution": 224, "input_size": [3, 224, 224], "device_kind": "cuda",
    "batch_size": 1, "batch_size_run": 1, "precision": "fp16",
    "memory_format": "channels_last", "compiled": False, "ms_per_batch_p50": 1.35, "ms_per_image_p50": 1.35,
    "throughput_img_s": 718.0, "cv": 0.1, "peak_memory_bytes": 2**20, "noisy": False, "skipped": None,
    "fingerprint": {"device_kind": "cuda", "gpu_name": "GPU-X", "torch_version": "2.11"},
}  # fmt: skip


def _latency_project(root: Path) -> str:
    from bench.latency.report import latency_markdown

    folder = root / "results" / "latency"
    write_json(folder / "latency-1.json", {"schema": 1, "records": [LATENCY_RECORD]})
    text = latency_markdown([LATENCY_RECORD])
    (folder / "latency-1.md").write_text(text)
    return f"<!-- generated: results/latency/latency-1.md -->\n{text}<!-- end generated -->\n"


def _comparison_project(root: Path) -> str:
    from bench.reports.reproduction import COMMAND, sweep_table, write_reproduction
    from bench.runs.sweep import load_sweep

    rec = record(dataset="pneumoniamnist", seed=0, accuracy=0.85, auc=0.95)
    rec.spec = next(
        s for s in load_sweep("medmnist-v2").expand() if (s.dataset, s.backbone) == ("pneumoniamnist", "resnet18")
    )
    rec.identity = experiment_identity(rec.spec)
    _write_runs(root / "results" / "repro", [rec])
    rec.path.rename(rec.path.with_name("r0.json"))
    table = sweep_table(load_records(root / "results" / "repro"), load_sweep("medmnist-v2"))
    command = COMMAND.format(sweep="medmnist-v2", results_dir="results/repro")
    path = write_reproduction(table, root / "results" / "repro" / "comparison.md", command)
    return f"<!-- generated: results/repro/comparison.md -->\n{path.read_text()}<!-- end generated -->\n"


@pytest.mark.parametrize(
    "make, target, old, new, problem",
    [
        (_latency_project, "results/latency/latency-1.json", "718.0", "719.0", "differs from what the records give"),
        (_latency_project, "results/latency/latency-1.json", "records", "rows", "no readable latency records"),
        (_comparison_project, "results/repro/runs/pneumoniamnist/resnet18/r0.json", "0.85", "0.86", "differs from"),
        (_comparison_project, "results/repro/comparison.md", "Command:", "Made by:", "no `Command: bench reproduction"),
    ],
)
def test_latency_and_reproduction_blocks_are_re_derived(tmp_path, make, target, old, new, problem):
    (tmp_path / "README.md").write_text(make(tmp_path))
    assert check_readme(tmp_path / "README.md", tmp_path).problems == []
    (tmp_path / target).write_text((tmp_path / target).read_text().replace(old, new, 1))
    problems = check_readme(tmp_path / "README.md", tmp_path).problems
    assert problems and problem in problems[-1], problems


def test_write_copies_each_file_into_its_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(_docs_project(tmp_path))
    board = tmp_path / "results" / "leaderboards" / "d.md"
    _record_changed(tmp_path, "")
    write_leaderboard(leaderboard(load_records(tmp_path / "results"), "d"), board.parent, "d")
    assert check_readme(readme, tmp_path).problems  # the README still quotes the old table
    assert refresh_readme(readme, tmp_path) == ["results/leaderboards/d.md"]
    assert check_readme(readme, tmp_path).problems == [] and refresh_readme(readme, tmp_path) == []


def test_check_readme_command(tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(_docs_project(tmp_path))
    code, out = bench(monkeypatch, capsys, "check-readme", str(readme))
    assert code == 0 and "README numbers match results/: 1 generated block(s) re-derived" in out
    readme.write_text(readme.read_text().replace("0.820", "0.821"))
    code, out = bench(monkeypatch, capsys, "check-readme", str(readme))
    assert code == 1 and out.strip().splitlines()[-1].startswith("README numbers drifted: ")


def test_check_readme_command_checks_the_docs_pages(tmp_path, monkeypatch, capsys):
    page = _docs_site(tmp_path)
    code, out = bench(monkeypatch, capsys, "check-readme", str(tmp_path / "README.md"))
    assert code == 0 and "1 generated block(s) re-derived (the README and 1 docs page(s))" in out
    _stale_page(tmp_path, page)
    code, out = bench(monkeypatch, capsys, "check-readme", str(tmp_path / "README.md"))
    last = out.strip().splitlines()[-1]
    assert code == 1 and last.startswith("README numbers drifted: docs/guide/page.md:5: block differs"), out


def test_reference_sweep_matches_the_committed_reference():
    """The committed records are the reference sweep's: same experiments and seeds, every one finished."""
    from bench.paths import project_root
    from bench.runs.planned import sweep_runs
    from bench.runs.sweep import load_sweep

    records = load_records(project_root() / REFERENCE_DIR)
    assert sorted((r.experiment, r.spec.seed) for r in records) == sorted(sweep_runs(load_sweep("reference").expand()))
    assert {r.status for r in records} == {"ok"}
