"""Planning a sweep: a finished run is skipped, and a run whose data or dataset entry changed is run again."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.errors import ConfigError
from bench.runs.plan import SweepRequest, sweep_specs
from bench.runs.planned import plan_runs
from bench.runs.record import load_records
from bench.runs.runner import run
from bench.runs.spec import RunSpec
from bench.runs.sweep import Sweep, load_sweep

SPEC = RunSpec("test_resnet", "tiny", "scratch", epochs=1)
CPU = torch.device("cpu")


def _flip_test_labels(npz_path) -> None:
    arrays = dict(np.load(npz_path))
    arrays["test_labels"] = 1 - arrays["test_labels"]
    np.savez_compressed(npz_path, **arrays)


def test_a_record_whose_data_changed_is_run_again_not_skipped(project, tmp_path):
    results = tmp_path / "results"
    (before,) = plan_runs([SPEC], results)
    first = run(before.run, results, CPU)
    assert first.key == before.key and plan_runs([SPEC], results)[0].status == "ok"  # finished: skipped

    _flip_test_labels(project / "data" / "tiny.npz")
    (after,) = plan_runs([SPEC], results)
    assert after.status is None and after.key != before.key and after.path != before.path
    second = run(after.run, results, CPU)
    assert second.ok and second.dataset.fingerprint != first.dataset.fingerprint
    assert {r.key for r in load_records(results)} == {first.key, second.key}
    assert len({r.experiment for r in load_records(results)}) == 2  # two rows, never one seed twice


def test_an_edited_dataset_entry_is_a_new_run(project, tmp_path):
    (before,) = plan_runs([SPEC], tmp_path)
    entry = project / "datasets" / "tiny.toml"
    entry.write_text(entry.read_text().replace('policy = "official"', 'policy = "carve_val"\nval = 0.25'))
    (after,) = plan_runs([SPEC], tmp_path)
    assert after.key != before.key
    assert after.identity.data.entry["split"]["policy"] == "carve_val"


def test_data_changed_after_planning_fails_the_run_rather_than_mislabel_it(project, tmp_path):
    (planned,) = plan_runs([SPEC], tmp_path)
    _flip_test_labels(project / "data" / "tiny.npz")
    record = run(planned.run, tmp_path, CPU)
    assert record.status == "failed" and record.key == planned.key
    assert record.error.startswith("DataError: dataset 'tiny' changed between planning and loading")


def test_a_failed_run_whose_data_changed_since_is_run_again_without_a_flag(project, tmp_path):
    """A run recorded failed is skipped (until --retry-failed) only while its data is the same: it is keyed by it."""
    (planned,) = plan_runs([SPEC], tmp_path)
    _flip_test_labels(project / "data" / "tiny.npz")  # changed between planning and loading: a DataError
    assert run(planned.run, tmp_path, CPU).status == "failed"
    assert plan_runs([SPEC], tmp_path)[0].key != planned.key and plan_runs([SPEC], tmp_path)[0].status is None
    _flip_test_labels(project / "data" / "tiny.npz")  # the file as it was planned: the failed record is this run's
    assert plan_runs([SPEC], tmp_path)[0].status == "failed"


def test_relative_paths_in_a_sweep_file_are_read_from_its_folder(tmp_path, monkeypatch):
    """A dataset folder and a weights file named relative to the sweep file, run from another directory."""
    study = tmp_path / "study"
    for name, value in (("cat", 60), ("dog", 180)):
        (study / "pets" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((12, 12, 3), value + i, np.uint8)).save(study / "pets" / name / f"{i}.png")
    absolute = str(tmp_path / "elsewhere.safetensors")
    sweep = study / "s.toml"
    sweep.write_text(
        'name = "s"\n'
        '[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["./pets"]\nweights_file = "start.safetensors"\n'
        f'[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["{study / "pets"}"]\nweights_file = "{absolute}"\n'
        '[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["pets2"]\nweights_file = "run:pets/test_resnet/scratch"\n'
    )
    monkeypatch.chdir(tmp_path)  # not the sweep file's folder
    relative, given, named = load_sweep(sweep).group
    assert (relative.datasets, relative.weights_file) == ((str(study / "pets"),), str(study / "start.safetensors"))
    assert (given.datasets, given.weights_file) == ((str(study / "pets"),), absolute)  # absolute: as written
    assert (named.datasets, named.weights_file) == (("pets2",), "run:pets/test_resnet/scratch")  # not paths
    (spec,) = Sweep("s", group=(relative,)).expand()
    assert (spec.dataset, spec.data_root) == ("pets", str(study / "pets"))


# (the group's train_fractions line, the fractions of its runs in order): one run per fraction and seed.
EXPANSIONS = [
    ("", [1.0, 1.0]),  # no line: the whole split, every earlier sweep's runs
    ("train_fractions = [0.1, 0.5, 1]", [0.1, 0.1, 0.5, 0.5, 1.0, 1.0]),  # 1 from TOML is 1.0: one key
    ("train_fractions = [0.25, 0.25]", [0.25, 0.25]),  # a fraction listed twice runs once
]


@pytest.mark.parametrize("line, fractions", EXPANSIONS)
def test_train_fractions_expand_into_one_run_per_fraction_and_seed(tmp_path, line, fractions):
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'name = "s"\n[[group]]\nbackbones = ["a"]\ndatasets = ["tiny"]\nseeds = [0, 1]\n{line}\n')
    specs = load_sweep(sweep).expand()
    assert [s.train_fraction for s in specs] == fractions
    assert [s.seed for s in specs] == [0, 1] * (len(fractions) // 2)
    assert all(isinstance(s.train_fraction, float) for s in specs)


@pytest.mark.parametrize("value", ["[0]", "[1.5]", "[]", '["half"]'])
def test_a_train_fraction_outside_zero_to_one_is_refused_naming_the_field(tmp_path, value):
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'name = "s"\n[[group]]\nbackbones = ["a"]\ndatasets = ["tiny"]\ntrain_fractions = {value}\n')
    with pytest.raises(ConfigError, match=r"s\.toml: field 'group\[0\]\.train_fractions"):
        load_sweep(sweep)


def test_train_fractions_on_the_command_line_replace_every_groups(project):
    request = SweepRequest(sweep="default", train_fractions=(0.5, 1.0))
    _, specs = sweep_specs(request)
    assert {s.train_fraction for s in specs} == {0.5, 1.0} and len(specs) == 2 * len(sweep_specs(SweepRequest())[1])


def test_a_fused_optimizer_is_asked_by_a_group_or_the_command_line(project, tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "s"\n[[group]]\nbackbones = ["a"]\ndatasets = ["tiny"]\nfused_optimizer = true\n')
    assert all(s.fused_optimizer for s in load_sweep(sweep).expand())
    _, default = sweep_specs(SweepRequest(sweep="default"))
    _, fused = sweep_specs(SweepRequest(sweep="default", fused_optimizer=True))
    assert not any(s.fused_optimizer for s in default) and all(s.fused_optimizer for s in fused)
