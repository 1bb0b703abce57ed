"""A run as a weights source: resolved by identity, planned first, keyed into its targets, leakage-checked."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import ConfigError
from bench.models.kept import load_model_file
from bench.models.weights import head_prefixes
from bench.runs.planned import plan_runs
from bench.runs.record import WeightsSource, read_record
from bench.runs.runner import run
from bench.runs.source import model_from_source, source_record
from bench.runs.spec import RunSpec

CPU = torch.device("cpu")
SOURCE = RunSpec(backbone="test_resnet", dataset="tiny", protocol="scratch", seed=0, epochs=1)
TARGET = RunSpec(
    backbone="test_resnet",
    dataset="tiny3",
    protocol="staged",
    seed=0,
    epochs=(1, 1, 1),
    weights_file="run:tiny/test_resnet/scratch",
)


@pytest.fixture
def tiny3(project: Path) -> Path:
    """A second dataset, of three classes (so the head must be replaced), with images of its own."""
    rng = np.random.default_rng(3)
    arrays = {}
    for split, n in (("train", 48), ("val", 24), ("test", 24)):
        labels = rng.integers(0, 3, size=(n, 1))
        arrays[f"{split}_images"] = (
            (labels[:, :, None] * 80 + rng.normal(0, 30, (n, 28, 28))).clip(0, 255).astype(np.uint8)
        )
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    np.savez_compressed(project / "data" / "tiny3.npz", **arrays)
    (project / "datasets" / "tiny3.toml").write_text(
        'name = "tiny3"\ntitle = "tiny3"\nlayout = "npz"\npath = "data/tiny3.npz"\nclasses = ["a", "b", "c"]\n'
        'task = "multiclass"\ncolor = "grayscale"\nlicence = "CC0"\ncitation = "synthetic"\n'
        '[split]\npolicy = "official"\n'
    )
    return project


def test_the_source_runs_first_and_the_target_records_it(tiny3, tmp_path):
    results = tmp_path / "results"
    planned = plan_runs([TARGET, SOURCE], results)  # listed target first: planned after its source
    assert [p.spec.dataset for p in planned] == ["tiny", "tiny3"]
    source_plan, target_plan = planned
    assert target_plan.spec.source_key == source_plan.key
    assert target_plan.identity.weights.to_dict() == {
        "source": "run", "run": "tiny/test_resnet/scratch", "experiment": target_plan.spec.source_experiment,
    }  # fmt: skip

    source = run(source_plan.run, results, CPU)
    target = run(target_plan.run, results, CPU)
    assert source.status == target.status == "ok", (source.error, target.error)
    assert target.key == target_plan.key
    stored = read_record(target.path)
    assert isinstance(stored.weights_source, WeightsSource)
    assert stored.weights_source.key == source.key and stored.weights_source.experiment == source.experiment
    assert source.kept_weights is not None and stored.weights_source.sha256 == source.kept_weights.sha256
    assert stored.weights_source.overlap["count"] == 0 and stored.weights_source.overlap["checked"] == 48
    assert stored.backbone is not None and stored.backbone.weights["source"] == "run"

    # A kept .safetensors named by path, its record beside it, is that run as a source too.
    by_path = dataclasses.replace(TARGET, weights_file=str(source.path.with_suffix(".safetensors")))
    assert source_record(by_path, results).key == source.key
    assert source_record(dataclasses.replace(TARGET, weights_file=None), results) is None

    # What the target started from: every tensor of the source's kept model but the head, and a new 3-class head.
    model, _, _ = model_from_source(target_plan.run, source_record(target_plan.spec, results), 3)
    kept = source.kept_weights
    original = load_model_file(source.path.parent / kept.file, kept.sha256, kept.arch, kept.num_classes).state_dict()
    head = head_prefixes(model)
    for name, tensor in model.state_dict().items():
        if any(name.startswith(f"{p}.") for p in head):
            assert tensor.shape[0] == 3 and original[name].shape[0] == 2
        else:
            assert torch.equal(tensor, original[name]), name


def test_a_changed_source_is_a_new_run_key(tiny3, tmp_path):
    results = tmp_path / "results"
    one = plan_runs([SOURCE, TARGET], results)[1]
    longer = plan_runs([dataclasses.replace(SOURCE, epochs=2), TARGET], results)[1]
    assert one.key != longer.key and one.identity.weights != longer.identity.weights
    fixed = dataclasses.replace(TARGET, seed=1, weights_file="run:tiny/test_resnet/scratch/s0")
    other_seed = plan_runs(
        [SOURCE, dataclasses.replace(SOURCE, seed=1), dataclasses.replace(TARGET, seed=1), fixed], results
    )
    matching, pinned = other_seed[2:]
    assert matching.spec.source_key != pinned.spec.source_key and matching.key != pinned.key
    # The seeds of a transfer experiment are one experiment: the source's seed is in the key, not the identity.
    seeds = plan_runs(
        [SOURCE, dataclasses.replace(SOURCE, seed=1), TARGET, dataclasses.replace(TARGET, seed=1)], results
    )
    assert seeds[2].identity == seeds[3].identity and seeds[2].key != seeds[3].key


def test_a_missing_source_says_which_run_to_train_first(tiny3, tmp_path):
    with pytest.raises(ConfigError) as err:
        plan_runs([TARGET], tmp_path / "results")
    message = str(err.value)
    assert "\n" not in message and "no run tiny/test_resnet/scratch/s0" in message
    assert "train it first: bench run --backbones test_resnet --datasets tiny --protocol scratch --seeds 0" in message


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"backbone": "test_efficientnet"}, "must be the same architecture"),
        ({"protocol": "scratch", "epochs": 1}, "trains from scratch"),
        ({"weights_file": "run:tiny/test_resnet"}, "run:<dataset>/<backbone>/<protocol>[/s<seed>]"),
    ],
)
def test_a_source_that_cannot_be_used_is_refused_in_one_line(tiny3, tmp_path, change, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        plan_runs([SOURCE, dataclasses.replace(TARGET, **change)], tmp_path / "results")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_source_that_trained_on_the_targets_test_images_is_refused_unless_allowed(tiny3, tmp_path):
    """tiny3's own train+val as the source of a tiny3 run: its val split is in the source's training data."""
    source = dataclasses.replace(SOURCE, dataset="tiny3")
    target = dataclasses.replace(TARGET, weights_file="run:tiny3/test_resnet/scratch")
    with pytest.raises(ConfigError) as err:
        plan_runs([source, target], tmp_path / "results")
    assert str(err.value).startswith("leakage: 24 of 48 tiny3 val/test images are in tiny3's train/val split")
    assert "--allow-overlap" in str(err.value)
    allowed = plan_runs([source, dataclasses.replace(target, allow_overlap=True)], tmp_path / "results")
    assert allowed[1].spec.allow_overlap
