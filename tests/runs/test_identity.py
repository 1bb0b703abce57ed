"""The experiment identity: what it holds, what it leaves out, and that later config fields do not move it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench.data.entries import DatasetEntry
from bench.errors import ConfigError, WeightsError
from bench.models.registry import BackboneEntry
from bench.protocol.spec import Augment, Phase, Protocol
from bench.runs.identity import (
    DESCRIPTIVE_FIELDS,
    SCHEMA2_FIELDS,
    ExperimentIdentity,
    InitialWeights,
    canonical,
    digest,
    initial_weights,
    run_key,
)
from bench.runs.resolve import experiment_identity
from bench.runs.spec import RunSpec

SPEC = RunSpec("test_resnet", "tiny", "scratch", epochs=1)


def test_identity_holds_the_resolved_config_and_the_data(project):
    identity = experiment_identity(SPEC)
    assert set(identity.to_dict()) == {"backbone", "protocol", "resolution", "precision", "weights", "data"}
    assert identity.protocol.phases[0].epochs == 1 and identity.protocol.augment.hflip
    assert identity.to_dict()["resolution"] == {"asked": 28, "policy": "upsize", "effective": 28}
    assert identity.weights == InitialWeights("random-init") and identity.precision == "auto"
    data = identity.data
    assert data.entry is not None
    assert data.entry["split"] == {"policy": "official", "seed": None, "train": None, "val": None, "test": None}
    assert data.fingerprint is not None and data.pixels_sha256 is not None
    assert len(data.fingerprint) == len(data.pixels_sha256) == 64
    assert "title" not in data.entry and "path" not in data.entry  # descriptive, not what a run saw


def test_the_stored_identity_reads_back_as_the_same_experiment(project, tmp_path):
    """The typed identity and its one serialisation: read back from JSON it is equal, with the same id."""
    body = '\n[[phases]]\nname = "full"\nepochs = 1\nlr = 0.01\ntrainable = 1.0\nlayer_decay = 0.5\n'
    (tmp_path / "later.toml").write_text('name = "later"\npretrained = false\nwarmup_epochs = 1\n' + body)
    later = dataclasses.replace(SPEC, protocol=str(tmp_path / "later.toml"), train_fraction=0.5, fused_optimizer=True)
    later = dataclasses.replace(later, compile=True)
    for spec in (SPEC, later):
        identity = experiment_identity(spec)
        again = ExperimentIdentity.from_dict(json.loads(json.dumps(identity.to_dict())))
        assert again == identity and again.id == identity.id == digest(identity.to_dict())


@pytest.mark.parametrize(
    "change",
    [
        {"epochs": 2},
        {"precision": "fp32"},
        {"fused_optimizer": True},
        {"compile": True},
        {"resolution": 32},
        {"protocol": "linear"},
    ],
)
def test_anything_but_the_seed_is_another_experiment(project, change):
    assert experiment_identity(dataclasses.replace(SPEC, **change)) != experiment_identity(SPEC)


def test_a_measured_bf16_is_the_experiment_of_an_asked_bf16_and_the_memory_format_is_none(project):
    """A CPU's ``auto`` resolved to bf16 is keyed, named and labelled bf16; resolved to fp32 it stays ``auto`` (the key
    of every record made before the choice existed); channels-last changes speed, not the experiment."""
    measured = dataclasses.replace(SPEC, auto_precision="bf16")
    asked = dataclasses.replace(SPEC, precision="bf16")
    assert experiment_identity(measured) == experiment_identity(asked) != experiment_identity(SPEC)
    assert experiment_identity(measured).precision == "bf16" and experiment_identity(SPEC).precision == "auto"
    assert measured.stem("0" * 64) == asked.stem("0" * 64) == "scratch-r28-s0-bf16-000000000000"
    assert experiment_identity(dataclasses.replace(SPEC, memory_format="nhwc")) == experiment_identity(SPEC)
    assert dataclasses.replace(SPEC, memory_format="nhwc").to_dict()["memory_format"] == "nhwc"
    assert "memory_format" not in SPEC.to_dict() and "auto_precision" not in SPEC.to_dict()  # old records read alike
    assert RunSpec.from_dict(measured.to_dict()) == measured


@pytest.mark.parametrize(
    "change, message",
    [
        ({"memory_format": "nwhc"}, "memory format 'nwhc' is not one of auto, nchw, nhwc"),
        ({"auto_precision": "bf16", "precision": "fp32"}, "auto_precision 'bf16' with precision 'fp32'"),
        ({"auto_precision": "fp16"}, "auto_precision 'fp16' with precision 'auto'"),
    ],
)
def test_engine_fields_are_checked(change, message):
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{message}"):
        dataclasses.replace(SPEC, **change)


def test_the_seed_data_root_and_versions_are_not_the_experiment(project):
    here = experiment_identity(SPEC)
    assert experiment_identity(dataclasses.replace(SPEC, seed=3)) == here
    assert experiment_identity(dataclasses.replace(SPEC, data_root=str(project / "data" / "tiny.npz"))) == here
    versions = {"backbone-bench": "0.1.0", "torch": "2.14.1", "timm": "1.0.31"}
    assert run_key(here, 0, versions) != run_key(here, 0, {**versions, "torch": "2.15.0"})
    assert run_key(here, 0, versions) != run_key(here, 1, versions)
    assert here.id == digest(dict(reversed(list(here.to_dict().items()))))  # key order is not content


def test_a_weights_file_is_hashed_up_front(tmp_path):
    weights = tmp_path / "w.safetensors"
    header = (2).to_bytes(8, "little") + b"{}"  # a safetensors file's first bytes: only those are read here
    weights.write_bytes(header + b"one")
    first = initial_weights(True, str(weights))
    weights.write_bytes(header + b"two")
    assert first.source == "file" and initial_weights(True, str(weights)) != first
    assert initial_weights(False, str(weights)) == InitialWeights("random-init")  # not loaded: not the experiment
    with pytest.raises(WeightsError, match="missing.safetensors: cannot read"):
        initial_weights(True, str(tmp_path / "missing.safetensors"))
    (tmp_path / "notes.safetensors").write_text("not weights\n")
    with pytest.raises(WeightsError, match="notes.safetensors: not a safetensors file or PyTorch checkpoint$"):
        initial_weights(True, str(tmp_path / "notes.safetensors"))


@pytest.mark.parametrize("cls", [BackboneEntry, Protocol, Phase, Augment, DatasetEntry])
def test_the_schema2_field_lists_name_real_fields(cls):
    names = {f.name for f in dataclasses.fields(cls)}
    listed = SCHEMA2_FIELDS[cls.__name__] | DESCRIPTIVE_FIELDS.get(cls.__name__, frozenset())
    assert listed <= names, listed - names


def _with_new_field(cls: type, name: str, default: object) -> type:
    """``cls`` as a later version would have it: one more field, whose default is the old behaviour."""
    grown = dataclasses.make_dataclass(
        cls.__name__, [(name, type(default), dataclasses.field(default=default))], bases=(cls,), frozen=True
    )
    return grown


def test_a_field_added_later_at_its_default_leaves_identities_alone():
    phase = Phase("full", epochs=2, lr=1e-3, trainable=1.0)
    grown = _with_new_field(Phase, "layer_decay", 1.0)
    assert canonical(grown("full", epochs=2, lr=1e-3, trainable=1.0)) == canonical(phase)
    assert canonical(grown("full", epochs=2, lr=1e-3, trainable=1.0, layer_decay=0.7)) == {
        **canonical(phase),
        "layer_decay": 0.7,
    }


def test_a_schema2_field_always_enters_even_at_its_default():
    """So changing a default later changes the identity of runs that used it, as it changes their numbers."""
    assert canonical(Phase("full", epochs=2, lr=1e-3, trainable=1.0))["freeze_bn"] is False


def test_the_new_protocol_fields_at_their_defaults_leave_the_protocol_identity_alone():
    phase = Phase("full", epochs=2, lr=1e-3, trainable=1.0)
    assert set(canonical(phase)) == SCHEMA2_FIELDS["Phase"]
    assert set(canonical(Protocol(name="p", pretrained=False, phases=(phase,)))) == SCHEMA2_FIELDS["Protocol"]


def test_a_protocol_split_is_another_experiment_of_other_data(project, tmp_path):
    body = '\n[[phases]]\nname = "full"\nepochs = 1\nlr = 0.01\ntrainable = 1.0\n'
    (tmp_path / "own.toml").write_text('name = "own"\npretrained = false\n' + body)
    (tmp_path / "resplit.toml").write_text('name = "resplit"\npretrained = false\nsplit = "70/20/10"\n' + body)
    plain = experiment_identity(dataclasses.replace(SPEC, protocol=str(tmp_path / "own.toml")))
    other = experiment_identity(dataclasses.replace(SPEC, protocol=str(tmp_path / "resplit.toml")))
    assert other.data.entry is not None
    assert other.data.entry["split"] == {"policy": "stratified", "seed": 0, "train": 0.7, "val": 0.2, "test": 0.1}
    assert other.data.fingerprint != plain.data.fingerprint and other.protocol.split == "70/20/10"


# (train_fraction, in the identity, in the record's file name): 1.0 (and 1 from a file) is every older run's key.
FRACTIONS = [(1.0, None, ""), (1, None, ""), (0.5, 0.5, "-f0.5"), (0.1, 0.1, "-f0.1")]


@pytest.mark.parametrize("fraction, entered, tag", FRACTIONS)
def test_a_training_fraction_enters_the_identity_and_key_only_below_one(project, fraction, entered, tag):
    spec = dataclasses.replace(SPEC, train_fraction=fraction)
    identity = experiment_identity(spec)
    assert identity.to_dict().get("train_fraction") == entered
    assert (run_key(identity, 0, {}) == run_key(experiment_identity(SPEC), 0, {})) is (entered is None)
    assert spec.stem("0" * 64) == f"scratch-r28-s0{tag}-000000000000"
    assert ("train_fraction" in spec.to_dict()) is (entered is not None)
    assert RunSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("fraction", [0, 1.5, -1, float("nan")])
def test_a_spec_with_a_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(ConfigError, match="train_fraction .* must be in \\(0, 1\\]"):
        RunSpec("test_resnet", "tiny", "scratch", train_fraction=fraction)
