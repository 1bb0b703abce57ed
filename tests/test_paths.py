"""BENCH_HOME adds the user's entries to the shipped registries; one of a shipped name replaces it, and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.data.entries import get_dataset_entry, list_datasets
from bench.models.registry import get_backbone, list_backbones
from bench.paths import project_root, registry_files, replaced_entries
from bench.protocol.spec import get_protocol, list_protocols
from bench.runs.sweep import load_sweep

REPO = Path(__file__).resolve().parents[1]
SHIPPED_SWEEPS = {
    "data-efficiency",
    "data-efficiency-steps",
    "default",
    "isic-engine",
    "medmnist-v2",
    "mission",
    "mission-cpu",
    "mission-fair",
    "mission-fair-gpu",
    "reference",
    "transfer",
} | {
    f"seeds/{name}"
    for name in (
        "s0-effnetv2s-ham10000",
        "s1-effnetv2b0-ham10000",
        "s2-effnetb0-isic",
        "s3-frozen-ham10000",
        "s4-transfer-xray-isic",
    )
}

NOTES = 'name = "notes"\ntitle = "my notes"\nlayout = "npz"\npath = "data/notes.npz"\nclasses = ["a", "b"]\n'
NOTES += 'task = "binary"\ncolor = "grayscale"\nlicence = "mine"\ncitation = "mine"\n[split]\npolicy = "official"\n'


@pytest.fixture
def user_home(tmp_path, monkeypatch) -> Path:
    """A BENCH_HOME with one new entry of each kind and a resnet18 entry of its own."""
    home = tmp_path / "home"
    for kind in ("backbones", "datasets", "protocols", "sweeps"):
        (home / kind).mkdir(parents=True)
    (home / "backbones" / "mine.toml").write_text('name = "mine"\ntitle = "Mine"\ntimm_name = "test_resnet"\n')
    (home / "backbones" / "resnet18.toml").write_text('name = "resnet18"\ntitle = "My ResNet-18"\n')
    (home / "datasets" / "notes.toml").write_text(NOTES)
    protocol = (REPO / "protocols" / "scratch.toml").read_text().replace('name = "scratch"', 'name = "quick"')
    (home / "protocols" / "quick.toml").write_text(protocol)
    sweep = 'name = "mine"\n[[group]]\nbackbones = ["mine"]\ndatasets = ["notes"]\nprotocols = ["quick"]\n'
    (home / "sweeps" / "mine.toml").write_text(sweep)
    monkeypatch.setenv("BENCH_HOME", str(home))
    return home


def test_a_clone_reads_the_repository_registries(monkeypatch):
    monkeypatch.delenv("BENCH_HOME", raising=False)
    assert project_root() == REPO
    assert set(registry_files("sweeps")) == SHIPPED_SWEEPS and replaced_entries("backbones") == []


def test_user_entries_are_added_to_the_shipped_ones(user_home):
    names = {e.name for e in list_backbones()}
    assert {"mine", "resnet18", "efficientnet_b0", "vgg16"} <= names
    assert {e.name for e in list_datasets()} >= {"notes", "isic", "ham10000"}
    assert get_dataset_entry("notes").path == user_home / "data" / "notes.npz"  # under BENCH_HOME, not the repo
    assert get_dataset_entry("isic").path == REPO / "data" / "isic"  # a shipped entry still reads shipped data
    assert {"quick", "scratch", "staged"} <= set(list_protocols()) and get_protocol("quick").name == "quick"
    assert set(registry_files("sweeps")) == SHIPPED_SWEEPS | {"mine"}
    assert load_sweep("mine").expand()[0].backbone == "mine" and load_sweep("default").name == "default"


def test_a_user_entry_of_a_shipped_name_wins_and_is_named(user_home):
    assert get_backbone("resnet18").title == "My ResNet-18"
    assert [e.title for e in list_backbones() if e.name == "resnet18"] == ["My ResNet-18"]  # listed once
    assert replaced_entries("backbones") == [
        f"backbones: {user_home / 'backbones' / 'resnet18.toml'} replaces the shipped resnet18"
    ]
    assert replaced_entries("datasets") == [] and replaced_entries("sweeps") == []


def test_the_embedded_data_is_read_from_file_names_and_named_in_the_wheel_hint(tmp_path, monkeypatch):
    import bench.paths

    monkeypatch.setattr(bench.paths, "shipped_copy", lambda: tmp_path)
    monkeypatch.setattr(bench.paths, "project_root", lambda: tmp_path)  # as in an installed wheel
    assert bench.paths.embedded_data() == {} and bench.paths.data_hint().startswith("the wheel ships no data: ")
    (tmp_path / "embedded").mkdir()
    for name in ("isic-28px.npz", "ham10000-minus-isic-28px.npz", "isic-64px.npz", "notes.txt", "bad-xpx.npz"):
        (tmp_path / "embedded" / name).touch()
    assert bench.paths.embedded_data() == {"ham10000-minus-isic": [28], "isic": [28, 64]}
    assert bench.paths.describe_embedded() == "ham10000-minus-isic at 28 px; isic at 28 and 64 px"
    hint = bench.paths.data_hint()
    assert hint.startswith("the wheel ships only the default sweep's data (ham10000-minus-isic at 28 px; isic at")
    assert "BENCH_HOME" in hint
