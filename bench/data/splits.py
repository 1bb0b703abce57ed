"""Which image goes to which split, following an entry's policy, and the audit of the result.

* ``official`` keeps the published split; ``carve_val`` keeps published train/test and carves validation
  from train; ``stratified`` pools everything and splits by class. Carving is grouped (no lesion in two
  splits) when the layout has groups.
* The assignment is deterministic given the entry's seed, and cached by the table's content, the split
  spec and the sklearn version (whose algorithm defines the split).
* The audit says how many groups (lesions) fall in more than one split: DermaMNIST's official split
  leaks 1,006 lesions, the lesion-grouped HAM10000 split none.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from bench.data._cache import CACHE_FORMAT, write_cache_file
from bench.data._layouts import SPLITS
from bench.data.entries import DatasetEntry
from bench.errors import DataError
from bench.files import UNREADABLE_NUMPY
from bench.paths import cache_dir


def assign_splits(entry: DatasetEntry, table: pd.DataFrame) -> np.ndarray:
    """The split name of every table row, following the entry's policy (deterministic given the seed).

    A lesion-grouped split of 10k images takes seconds in sklearn, so results are cached, keyed by the
    table's content, the split spec and the sklearn version (whose algorithm defines the split).
    """
    content = pd.util.hash_pandas_object(table[["id", "label", "group", "published"]], index=False)
    signature = json.dumps([CACHE_FORMAT, sklearn.__version__, asdict(entry.split), entry.num_classes])
    digest = hashlib.sha256(signature.encode() + content.to_numpy().tobytes()).hexdigest()[:24]
    path = cache_dir() / "splits" / f"{entry.name}-{digest}.npy"
    splits = _read_split_cache(path, len(table))
    if splits is None:
        splits = _compute_splits(entry, table)
        write_cache_file(path, lambda fh: np.save(fh, splits.astype(str)))
    return splits


def _read_split_cache(path: Path, rows: int) -> np.ndarray | None:
    try:
        cached = np.load(path, allow_pickle=False)
    except UNREADABLE_NUMPY:  # a damaged cache (0 bytes: EOFError) is computed again
        return None
    valid = cached.shape == (rows,) and set(np.unique(cached)) <= set(SPLITS)
    return cached.astype(object) if valid else None


def _compute_splits(entry: DatasetEntry, table: pd.DataFrame) -> np.ndarray:
    spec = entry.split
    if spec.policy == "official":
        _require_published(entry, table, SPLITS)
        splits = table["published"].to_numpy(dtype=object, copy=True)
    elif spec.policy == "carve_val":
        _require_published(entry, table, ("train", "test"))
        splits = table["published"].replace({"val": "train"}).to_numpy(dtype=object, copy=True)
        _hold_out(entry, table, splits, source="train", target="val", fraction=spec.val)
    else:
        splits = np.full(len(table), "train", dtype=object)
        _hold_out(entry, table, splits, source="train", target="test", fraction=spec.test)
        _hold_out(entry, table, splits, source="train", target="val", fraction=spec.val / (spec.train + spec.val))
    _require_every_class(entry, table, splits)
    return splits


def _require_published(entry: DatasetEntry, table: pd.DataFrame, needed: tuple[str, ...]) -> None:
    found = set(table["published"].dropna())
    missing = [s for s in needed if s not in found]
    if missing:
        raise DataError(
            f"dataset '{entry.name}': split policy '{entry.split.policy}' needs a published "
            f"{'/'.join(needed)} split, but the data has {', '.join(sorted(found)) or 'no split'} "
            f"(missing '{missing[0]}'); use policy 'stratified' for unsplit data"
        )


def _hold_out(
    entry: DatasetEntry, table: pd.DataFrame, splits: np.ndarray, source: str, target: str, fraction: float
) -> None:
    """Move a class-stratified (and group-disjoint, if grouped) ``fraction`` of ``source`` to ``target``."""
    pool = np.flatnonzero(splits == source)
    labels = table["label"].to_numpy()[pool]
    singletons = np.flatnonzero(np.bincount(labels, minlength=entry.num_classes) == 1)
    if singletons.size:
        raise DataError(
            f"dataset '{entry.name}': class '{entry.classes[singletons[0]]}' has only 1 image in {source}; "
            f"cannot put it in both {source} and {target}"
        )
    groups = table["group"].to_numpy()[pool]
    try:
        if pd.isna(groups).all():
            _, held = train_test_split(
                np.arange(len(pool)), test_size=fraction, stratify=labels, random_state=entry.split.seed
            )
        else:
            held = _grouped_hold_out(labels, groups, fraction, entry.split.seed)
    except ValueError as err:
        raise DataError(f"dataset '{entry.name}': cannot split {target} from {source}: {err}") from err
    splits[pool[np.sort(held)]] = target


def _grouped_hold_out(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """One fold of StratifiedGroupKFold with round(1/fraction) folds: fractions are met to a fold's size."""
    folds = StratifiedGroupKFold(n_splits=max(2, round(1 / fraction)), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Rare classes get fewer members than folds; _require_every_class reports any that end up empty.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        _, held = next(folds.split(np.zeros(len(labels)), labels, groups))
    return held


def _require_every_class(entry: DatasetEntry, table: pd.DataFrame, splits: np.ndarray) -> None:
    labels = table["label"].to_numpy()
    for split in SPLITS:
        empty = np.flatnonzero(np.bincount(labels[splits == split], minlength=entry.num_classes) == 0)
        if empty.size:
            index = empty[0]
            raise DataError(
                f"dataset '{entry.name}': class '{entry.classes[index]}' has no images in the {split} split "
                f"({int((labels == index).sum())} in the whole dataset)"
            )


def audit_splits(entry: DatasetEntry, table: pd.DataFrame, splits: np.ndarray) -> dict:
    """Split sizes, class counts and group leakage, as plain JSON-able values."""
    labels = table["label"].to_numpy()
    audit: dict[str, Any] = {
        "split_policy": entry.split.policy,
        "split_seed": entry.split.seed,
        "split_sizes": {s: int((splits == s).sum()) for s in SPLITS},
        "class_counts": {
            s: dict(
                zip(
                    entry.classes,
                    map(int, np.bincount(labels[splits == s], minlength=entry.num_classes)),
                    strict=True,
                )
            )
            for s in SPLITS
        },
    }
    if entry.split.policy == "carve_val":
        audit["published_val_merged_into_train"] = int((table["published"] == "val").sum())
    audit.update(_group_audit(entry, table, splits))
    return audit


def _group_audit(entry: DatasetEntry, table: pd.DataFrame, splits: np.ndarray) -> dict:
    group_column = entry.metadata_csv.group_column if entry.metadata_csv else None
    if group_column is None:
        return {"group_column": None, "groups_in_multiple_splits": None}
    present = pd.crosstab(table["group"], splits).reindex(columns=list(SPLITS), fill_value=0) > 0
    combos = pd.Series(["+".join(np.array(SPLITS)[row]) for row in present.to_numpy()])
    leaked = combos[combos.str.contains("+", regex=False)]
    in_train = set(present.index[present["train"]])
    return {
        "group_column": group_column,
        "groups": int(len(present)),
        "groups_in_multiple_splits": int(len(leaked)),
        "groups_by_splits": {k: int(v) for k, v in leaked.value_counts().sort_index().items()},
        "val_images_with_group_in_train": int(table["group"][splits == "val"].isin(in_train).sum()),
        "test_images_with_group_in_train": int(table["group"][splits == "test"].isin(in_train).sum()),
    }
