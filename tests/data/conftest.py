"""Fixtures of the data tests: a decode cache and a project folder of each test's own."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own decode cache, so none reads another's (or the user's) files."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE", str(folder))
    return folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder of our own (BENCH_HOME) with an empty ``datasets/`` registry."""
    folder = tmp_path / "home"
    (folder / "datasets").mkdir(parents=True)
    monkeypatch.setenv("BENCH_HOME", str(folder))
    return folder
