"""A run with evaluation sets, end to end on the tiny dataset: scored after the test split, saved beside the record,
rescored to the recorded numbers, in no run key, and refused at planning when a set cannot be scored."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from console import run_bench
from tinydata import tiny_arrays

from bench.data import corruptions
from bench.data.eval_sets import EvalSetSpec
from bench.data.identity import forget
from bench.errors import ConfigError
from bench.evaluation.eval_results import EXTERNAL_PART, eval_scores_path, load_eval_scores
from bench.evaluation.rescore import rescore
from bench.evaluation.values import compute_metrics
from bench.runs.record import load_records, read_record
from bench.runs.resolve import resolve
from bench.runs.runner import run
from bench.runs.spec import RunSpec

SPEC = RunSpec(backbone="test_resnet", dataset="tiny", protocol="scratch", seed=0, epochs=2)
CPU = torch.device("cpu")
EXTERNAL = EvalSetSpec(name="external:tiny_ext", kind="external", dataset="tiny_ext")
CORRUPTED = EvalSetSpec(
    name="corrupted",
    kind="corrupted",
    modality="chest_xray",
    severities=(1, 3),
    corruptions=("pixelate", "gaussian_noise"),
)
SHARED = 3


@pytest.fixture
def external(project: Path) -> Path:
    """``tiny_ext``: tiny's recipe with other noise, the same classes, and copies of tiny's first train images as its
    first test images."""
    tiny = np.load(project / "data" / "tiny.npz")
    arrays = tiny_arrays(np.random.default_rng(1))
    arrays["test_images"][:SHARED] = tiny["train_images"][:SHARED]
    arrays["test_labels"][:SHARED] = tiny["train_labels"][:SHARED]
    np.savez_compressed(project / "data" / "tiny_ext.npz", **arrays)
    entry = (project / "datasets" / "tiny.toml").read_text().replace('"tiny"', '"tiny_ext"')
    (project / "datasets" / "tiny_ext.toml").write_text(entry.replace("tiny.npz", "tiny_ext.npz"))
    return project


def _library() -> None:
    try:
        corruptions.require_library()
    except ConfigError as err:
        pytest.skip(f"the robustness extra is not installed here: {err}")


def test_an_external_set_is_scored_saved_and_rescores_to_the_record(external, tmp_path):
    record = run(dataclasses.replace(SPEC, eval_sets=(EXTERNAL,)), tmp_path / "results", CPU)
    assert record.status == "ok", record.error
    block = record.eval_sets["external:tiny_ext"]
    assert block.removed == {
        "checked": 176, "removed": SHARED, "exact": SHARED, "near": 0, "lesion": None, "same_lesion": 0, "unmapped": 0
    }  # fmt: skip
    assert block.n_images == 176 - SHARED and block.direction == "identity"
    saved = load_eval_scores(eval_scores_path(record.path))["external:tiny_ext"]
    assert not any(i in saved.ids for i in ("test/0", "test/1", "test/2"))  # the copies of tiny's images
    again = compute_metrics(saved.labels, saved.probs[EXTERNAL_PART], ["dark", "bright"], "bright").to_dict()
    stored = read_record(record.path).eval_sets["external:tiny_ext"]  # as written: NaN as null
    assert json.loads(json.dumps(again).replace("NaN", "null")) == stored.metrics
    assert again["auc"] == stored.parts[EXTERNAL_PART]["auc"]
    assert rescore(record.path).changed == ()


def test_a_set_that_fails_after_training_says_why_and_the_run_stands(external, tmp_path):
    """Its data gone between planning and scoring: the model was trained and tested, so the record is ``ok``."""
    (external / "data" / "tiny_ext.npz").unlink()
    record = run(dataclasses.replace(SPEC, eval_sets=(EXTERNAL,)), tmp_path / "results", CPU)
    assert record.status == "ok" and record.test
    assert str(record.eval_sets["external:tiny_ext"].error).startswith("DataError: dataset 'tiny_ext': path")
    assert not eval_scores_path(record.path).exists() and rescore(record.path).changed == ()


def test_a_corrupted_set_is_scored_per_corruption_and_severity_and_a_rerun_gives_the_same(project, tmp_path):
    _library()
    spec = dataclasses.replace(SPEC, eval_sets=(CORRUPTED,))
    first = run(spec, tmp_path / "a", CPU)
    block = first.eval_sets["corrupted"]
    assert set(block.parts) == {"pixelate@1", "pixelate@3", "gaussian_noise@1", "gaussian_noise@3"}
    assert str(block.library).startswith("medmnistc ") and block.severities == [1, 3] and block.n_images == 48
    assert rescore(first.path).changed == ()
    second = run(spec, tmp_path / "b", CPU)
    a, b = (load_eval_scores(eval_scores_path(r.path))["corrupted"] for r in (first, second))
    assert all(np.array_equal(a.probs[p], b.probs[p]) for p in a.probs)


def test_eval_sets_change_no_run_key_declared_in_the_run_or_the_dataset_entry(external):
    plain = resolve(SPEC).key
    declared = resolve(dataclasses.replace(SPEC, eval_sets=(EXTERNAL, CORRUPTED))).key
    entry = external / "datasets" / "tiny.toml"
    declaration = 'modality = "chest_xray"\neval_sets = ["corrupted"]\n[split]'
    entry.write_text(entry.read_text().replace("[split]", declaration))
    forget()
    in_entry = resolve(SPEC).key
    assert plain == declared == in_entry


def sweep_file(tmp_path: Path, eval_sets: str) -> Path:
    path = tmp_path / "evs.toml"
    group = '[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["tiny"]\nepochs = 2\n'
    path.write_text(f'name = "evs"\n{group}eval_sets = {eval_sets}\n')
    return path


def test_bench_run_with_eval_sets_then_the_leaderboard_and_export_show_them(external, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    path = sweep_file(tmp_path, '["external:tiny_ext"]')
    out = run_bench(monkeypatch, capsys, "run", "--sweep", str(path), "--results-dir", str(results), "--device", "cpu")
    assert out.status == 0, out.stderr
    (record,) = load_records(results)
    assert record.eval_sets["external:tiny_ext"].removed["removed"] == SHARED
    assert eval_scores_path(record.path).is_file() and rescore(record.path).changed == ()
    board = run_bench(
        monkeypatch, capsys, "leaderboard", "--results-dir", str(results), "--columns", "robustness,external",
        "--format", "md",
    )  # fmt: skip
    assert board.status == 0, board.stderr
    assert "external:tiny_ext bal. acc." in board.stdout and f"{SHARED} of 176" in board.stdout
    assert "mean BE (corruptions)" in board.stdout and "no corrupted eval set" in board.stdout
    exported = run_bench(monkeypatch, capsys, "export", "--results-dir", str(results))
    header = exported.stdout.splitlines()[0].split(",")
    assert {"evalset_external-tiny_ext_balanced_accuracy", "evalset_external-tiny_ext_removed"} <= set(header)


@pytest.mark.parametrize(
    ("eval_sets", "message"),
    [
        ('["corrupted"]', "tiny/test_resnet/scratch/s0: eval set 'corrupted' on dataset 'tiny': no modality"),
        ('["external:tiny"]', "eval set 'external:tiny': eval set external:tiny on tiny: not external"),
        (
            '[{ name = "x", kind = "external", dataset = "tiny_ext", label_map = { dark = "a" } }]',
            "eval set 'x': label map eval set for tiny -> tiny_ext maps ['dark'] to ['a']",
        ),
    ],
)
def test_planning_refuses_a_set_that_cannot_be_scored_in_one_line(
    external, tmp_path, monkeypatch, capsys, eval_sets, message
):
    path = sweep_file(tmp_path, eval_sets)
    out = run_bench(monkeypatch, capsys, "run", "--sweep", str(path), "--device", "cpu", "--dry-run")
    assert out.status == 2 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
