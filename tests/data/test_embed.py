"""The data a wheel embeds (bench.data.embed writes it, bench.data._embedded reads it): a clone's load, served back.

Each test embeds a bundled dataset into tmp_path, points this installation's embedded folder there (as an
installed wheel's ``bench/_registry/embedded``) and takes the entry's ``data/`` away: what loads must be what
the clone loads, image for image, split for split, identity for identity. ISIC is the small one (1,121
images); HAM10000's lesion groups are checked through the table alone, without decoding 10,015 images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import bench.paths
from bench.data._embedded import embedded_items, read_meta, table_from_json, table_to_json
from bench.data.embed import embed_dataset, shipped_entry
from bench.data.entries import DatasetEntry
from bench.data.identity import DataIdentity
from bench.data.loading import load_dataset, read_items
from bench.errors import DataError


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An embedded folder of our own, where an installed wheel keeps it (``shipped_copy() / "embedded"``)."""
    monkeypatch.setattr(bench.paths, "shipped_copy", lambda: tmp_path / "wheel")
    return tmp_path / "wheel" / "embedded"


def without_data(entry: DatasetEntry, tmp_path: Path) -> DatasetEntry:
    """The shipped entry with its data gone, as in a wheel (the entry file stays the shipped one)."""
    return dataclasses.replace(entry, path=tmp_path / "no-data" / entry.name)


def every_image(split) -> torch.Tensor:
    return split.images[torch.arange(len(split))]


def test_an_embedded_dataset_loads_as_the_clone_loads_it(installed: Path, tmp_path: Path) -> None:
    path, written = embed_dataset("isic", 28, installed)
    assert written and path == installed / "isic-28px.npz"
    clone = load_dataset(shipped_entry("isic"), 28)
    wheel = load_dataset(without_data(shipped_entry("isic"), tmp_path), 28)
    assert dataclasses.replace(DataIdentity.of(wheel), entry=None) == dataclasses.replace(
        DataIdentity.of(clone), entry=None
    )  # the entries differ only in where the data is, which no identity holds
    assert wheel.audit == clone.audit
    pd.testing.assert_frame_equal(wheel.split_assignment(), clone.split_assignment())
    for part in ("train", "val", "test"):
        assert torch.equal(every_image(getattr(wheel, part)), every_image(getattr(clone, part))), part


def test_embedding_again_keeps_an_up_to_date_file(installed: Path) -> None:
    path, _ = embed_dataset("isic", 28, installed)
    before = path.read_bytes()
    assert embed_dataset("isic", 28, installed) == (path, False)
    path.unlink()
    assert embed_dataset("isic", 28, installed) == (path, True)
    assert path.read_bytes() == before  # fixed zip dates: the same data, the same bytes
    assert read_meta(path)["spec"] == {"resolution": 28, "grayscale": False, "resize": "bilinear", "crop": "none"}


def test_another_resolution_is_refused_with_what_is_embedded(installed: Path, tmp_path: Path) -> None:
    embed_dataset("isic", 28, installed)
    refused = r"dataset 'isic': this installation holds its images decoded at 28 px only, not 32 px"
    with pytest.raises(DataError, match=refused):
        load_dataset(without_data(shipped_entry("isic"), tmp_path), 32)


def test_an_entry_read_differently_gets_no_embedded_data(installed: Path, tmp_path: Path) -> None:
    embed_dataset("isic", 28, installed)
    entry = without_data(shipped_entry("isic"), tmp_path)
    assert embedded_items(entry) is not None
    swapped = dataclasses.replace(entry, classes=("malignant", "benign"), positive="benign")
    assert embedded_items(swapped) is None  # its labels would be the other way round
    with pytest.raises(DataError, match="does not exist"):
        read_items(swapped, None)


def test_a_data_root_is_never_served_from_the_embedded_copy(installed: Path, tmp_path: Path) -> None:
    embed_dataset("isic", 28, installed)
    with pytest.raises(DataError, match="check --data-root"):
        read_items(shipped_entry("isic"), tmp_path / "elsewhere")


def test_the_table_round_trips_with_its_groups_and_dtypes() -> None:
    for name in ("ham10000", "isic", "chest_xray"):
        table = read_items(shipped_entry(name), None).table
        read_back = table_from_json(table_to_json(table))
        pd.testing.assert_frame_equal(read_back, table)
        hashed = [pd.util.hash_pandas_object(t, index=False) for t in (read_back, table)]
        assert np.array_equal(*hashed), name  # the split cache's key: a wheel finds a clone's cached split
