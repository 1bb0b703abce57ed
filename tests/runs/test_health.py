"""A run's training health in its record: stored by the runner, derived on reading for records written before.

The committed mission records are judged without being retrained or rewritten: their keys stay what they were,
and the verdicts come from the validation data they already hold.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from factories import make_record, metric_values

from bench.models.registry import get_backbone
from bench.protocol.spec import get_protocol
from bench.runs.health import RunHealth, run_health
from bench.runs.identity import canonical, run_key
from bench.runs.record import load_records, read_record, save_record
from bench.train.history import EpochLog

MISSION = Path(__file__).resolve().parents[2] / "results" / "mission"
COLLAPSED = metric_values({"balanced_accuracy": 0.5, "confusion_matrix": [[49, 0], [41, 0]]}, ("benign", "malignant"))
LEARNED = metric_values({"balanced_accuracy": 0.79, "confusion_matrix": [[40, 9], [10, 31]]}, ("a", "b"))


def history(val_losses: list[float], train_losses: list[float] | None = None) -> list[EpochLog]:
    train = train_losses or [0.6] * len(val_losses)
    val = metric_values({}, ("a", "b"))
    return [
        EpochLog("full", e, 1e-3, t, v, val, 1.0)
        for e, (v, t) in enumerate(zip(val_losses, train, strict=True), start=1)
    ]


def test_the_verdicts_from_a_records_parts():
    health = run_health(COLLAPSED, history([0.8, 0.9], [15.6, 0.69]), "loss", 1, ("benign", "malignant"))
    assert health.did_not_learn and health.learned_p == 1.0
    assert health.learned_reason == "predicts one class (benign) for all 90 validation images"
    assert health.converged == "converged" and not health.not_converged
    assert health.loss_alarm == "training loss exploded: 15.6 in epoch 1, 22.5x ln 2"


def test_a_stop_on_a_non_finite_loss_is_the_alarm():
    stopped = "loss became nan in phase 'full', epoch 3: training stopped, epoch 2 kept"
    health = run_health(LEARNED, history([0.8, 0.7]), "loss", 2, ("a", "b"), stopped=stopped)
    assert health.stopped == health.loss_alarm == stopped and health.learned == "learned"


def test_an_old_record_gets_its_health_derived_and_keeps_its_file(tmp_path):
    record = make_record(epochs=3)
    record.val = COLLAPSED
    record.dataset.classes = ["benign", "malignant"]
    path = save_record(record, tmp_path)
    stored = path.read_bytes()
    (loaded,) = load_records(tmp_path)
    assert loaded.health is None and "health" not in json.loads(stored)
    assert loaded.training_health().did_not_learn
    assert loaded.to_json() == json.loads(stored)  # reading derives, never writes
    assert path.read_bytes() == stored


def test_a_stored_verdict_is_kept_and_read_back(tmp_path):
    record = make_record()
    record.health = RunHealth("learned", "why", "not converged", "still improving", learned_p=0.001)
    path = save_record(record, tmp_path)
    assert json.loads(path.read_text())["health"]["converged"] == "not converged"
    assert read_record(path).training_health() == record.health


def test_an_unfinished_run_has_no_verdict():
    assert make_record(status="failed").training_health() is None


def test_epochs_run_is_the_history():
    assert make_record(epochs=4).epochs_run == 4


# --- the committed mission records ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mission():
    return load_records(MISSION)


def test_the_mission_records_keep_their_run_keys_and_identities(mission):
    """New protocol fields at their defaults change no identity: every committed key recomputes from the identity,
    and the identity's protocol and backbone are what the registries give today."""
    assert len(mission) == 117
    for record in mission:
        spec = record.spec
        assert run_key(record.identity, spec.seed, record.versions, spec.source_key) == record.key, record.label
        assert record.path.name.endswith(f"-{record.key[:12]}.json")
        protocol = get_protocol(spec.protocol).with_epochs(spec.epochs)
        assert protocol == record.identity.protocol, record.label
        assert canonical(get_backbone(spec.backbone)) == record.identity.backbone, record.label
        assert record.health is None  # judged on reading: the files are as committed


@pytest.mark.parametrize("backbone", ["efficientnet_b0", "vgg16"])
def test_isic_efficientnet_b0_and_vgg16_did_not_learn_on_their_committed_validation(mission, backbone):
    runs = [r for r in mission if r.spec.dataset == "isic" and r.spec.backbone == backbone]
    assert len(runs) == 3
    for record in runs:
        health = record.training_health()
        assert health.did_not_learn, record.label
        assert health.learned_reason.startswith("predicts one class (") and "for all 90 validation images" in (
            health.learned_reason
        )
        assert health.loss_alarm.startswith("training loss exploded: ")


def test_every_mission_verdict(mission):
    """The runs judged not to have learned, pinned (validation only; 2000 seeded shuffles)."""
    failed = sorted(
        (r.spec.dataset, r.spec.backbone, r.spec.seed) for r in mission if r.training_health().did_not_learn
    )
    assert failed == [
        ("chest_xray", "efficientnet_b0", 1),
        *[("isic", "convnext_small", s) for s in (0, 1, 2)],
        *[("isic", "convnext_tiny", s) for s in (1, 2)],
        *[("isic", "efficientnet_b0", s) for s in (0, 1, 2)],
        *[("isic", "tf_efficientnetv2_b0", s) for s in (1, 2)],
        *[("isic", "tf_efficientnetv2_s", s) for s in (0, 1)],
        *[("isic", "vgg16", s) for s in (0, 1, 2)],
    ]
    ham = [r for r in mission if r.spec.dataset == "ham10000"]
    assert sum(r.training_health().not_converged for r in ham) == 33


def test_a_records_health_round_trips_as_a_dataclass():
    health = RunHealth("did not learn", "r", "converged", "c", "boom", None, 0.3)
    assert RunHealth(**dataclasses.asdict(health)) == health
