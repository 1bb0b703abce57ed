"""Shared fixtures: a tiny project folder (BENCH_HOME) with a learnable MedMNIST-style npz dataset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from tinydata import tiny_arrays

REPO = Path(__file__).resolve().parents[1]

# CPU runs train in the standing fp32 NCHW unless a test asks for the measured choice (tests/train/test_cpu_engine.py,
# tests/runs/test_engines.py): a measurement per `bench run` would cost seconds and could pick another engine on
# another machine, and with it another key. Set here, at import, so the `bench` subprocesses inherit it.
os.environ["BENCH_CPU_ENGINE"] = "fp32-nchw"


def _tiny_npz(path: Path, seed: int = 0) -> None:
    """28x28 grayscale, two classes told apart by brightness, in the MedMNIST key layout."""
    np.savez_compressed(path, **tiny_arrays(np.random.default_rng(seed)))


@pytest.fixture(scope="session")
def shared_splits(tmp_path_factory) -> Path:
    """One split-assignment cache for the session's projects.

    Its files are keyed by the table's content, the split spec and the sklearn version, so no test can read
    another's assignment for different data; sharing them spares each test that lists the shipped datasets
    the 10 s of StratifiedGroupKFold over HAM10000's lesions. Decoded images and figures stay per test.
    """
    return tmp_path_factory.mktemp("splits")


@pytest.fixture
def project(tmp_path, monkeypatch, shared_splits) -> Path:
    """A BENCH_HOME with the real backbone registry and one tiny npz dataset named ``tiny``."""
    home = tmp_path / "home"
    shutil.copytree(REPO / "backbones", home / "backbones")
    shutil.copytree(REPO / "sweeps", home / "sweeps")
    shutil.copytree(REPO / "protocols", home / "protocols")
    (home / "datasets").mkdir()
    (home / "data").mkdir()
    _tiny_npz(home / "data" / "tiny.npz")
    (home / "datasets" / "tiny.toml").write_text(
        'name = "tiny"\ntitle = "tiny"\nlayout = "npz"\npath = "data/tiny.npz"\nclasses = ["dark", "bright"]\n'
        'task = "binary"\ncolor = "grayscale"\nlicence = "CC0"\ncitation = "synthetic"\n[split]\npolicy = "official"\n'
    )
    monkeypatch.setenv("BENCH_HOME", str(home))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "splits").symlink_to(shared_splits, target_is_directory=True)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(autouse=True)
def _fresh_data_identities():
    """Each test sees its own data: the in-process memo of data identities starts empty."""
    from bench.data.identity import forget

    forget()
    yield
    forget()


@pytest.fixture
def make_record():
    """The shared record factory (:func:`factories.make_record`; tests/ is on sys.path as conftest's folder)."""
    from factories import make_record

    return make_record
