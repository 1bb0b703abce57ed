"""A run is resolved once, at planning, and carried: the registries are read once per run, not at every stage."""

from __future__ import annotations

import pickle

import pytest
import torch

import bench.data.entries
import bench.data.folder
import bench.latency.measure
import bench.models.registry
import bench.protocol.spec
import bench.runs.engines
import bench.runs.evaluate_sets
import bench.runs.source
from bench.runs.planned import plan_runs
from bench.runs.resolve import ResolvedRun, resolve
from bench.runs.runner import run
from bench.runs.spec import RunSpec

SPEC = RunSpec("test_resnet", "tiny", "scratch", epochs=1)
LOOKUPS = [  # each registry's look-up, where it is defined and where a module on a run's path binds it at import
    *((m, "get_backbone") for m in (bench.models.registry, bench.runs.engines, bench.runs.source)),
    (bench.latency.measure, "get_backbone"),
    *((m, "get_protocol") for m in (bench.protocol.spec, bench.runs.engines, bench.runs.source)),
    (bench.data.folder, "dataset_entry"),
    *((m, "get_dataset_entry") for m in (bench.data.entries, bench.runs.evaluate_sets)),
]


@pytest.fixture
def lookups(monkeypatch) -> dict[str, int]:
    """How often each registry is asked, wherever it is imported from inside a function."""
    counts = dict.fromkeys((name for _, name in LOOKUPS), 0)
    for module, name in LOOKUPS:
        original = getattr(module, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    return counts


def test_one_runs_walk_from_planning_to_its_record_reads_each_registry_once(project, tmp_path, lookups):
    (planned,) = plan_runs([SPEC], tmp_path / "results")
    planning = dict(lookups)
    record = run(planned.run, tmp_path / "results", torch.device("cpu"))
    assert record.status == "ok", record.error
    assert record.key == planned.key and record.identity == planned.identity
    assert dict(lookups) == planning  # the runner looked nothing up again
    # planning: the dataset name checked once up front (a typo fails before any data is read), then resolved
    assert planning == {"get_backbone": 1, "get_protocol": 1, "dataset_entry": 2, "get_dataset_entry": 0}


def test_a_resolved_run_crosses_to_a_worker_whole(project):
    """What the local and Ray executors send: it pickles, and keys the same under the same versions."""
    from bench.environment import versions

    resolved = resolve(SPEC)
    again = pickle.loads(pickle.dumps(resolved))
    assert isinstance(again, ResolvedRun) and again.identity == resolved.identity
    assert again.key_with(versions()) == resolved.key
    assert again.key_with({**versions(), "torch": "0.0"}) != resolved.key
    assert (again.protocol.phases[0].epochs, again.resolution, again.backbone.name) == (1, 28, "test_resnet")
