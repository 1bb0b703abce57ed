"""Protocols as data: every preset file reads to the protocol it always was; protocol files and their errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.protocol.search import Range, Search
from bench.protocol.spec import Augment, Phase, Protocol, get_protocol, list_protocols

REPO_PROTOCOLS = Path(__file__).resolve().parents[2] / "protocols"
FLIP_ROT_ZOOM = Augment(rotation=15.0, hflip=True, vflip=True, zoom=0.1)

# The presets as bench/protocol/spec.py defined them in code before they became protocols/*.toml: every field of
# every preset must read back the same, or the run keys of every committed record would change.
PRESETS = [
    Protocol(
        name="scratch",
        pretrained=False,
        phases=(Phase("full", epochs=20, lr=1e-3, trainable=1.0),),
        augment=FLIP_ROT_ZOOM,
    ),
    Protocol(
        name="linear",
        pretrained=True,
        phases=(Phase("head", epochs=20, lr=1e-3, trainable=0.0),),
        augment=FLIP_ROT_ZOOM,
    ),
    Protocol(
        name="staged",
        pretrained=True,
        optimizer="adamw",
        weight_decay=1e-4,
        phases=(
            Phase("head", epochs=5, lr=1e-3, trainable=0.0),
            Phase("top", epochs=5, lr=1e-4, trainable=0.3, freeze_bn=True),
            Phase("full", epochs=5, lr=1e-5, trainable=1.0, freeze_bn=True),
        ),
        augment=FLIP_ROT_ZOOM,
    ),
    Protocol(
        name="staged-s1",
        pretrained=True,
        optimizer="adamw",
        weight_decay=1e-4,
        phases=(
            Phase("head", epochs=5, lr=1e-3, trainable=0.0),
            Phase("top", epochs=25, lr=1e-4, trainable=0.75, freeze_bn=True),
            Phase("full", epochs=5, lr=1e-5, trainable=1.0, freeze_bn=True),
        ),
        augment=FLIP_ROT_ZOOM,
    ),
    Protocol(
        name="medmnist-v2",
        pretrained=False,
        phases=(Phase("full", epochs=100, lr=1e-3, trainable=1.0),),
        schedule="step",
        milestones=(50, 75),
        early_stopping_patience=None,
        select_on="auc",
    ),
    # The five source projects' protocols (issue 18), each with the fields it needs.
    Protocol(
        name="s0-head-top30",
        pretrained=True,
        drop_rate=0.3,
        phases=(Phase("head", epochs=10, lr=1e-3, trainable=0.0), Phase("top", epochs=10, lr=1e-4, trainable=0.3)),
        augment=FLIP_ROT_ZOOM,
    ),
    Protocol(
        name="s1-rebalanced",
        pretrained=True,
        optimizer="adamw",
        weight_decay=1e-4,
        sampler="balanced",
        phases=(
            Phase("head", epochs=5, lr=1e-3, trainable=0.0),
            Phase("top", epochs=25, lr=1e-4, trainable=0.75, freeze_bn=True),
            Phase("full", epochs=5, lr=1e-5, trainable=1.0, freeze_bn=True),
        ),
        augment=FLIP_ROT_ZOOM,
    ),
    Protocol(
        name="s2-discriminative",
        pretrained=True,
        early_stopping_patience=None,
        phases=(Phase("finetune", epochs=15, lr=1e-4, trainable=1.0, layer_decay=0.8),),
        augment=Augment(hflip=True, vflip=True),
    ),
    Protocol(
        name="s3-frozen-gap",
        pretrained=True,
        drop_rate=0.5,
        class_weighted_loss=True,
        phases=(Phase("head", epochs=30, lr=1e-3, trainable=0.0),),
    ),
    Protocol(
        name="fair",
        pretrained=False,
        phases=(Phase("full", epochs=40, lr=1e-3, trainable=1.0),),
        early_stopping_patience=8,
        select_on="balanced_accuracy",
        grad_clip_norm=1.0,
        warmup_epochs=1,
        augment=FLIP_ROT_ZOOM,
        search=Search(trials=3, epochs=6, lr=Range(1e-4, 3e-3)),
    ),
    Protocol(
        name="fair-staged",
        pretrained=True,
        optimizer="adamw",
        weight_decay=1e-4,
        phases=(
            Phase("head", epochs=5, lr=1e-3, trainable=0.0),
            Phase("top", epochs=5, lr=1e-4, trainable=0.3, freeze_bn=True),
            Phase("full", epochs=30, lr=1e-5, trainable=1.0, freeze_bn=True),
        ),
        early_stopping_patience=8,
        select_on="balanced_accuracy",
        grad_clip_norm=1.0,
        warmup_epochs=1,
        augment=FLIP_ROT_ZOOM,
        search=Search(trials=3, epochs=(2, 2, 2), lr=Range(1e-4, 3e-3)),
    ),
    Protocol(
        name="s4-gradual",
        pretrained=True,
        split="70/20/10",
        phases=(
            Phase("head", epochs=5, lr=1e-3, trainable=0.0),
            Phase("gradual", epochs=10, lr=1e-4, trainable=1.0, unfreeze="gradual"),
        ),
        augment=Augment(rotation=10.0, hflip=True, zoom=0.1),
    ),
]


@pytest.mark.parametrize("expected", PRESETS, ids=[p.name for p in PRESETS])
def test_preset_file_reads_to_the_protocol_it_was(expected):
    protocol = get_protocol(expected.name)
    assert protocol == expected
    # what the run key hashes, as JSON: 1.0 and 1 are equal in Python but not in the key
    assert json.dumps(protocol.to_dict()) == json.dumps(expected.to_dict())


def test_every_preset_file_is_in_the_case_table():
    assert list_protocols() == sorted(p.name for p in PRESETS)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A project folder (BENCH_HOME) with the real presets, to add files to."""
    shutil.copytree(REPO_PROTOCOLS, tmp_path / "protocols")
    monkeypatch.setenv("BENCH_HOME", str(tmp_path))
    return tmp_path


def test_adding_a_protocol_is_one_file(home):
    (home / "protocols" / "quick.toml").write_text(
        'name = "quick"\npretrained = false\nearly_stopping_patience = false\n'
        '[[phases]]\nname = "full"\nepochs = 2\nlr = 0.01\ntrainable = 1.0\n'
    )
    protocol = get_protocol("quick")
    assert protocol.phases == (Phase("full", epochs=2, lr=0.01, trainable=1.0),)
    assert protocol.early_stopping_patience is None  # false: every epoch runs
    assert "quick" in list_protocols()


def test_a_preset_named_unlike_its_file_is_refused(home):
    (home / "protocols" / "quick.toml").write_text(
        'name = "fast"\npretrained = false\n[[phases]]\nname = "full"\nepochs = 2\nlr = 0.01\ntrainable = 1.0\n'
    )
    with pytest.raises(ConfigError, match=r"quick.toml: field 'name' is 'fast' but must equal the file name 'quick'"):
        get_protocol("quick")


def test_unknown_protocol_lists_the_presets():
    presets = r"presets: fair, fair-staged, linear, medmnist-v2, .*, staged-s1 \(or a path"
    with pytest.raises(ConfigError, match=presets):
        get_protocol("nonsense")


def test_staged_presets_follow_the_seed_protocols():
    s0, s1 = get_protocol("staged"), get_protocol("staged-s1")
    assert [p.trainable for p in s0.phases] == [0.0, 0.3, 1.0]
    assert [p.epochs for p in s1.phases] == [5, 25, 5] and s1.phases[1].trainable == 0.75
    assert s0.phases[2].lr < s0.phases[1].lr < s0.phases[0].lr


def test_medmnist_v2_setting():
    p = get_protocol("medmnist-v2")
    assert (p.phases[0].epochs, p.phases[0].lr, p.batch_size) == (100, 1e-3, 128)
    assert (p.schedule, p.milestones) == ("step", (50, 75))
    assert not p.augment.enabled and p.select_on == "auc"


@pytest.mark.parametrize("epochs, expected", [(2, (2, 2, 2)), ((1, 2, 3), (1, 2, 3))])
def test_with_epochs(epochs, expected):
    assert tuple(p.epochs for p in get_protocol("staged").with_epochs(epochs).phases) == expected


def test_with_epochs_wrong_count():
    with pytest.raises(ConfigError, match="3 phases, got 2"):
        get_protocol("staged").with_epochs((1, 2))


def test_protocol_from_toml(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\npretrained = false\nbatch_size = 64\n'
        '[[phases]]\nname = "full"\nepochs = 3\nlr = 0.01\ntrainable = 1.0\n'
    )
    protocol = get_protocol(str(path))
    assert protocol.batch_size == 64 and protocol.phases[0].epochs == 3


@pytest.mark.parametrize("name, match", [("nonsense", "unknown protocol 'nonsense'"), ("bad.toml", "cannot read")])
def test_unknown_protocol(name, match):
    with pytest.raises(ConfigError, match=match):
        get_protocol(name)


def test_bad_phase_fraction():
    with pytest.raises(ConfigError, match="trainable must be in"):
        Phase("x", epochs=1, lr=1e-3, trainable=1.5)


@pytest.mark.parametrize("epochs", ["0", "0, 0"])
def test_a_protocol_that_trains_zero_epochs_is_refused(tmp_path, epochs):
    """Every phase at 0 epochs would 'finish' a run that never trained: the file and field are named."""
    path = tmp_path / "idle.toml"
    phases = "".join(
        f'[[phases]]\nname = "p{i}"\nepochs = {e}\nlr = 0.01\ntrainable = 1.0\n'
        for i, e in enumerate(epochs.split(","))
    )
    path.write_text('name = "idle"\npretrained = false\n' + phases)
    with pytest.raises(ConfigError, match=r"idle.toml: field 'phases' train for 0 epochs in all"):
        get_protocol(str(path))


def test_the_guards_against_an_exploding_loss_are_checked(home):
    body = '\n[[phases]]\nname = "full"\nepochs = 1\nlr = 0.01\ntrainable = 1.0\n'
    (home / "protocols" / "clip.toml").write_text('name = "clip"\npretrained = false\ngrad_clip_norm = 0\n' + body)
    with pytest.raises(ConfigError, match=r"clip.toml: field 'grad_clip_norm' is 0.0; a gradient norm limit must"):
        get_protocol("clip")
    (home / "protocols" / "warm.toml").write_text('name = "warm"\npretrained = false\nwarmup_epochs = -1\n' + body)
    with pytest.raises(ConfigError, match=r"warm.toml: field 'warmup_epochs' is -1; it must be >= 0"):
        get_protocol("warm")
