"""Which subgroup each test image belongs to: a dataset entry's ``[subgroups]`` table and its metadata file.

A dataset whose images come with per-image metadata (HAM10000: sex, age, anatomical site) names the file and
the columns to group by; :func:`group_table` maps a run's saved test ids (``ids`` in its ``.probs.npz``, the
metadata's image ids for a ``metadata_csv`` layout) to one group label per attribute. The mapping is exact:
every id must have exactly one row, else a :class:`DataError` names the first id without one. Schema::

    [subgroups]
    metadata = "HAM10000_metadata.csv"   # relative to the entry's path (an npz's folder); one row per image
    id_column = "image_id"                # the ids the runs save
    columns = {sex = "sex", age = "age", site = "localization"}   # attribute = metadata column
    bands = {age = [30, 45, 60, 75]}      # optional: numeric attributes cut at these edges

With ``bands``, a value ``v`` falls in the band ``[a, b)``; integer edges read ``<30``, ``30-44``, ``45-59``,
``60-74``, ``75+`` (``30-44``: 30 <= age < 45). A value missing from the metadata (an empty cell, a
non-number in a banded column, or the metadata's own ``unknown``) is the group :data:`UNKNOWN`: shown, but
not a population whose score a comparison should rest on (:mod:`bench.evaluation.subgroups`).

Grouping changes no training number, so the table is descriptive: it is not part of a run's identity
(:data:`bench.runs.identity.DESCRIPTIVE_FIELDS`), and adding it to an entry leaves every record's key as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import FieldError, is_identifier
from bench.errors import DataError

UNKNOWN = "unknown"


@dataclass(frozen=True)
class SubgroupOptions:
    """A dataset entry's ``[subgroups]`` table (module docstring); the dict fields are left out of the hash."""

    metadata: str
    id_column: str
    columns: dict[str, str] = field(hash=False)
    bands: dict[str, list[float]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.columns:
            raise FieldError("columns", "is empty: name at least one attribute = metadata column")
        for name, column in self.columns.items():
            if not is_identifier(name):
                raise FieldError("columns", f"has attribute {name!r}: use letters, digits, '_', '.', '-'")
            if not isinstance(column, str) or not column:
                raise FieldError(f"columns.{name}", f"is {column!r}; expected a metadata column name")
        for name, edges in self.bands.items():
            if name not in self.columns:
                raise FieldError(
                    "bands", f"names {name!r}, which is not one of the columns ({', '.join(self.columns)})"
                )
            ok = isinstance(edges, list) and edges and all(isinstance(e, int | float) for e in edges)
            if not ok or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise FieldError(f"bands.{name}", f"is {edges!r}; expected increasing numbers, e.g. [30, 45, 60]")


def band_labels(edges: Sequence[float]) -> list[str]:
    """The labels of the ``len(edges) + 1`` bands: ``<a``, ``a-b`` (a <= v < b + 1 for integer edges), ``z+``."""
    whole = all(float(e).is_integer() for e in edges)
    inner = [f"{a:g}-{b - 1:g}" if whole else f"{a:g} to <{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [f"<{edges[0]:g}", *inner, f"{edges[-1]:g}+"]


def band(values: pd.Series, edges: Sequence[float]) -> pd.Series:
    """Each value's band label (:func:`band_labels`); a missing or non-numeric value is :data:`UNKNOWN`."""
    numbers = pd.to_numeric(values, errors="coerce")
    labels = np.array(band_labels(edges), dtype=object)
    where = np.searchsorted(np.asarray(edges, dtype=float), numbers.to_numpy(dtype=float), side="right")
    out = labels[np.minimum(where, len(labels) - 1)]
    return pd.Series(np.where(numbers.isna().to_numpy(), UNKNOWN, out), index=values.index, dtype=object)


def read_metadata(path: Path, options: SubgroupOptions) -> pd.DataFrame:
    """The metadata file as strings, indexed by its id column; a missing file, column or a duplicated id is a
    :class:`DataError` naming it."""
    if not path.is_file():
        raise DataError(f"subgroup metadata {path} does not exist")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot parse subgroup metadata {path}: {' '.join(str(err).split())}") from None
    wanted = [options.id_column, *options.columns.values()]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise DataError(f"{path}: no column '{missing[0]}' (columns present: {', '.join(table.columns)})")
    ids = table[options.id_column]
    if ids.duplicated().any():
        raise DataError(f"{path}: image id '{ids[ids.duplicated()].iloc[0]}' has more than one row")
    return table.set_index(options.id_column)


def group_table(root: Path, options: SubgroupOptions, ids: Sequence[str] | np.ndarray) -> pd.DataFrame:
    """One row per id of ``ids`` (in order), one column per attribute, holding each image's group label (a banded
    attribute as a ``pandas.Categorical`` in band order, so tables list its groups youngest first).

    ``root`` is the entry's ``path`` (``options.metadata`` is relative to it, or to its folder where it is a
    file, as an npz entry's is). Every id must have a row.
    """
    path = (root if root.is_dir() or not root.suffix else root.parent) / options.metadata
    table = read_metadata(path, options)
    wanted = pd.Index([str(i) for i in ids])
    absent = wanted[~wanted.isin(table.index)]
    if len(absent):
        raise DataError(
            f"{path}: no row for {len(absent)} of the {len(wanted)} test images (e.g. '{absent[0]}'), so their "
            "subgroups are unknown"
        )
    rows = table.loc[wanted]
    out = {}
    for name, column in options.columns.items():
        values = rows[column].str.strip()
        if name in options.bands:
            order = [*band_labels(options.bands[name]), UNKNOWN]
            out[name] = pd.Categorical(band(values, options.bands[name]), categories=order)
        else:
            out[name] = np.where(values.isin(["", UNKNOWN]), UNKNOWN, values.to_numpy())
    return pd.DataFrame(out, index=wanted)
