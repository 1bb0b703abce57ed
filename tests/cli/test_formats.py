"""--format on the commands that print a comparison: compare, agreement, check (the gate table) and reproduction,
piped.

Each format is parsed as a script would (csv.reader, json.loads) and every row of the data behind the table
must come back whole: csv and json hold the data alone on stdout, table and md every cell as printed.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from console import Output, run_bench
from factories import make_record, write_run

from bench.gates.accuracy import compare_records, report_frame
from bench.reports.agreement import agreement
from bench.reports.compare import compare_backbones
from bench.reports.reproduction import display_frame, sweep_table
from bench.runs.identity import run_key
from bench.runs.record import load_records
from bench.runs.resolve import experiment_identity
from bench.runs.spec import RunSpec
from bench.runs.sweep import load_sweep

FORMATS = ("table", "md", "csv", "json")
LABELS = np.random.default_rng(5).integers(0, 2, 200)
SWEEP = 'name = "ci"\n[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["tiny"]\nseeds = [0, 1]\nepochs = 1\n'


def bench(monkeypatch, capsys, *args: str, code: int = 0) -> Output:
    """The console entry point in-process, its stdout captured (not a terminal: what a pipe gets)."""
    out = run_bench(monkeypatch, capsys, *args)
    assert out.status == code, f"bench {' '.join(args)} exited {out.status}:\n{out.stdout}\n{out.stderr}"
    return out


def _probs(accuracy: float, seed: int) -> np.ndarray:
    right = np.random.default_rng(seed).random(LABELS.size) < accuracy
    probs = np.full((LABELS.size, 2), 0.2)
    probs[np.arange(LABELS.size), np.where(right, LABELS, 1 - LABELS)] = 0.8
    return probs


def compare_case(root: Path) -> tuple[tuple[str, ...], pd.DataFrame, list[str]]:
    """Two long-named backbones, two seeds each, with saved test probabilities."""
    for seed in (0, 1):
        for i, (name, acc) in enumerate((("tf_efficientnet_lite0", 0.9), ("inception_resnet_v2", 0.7))):
            write_run(make_record(name, seed, acc), root, _probs(acc, 10 * seed + i), LABELS)
    args = ("compare", "tf_efficientnet_lite0", "inception_resnet_v2", "--dataset", "d", "--resamples", "200")
    result = compare_backbones(load_records(root), "d", "tf_efficientnet_lite0", "inception_resnet_v2", n_resamples=200)
    p = result.paired
    shown = [f"{p.score_a:.4f}", f"{p.score_b:.4f}", f"{p.difference:+.4f}", "tf_efficientnet_lite0"]
    shown += [f"{t.p_value:.4g}" for t in result.mcnemar_by_seed.values()]
    return (*args, "--results-dir", str(root)), result.frame(), shown


def _gate_run(seed: int, auc: float):
    rec = make_record("test_resnet", seed, dataset="tiny", metrics={"accuracy": 0.8, "auc": auc, "macro_f1": 0.6})
    rec.spec = RunSpec("test_resnet", "tiny", "scratch", seed=seed, epochs=1)
    rec.identity = experiment_identity(rec.spec)
    rec.key = run_key(rec.identity, seed, rec.versions)
    return rec


def check_case(root: Path) -> tuple[tuple[str, ...], pd.DataFrame, list[str]]:
    """A reference of two runs and a rerun whose seed 1 lost AUC: the gate fails (exit 1) and says so."""
    root.mkdir(parents=True)
    (root / "s.toml").write_text(SWEEP)
    for where, aucs in (("ref", (0.9, 0.9)), ("now", (0.9, 0.5))):
        for seed, auc in enumerate(aucs):
            write_run(_gate_run(seed, auc), root / where)
    report = compare_records(load_records(root / "ref"), load_records(root / "now"))
    args = ("check", "--sweep", str(root / "s.toml"), "--reference", str(root / "ref"), "--results-dir")
    shown = [c.run for c in report.checks] + ["0.9000", "0.5000", "-0.4"]
    return (*args, str(root / "now")), report_frame(report), shown


def reproduction_case(root: Path) -> tuple[tuple[str, ...], pd.DataFrame, list[str]]:
    """Two seeds of the medmnist-v2 sweep's pneumoniamnist resnet18 run, against the paper's figures."""
    plan = load_sweep("medmnist-v2")
    spec = next(s for s in plan.expand() if (s.dataset, s.backbone) == ("pneumoniamnist", "resnet18"))
    for seed, acc in ((0, 0.85), (1, 0.87)):
        rec = make_record("resnet18", seed, acc, dataset="pneumoniamnist")
        rec.spec = RunSpec(**{**spec.__dict__, "seed": seed})
        rec.identity = experiment_identity(rec.spec)
        rec.key = run_key(rec.identity, seed, rec.versions)
        write_run(rec, root)
    table = sweep_table(load_records(root), plan)
    shown = [cell for row in display_frame(table).itertuples(index=False) for cell in map(str, row)]
    return ("reproduction", "--sweep", "medmnist-v2", "--results-dir", str(root)), table, shown


def agreement_case(root: Path) -> tuple[tuple[str, ...], pd.DataFrame, list[str]]:
    """Two long-named backbones' two seeds in a baseline folder and again, one at bf16, in a candidate folder."""
    for where, precision, shift in (("base", "auto", 0), ("new", "bf16", 7)):
        for seed in (0, 1):
            for i, (name, acc) in enumerate((("tf_efficientnet_lite0", 0.9), ("inception_resnet_v2", 0.7))):
                record = make_record(name, seed, acc, precision=precision if i else "auto")
                write_run(record, root / where, _probs(acc, 10 * seed + i + shift), LABELS)
    result = agreement(load_records(root / "base"), load_records(root / "new"), n_resamples=200)
    frame = result.frame()
    shown = [*frame.backbone, *frame.verdict, *(f"{d:+.3f}" for d in frame.difference), "2 rows:"]
    return ("agreement", str(root / "base"), str(root / "new"), "--resamples", "200"), frame, shown


# command: (its case, exit status, what goes to stderr beside csv/json)
CASES = {
    "compare": (compare_case, 0, ""),  # the verdict is in the data
    "agreement": (agreement_case, 0, "2 rows:"),
    "check": (check_case, 1, "accuracy regression"),
    "reproduction": (reproduction_case, 0, "written:"),
}


def _same(cell: str | object, value: object) -> bool:
    """A csv/json cell against the frame's value: numbers to the last digit, NaN as empty/null, text as text."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return cell in ("", None)
    if isinstance(value, bool | np.bool_):
        return str(cell).lower() == str(bool(value)).lower()
    if isinstance(value, int | np.integer):
        return str(cell) == str(value)  # a count prints as one: "2000", never "2000.0"
    if isinstance(value, float | np.floating):
        return float(cell) == pytest.approx(float(value), rel=1e-12)
    return str(cell) == str(value)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("command", list(CASES))
def test_every_row_comes_back_whole_in_every_format(tmp_path, monkeypatch, capsys, request, command, fmt):
    make, code, note = CASES[command]
    if command == "check":
        request.getfixturevalue("project")  # the tiny dataset the gate's sweep names
    args, expected, shown = make(tmp_path / "results")
    out = bench(monkeypatch, capsys, *args, "--format", fmt, code=code)
    if fmt == "csv":
        header, *rows = list(csv.reader(io.StringIO(out.stdout)))
        assert header == list(expected.columns) and len(rows) == len(expected)
        for row, (_, want) in zip(rows, expected.iterrows(), strict=True):
            assert all(_same(cell, want[c]) for cell, c in zip(row, header, strict=True)), (row, want.to_dict())
    elif fmt == "json":
        rows = json.loads(out.stdout)  # the data alone: any message on stdout would break this
        assert len(rows) == len(expected) and all(list(r) == list(expected.columns) for r in rows)
        for row, (_, want) in zip(rows, expected.iterrows(), strict=True):
            assert all(_same(row[c], want[c]) for c in expected.columns), (row, want.to_dict())
    else:
        assert "…" not in out.stdout
        missing = [cell for cell in shown if cell not in out.stdout]
        assert not missing, out.stdout
        if fmt == "md":
            assert "| ---" in out.stdout or "|:--" in out.stdout or "|---" in out.stdout
    if fmt in ("csv", "json"):
        assert note in out.stderr  # the lines for people went to stderr


def test_one_backbone_under_two_protocols_is_told_apart_by_protocol(monkeypatch, capsys, tmp_path):
    """A transfer against scratch compares a backbone with itself: each side is named with its protocol."""
    for seed in (0, 1):
        for i, (protocol, acc) in enumerate((("staged", 0.9), ("scratch", 0.7))):
            record = make_record("resnet18", seed, acc, protocol=protocol)
            write_run(record, tmp_path, _probs(acc, 10 * seed + i), LABELS)
    args = ("compare", "resnet18", "resnet18", "--dataset", "d", "--protocol", "staged", "--protocol-b", "scratch")
    out = bench(monkeypatch, capsys, *args, "--resamples", "200", "--results-dir", str(tmp_path), "--format", "md")
    assert "only resnet18 (staged) right" in out.stdout and "only resnet18 (scratch) right" in out.stdout
    assert "difference resnet18 (staged) - resnet18 (scratch) = +" in out.stdout + out.stderr


def test_agreement_prints_a_table_per_dataset_named_in_its_title(monkeypatch, capsys, tmp_path):
    """A terminal leaves the dataset column out (the title names it), so rows of two datasets never share a table."""
    for where, precision in (("base", "auto"), ("new", "bf16")):
        for dataset in ("d", "e"):
            for seed in (0, 1):
                record = make_record("resnet18", seed, 0.8, dataset=dataset, precision=precision)
                write_run(record, tmp_path / where, _probs(0.8, seed + len(where)), LABELS)
    args = ("agreement", str(tmp_path / "base"), str(tmp_path / "new"), "--resamples", "100", "--format", "table")
    out = bench(monkeypatch, capsys, *args)
    text = " ".join(out.stdout.split())  # a long title wraps
    assert " on d: test balanced_accuracy" in text and " on e: test balanced_accuracy" in text
    assert "2 rows:" in text
