"""Planning a sweep: a finished run is skipped, and a run whose data or dataset entry changed is run again."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from bench.runs.record import load_records
from bench.runs.runner import run
from bench.runs.spec import RunSpec
from bench.runs.sweep import Sweep, load_sweep, plan_runs

SPEC = RunSpec("test_resnet", "tiny", "scratch", epochs=1)
CPU = torch.device("cpu")


def _flip_test_labels(npz_path) -> None:
    arrays = dict(np.load(npz_path))
    arrays["test_labels"] = 1 - arrays["test_labels"]
    np.savez_compressed(npz_path, **arrays)


def test_a_record_whose_data_changed_is_run_again_not_skipped(project, tmp_path):
    results = tmp_path / "results"
    (before,) = plan_runs([SPEC], results)
    first = run(SPEC, results, CPU, identity=before.identity)
    assert first.key == before.key and plan_runs([SPEC], results)[0].status == "ok"  # finished: skipped

    _flip_test_labels(project / "data" / "tiny.npz")
    (after,) = plan_runs([SPEC], results)
    assert after.status is None and after.key != before.key and after.path != before.path
    second = run(SPEC, results, CPU, identity=after.identity)
    assert second.ok and second.dataset.fingerprint != first.dataset.fingerprint
    assert {r.key for r in load_records(results)} == {first.key, second.key}
    assert len({r.experiment for r in load_records(results)}) == 2  # two rows, never one seed twice


def test_an_edited_dataset_entry_is_a_new_run(project, tmp_path):
    (before,) = plan_runs([SPEC], tmp_path)
    entry = project / "datasets" / "tiny.toml"
    entry.write_text(entry.read_text().replace('policy = "official"', 'policy = "carve_val"\nval = 0.25'))
    (after,) = plan_runs([SPEC], tmp_path)
    assert after.key != before.key
    assert after.identity["data"]["entry"]["split"]["policy"] == "carve_val"


def test_data_changed_after_planning_fails_the_run_rather_than_mislabel_it(project, tmp_path):
    (planned,) = plan_runs([SPEC], tmp_path)
    _flip_test_labels(project / "data" / "tiny.npz")
    record = run(SPEC, tmp_path, CPU, identity=planned.identity)
    assert record.status == "failed" and record.key == planned.key
    assert record.error.startswith("DataError: dataset 'tiny' changed between planning and loading")


def test_a_failed_run_whose_data_changed_since_is_run_again_without_a_flag(project, tmp_path):
    """A run recorded failed is skipped (until --retry-failed) only while its data is the same: it is keyed by it."""
    (planned,) = plan_runs([SPEC], tmp_path)
    _flip_test_labels(project / "data" / "tiny.npz")  # changed between planning and loading: a DataError
    assert run(SPEC, tmp_path, CPU, identity=planned.identity).status == "failed"
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
