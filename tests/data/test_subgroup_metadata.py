"""A dataset entry's [subgroups] table: read from TOML, checked, and mapped exactly onto saved test ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.config import from_mapping
from bench.data.entries import get_dataset_entry
from bench.data.subgroups import UNKNOWN, SubgroupOptions, band, band_labels, group_table
from bench.errors import ConfigError, DataError
from bench.runs.identity import canonical

OPTIONS = {
    "metadata": "meta.csv",
    "id_column": "image_id",
    "columns": {"sex": "sex", "age": "age", "site": "localization"},
    "bands": {"age": [30, 45, 60, 75]},
}


def _options(**changes) -> SubgroupOptions:
    return from_mapping(SubgroupOptions, OPTIONS | changes, "entry.toml")


@pytest.fixture
def metadata(tmp_path):
    pd.DataFrame(
        {
            "image_id": ["i0", "i1", "i2", "i3", "i4", "i5"],
            "sex": ["male", "female", "unknown", "male", "", "female"],
            "age": ["29.0", "30.0", "44.0", "75.0", "", "60"],
            "localization": ["back", "face", "back", "unknown", "trunk", "back"],
        }
    ).to_csv(tmp_path / "meta.csv", index=False)
    return tmp_path


def test_bands_are_labelled_as_the_readme_says():
    assert band_labels([30, 45, 60, 75]) == ["<30", "30-44", "45-59", "60-74", "75+"]
    assert band_labels([0.5, 1.5]) == ["<0.5", "0.5 to <1.5", "1.5+"]
    ages = pd.Series(["0", "29.9", "30", "44", "45", "74.5", "75", "85", "", "n/a"])
    assert band(ages, [30, 45, 60, 75]).tolist() == [
        "<30", "<30", "30-44", "30-44", "45-59", "60-74", "75+", "75+", UNKNOWN, UNKNOWN
    ]  # fmt: skip


def test_saved_ids_map_to_their_rows_in_order(metadata):
    table = group_table(metadata, _options(), np.array(["i5", "i0", "i3", "i4", "i2"]))
    assert table.index.tolist() == ["i5", "i0", "i3", "i4", "i2"]
    assert table["sex"].tolist() == ["female", "male", "male", UNKNOWN, UNKNOWN]
    assert table["age"].astype(str).tolist() == ["60-74", "<30", "75+", UNKNOWN, "30-44"]
    assert list(table["age"].cat.categories) == ["<30", "30-44", "45-59", "60-74", "75+", UNKNOWN]
    assert table["site"].tolist() == ["back", "back", UNKNOWN, "trunk", "back"]


def test_an_id_without_a_row_is_one_error_naming_it(metadata):
    with pytest.raises(DataError, match="no row for 1 of the 2 test images \\(e.g. 'zz'\\)"):
        group_table(metadata, _options(), ["i0", "zz"])


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"metadata": "missing.csv"}, "missing.csv does not exist"),
        ({"columns": {"sex": "gender"}, "bands": {}}, "no column 'gender'"),
        ({"id_column": "lesion"}, "no column 'lesion'"),
    ],
)
def test_a_wrong_file_or_column_is_one_error_naming_it(metadata, changes, problem):
    with pytest.raises(DataError, match=problem):
        group_table(metadata, _options(**changes), ["i0"])


def test_a_duplicated_id_is_refused(metadata):
    frame = pd.read_csv(metadata / "meta.csv", dtype=str, keep_default_na=False)
    pd.concat([frame, frame.iloc[[0]]]).to_csv(metadata / "meta.csv", index=False)
    with pytest.raises(DataError, match="image id 'i0' has more than one row"):
        group_table(metadata, _options(), ["i0"])


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"columns": {}}, "'columns' is empty"),
        ({"bands": {"height": [1, 2]}}, "'bands' names 'height'"),
        ({"bands": {"age": [45, 30]}}, "'bands.age' is \\[45, 30\\]"),
        ({"extra": 1}, "unknown field 'extra'"),
    ],
)
def test_a_malformed_table_names_its_field(changes, problem):
    with pytest.raises(ConfigError, match=problem):
        _options(**changes)


@pytest.mark.parametrize("name", ["ham10000", "ham10000-minus-isic", "dermamnist"])
def test_the_ham10000_entries_group_by_sex_age_and_site_without_changing_their_identity(name):
    entry = get_dataset_entry(name)
    assert entry.subgroups is not None and list(entry.subgroups.columns) == ["sex", "age", "site"]
    assert "subgroups" not in canonical(entry)  # descriptive: every record's key stays what it was
    hash(entry)  # entries are memo keys (bench.data.identity)
