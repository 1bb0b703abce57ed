"""Kept weights: a finished run keeps the model it tested, and bench.load_model gives back exactly that model."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import bench
from bench.data.loading import load_dataset
from bench.errors import ResultsError, WeightsError
from bench.evaluation.scores import TestScores
from bench.models.kept import load_model_file, save_model
from bench.models.registry import build_model
from bench.runs.plan import SweepRequest, sweep_specs
from bench.runs.record import read_record, weights_path
from bench.runs.runner import run
from bench.runs.spec import RunSpec
from bench.train.loop import predict
from bench.train.pipeline import BatchPipeline

REPO = Path(__file__).resolve().parents[2]
SPEC = RunSpec(backbone="test_resnet", dataset="tiny", protocol="scratch", seed=0, epochs=1)
CPU = torch.device("cpu")


@pytest.fixture
def kept_run(project, tmp_path):
    record = run(SPEC, tmp_path / "results", CPU)
    assert record.status == "ok", record.error
    return read_record(record.path)  # as a user finds it: read back from the results folder


def test_kept_model_reproduces_the_recorded_test_scores_exactly(kept_run):
    kept = kept_run.kept_weights
    path = weights_path(kept_run.path)
    assert kept is not None and path.name == kept.file and path.is_file()
    assert kept.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and kept.bytes == path.stat().st_size
    assert (kept.arch, kept.num_classes, kept.classes) == ("test_resnet", 2, ["dark", "bright"])
    assert kept.input_size == [3, kept_run.effective_resolution, kept_run.effective_resolution]

    model = bench.load_model(kept_run.path)  # a record's path works as well as the record
    assert not model.training
    data = load_dataset(kept_run.spec.dataset, kept.input_size[-1])
    logits = predict(model, data.test, BatchPipeline(tuple(kept.mean), tuple(kept.std), CPU))
    saved = TestScores.load(kept_run.probs_path())
    assert np.array_equal(logits, saved.logits)  # bit for bit: the model that was tested
    assert np.array_equal(TestScores.from_logits(saved.ids, saved.labels, logits).probs, saved.probs)


def test_a_changed_file_fails_the_sha256_check_naming_it(kept_run):
    path = weights_path(kept_run.path)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF  # one bit of one weight
    path.write_bytes(bytes(blob))
    with pytest.raises(WeightsError) as err:
        bench.load_model(kept_run)
    message = str(err.value)
    assert str(path) in message and "sha256" in message and "\n" not in message


def test_no_keep_weights_writes_no_file_and_keeps_the_key(project, tmp_path):
    kept = run(SPEC, tmp_path / "a", CPU)
    bare = run(dataclasses.replace(SPEC, keep_weights=False), tmp_path / "b", CPU)
    assert bare.status == "ok" and bare.key == kept.key and bare.path.name == kept.path.name
    assert bare.identity == kept.identity and bare.to_json()["test"] == kept.to_json()["test"]  # NaN as null
    assert bare.kept_weights is None and not list((tmp_path / "b").rglob("*.safetensors"))
    assert read_record(bare.path).spec.keep_weights is False  # the record says why it has none
    with pytest.raises(ResultsError, match="kept no weights"):
        bench.load_model(bare.path)


def test_keep_weights_from_a_sweep_group_and_the_command_line(project, tmp_path):
    sweep = tmp_path / "s.toml"
    body = 'name = "s"\n[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["tiny"]\n'
    sweep.write_text(body + "keep_weights = false\n")
    assert [s.keep_weights for s in sweep_specs(SweepRequest(sweep=str(sweep)))[1]] == [False]
    sweep.write_text(body)
    assert [s.keep_weights for s in sweep_specs(SweepRequest(sweep=str(sweep)))[1]] == [True]
    assert [s.keep_weights for s in sweep_specs(SweepRequest(sweep=str(sweep), keep_weights=False))[1]] == [False]
    assert "keep_weights" not in SPEC.to_dict()  # records of runs that keep weights read as before


def test_the_layout_options_rebuild_the_module_that_was_kept(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", 3, small_input_stem=True)
    saved = save_model(model, tmp_path / "m.safetensors")
    back = load_model_file(tmp_path / "m.safetensors", saved.sha256, "resnet18", 3, small_input_stem=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values(), strict=True))
    with pytest.raises(WeightsError, match="wrong shape: conv1.weight"):  # the ImageNet stem does not fit it
        load_model_file(tmp_path / "m.safetensors", saved.sha256, "resnet18", 3, small_input_stem=False)


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_kept_weights_never_enter_git():
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0

    assert ignored("results/runs/isic/resnet18/scratch-r28-s0-0123456789ab.safetensors")
    assert ignored("results/mission/runs/isic/resnet18/scratch-r28-s0-0123456789ab.safetensors")
    assert not ignored("shared/weights/tf_efficientnet_lite0.in1k.safetensors")  # inputs stay usable
    assert not ignored("weights/mine.safetensors")
