"""The dataset layer: declarative entries, reproducible splits, decoded-image cache, leakage audit.

A dataset is one TOML file ``datasets/<name>.toml``; adding data needs no code. Loading it gives
every split as uint8 tensors at the asked resolution, plus the facts a comparison must record:

* The split seed lives in the entry, not in the run, so every backbone and every training seed of a
  comparison sees the same test images (paired tests need that).
* ``fingerprint`` hashes what a run saw (classes, image spec, and id/split/label of every image), so
  two results can be checked for having used the same split. It leaves pixels out, so a bundled copy
  and a full download agree; ``audit["pixels_sha256"]`` tells them apart.
* ``audit`` also says how many groups (lesions) fall in more than one split: DermaMNIST's official
  split leaks 1,006 lesions, the lesion-grouped HAM10000 split none.

Decoding is the slow part, so decoded tensors are cached on disk keyed by the image files' sizes and
mtimes and the image spec; a second load reads one file.

Entry schema, read into :class:`DatasetEntry` by :func:`bench.config.from_mapping` like every registry file
(unknown keys are errors, so typos do not pass silently)::

    name = "mydata"                  # required, equals the file name
    title = "..."                    # required, one line for `bench list datasets`
    layout = "class_folders"         # required: npz | class_folders | metadata_csv
    path = "data/mydata"             # required: relative to the project root, or absolute (npz: the file)
    classes = ["benign", "malignant"]  # required, ordered: index = label; binary => classes[1] positive
    task = "binary"                  # required: binary (2 classes) | multiclass (3 or more)
    color = "rgb"                    # rgb | grayscale (1 channel; X-rays)            default rgb
    resize = "bilinear"              # PIL filter: nearest|box|bilinear|hamming|bicubic|lanczos (antialiased)
    crop = "none"                    # none (squash to square) | center (crop short edge first)
    licence = "..."                  # required
    citation = "..."                 # required
    shares_source_with = "..."       # which other entries come from the same images/patients

    [split]
    policy = "stratified"            # official | carve_val | stratified
    train = 0.7                      # stratified only: train/val/test fractions (sum 1)
    val = 0.1                        # carve_val: fraction of the published train moved to val
    test = 0.2
    seed = 0                         # carve_val / stratified

    [metadata_csv]                   # layout metadata_csv only
    file = "meta.csv"                # one row per image
    image_dir = "images"             # image = <image_dir>/<id><image_suffix>
    image_suffix = ".jpg"
    id_column = "image_id"
    label_column = "dx"
    group_column = "lesion_id"       # optional: splits keep groups whole; audit counts groups across splits
    split_file = "split.csv"         # optional, official/carve_val: columns split, <id_column> [, index]

Layouts: ``npz`` holds MedMNIST keys ``{train,val,test}_{images,labels}``; ``class_folders`` is
``<path>/<class>/*`` (no published split) or ``<path>/{train,test[,val]}/<class>/*``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from bench.config import FieldError, check_identifier, from_mapping, load_toml, only_for
from bench.data._layouts import (
    SPLITS,
    Crop,
    ImageSpec,
    Items,
    MetadataOptions,
    Resize,
    read_class_folders,
    read_metadata_csv,
    read_npz,
)
from bench.errors import ConfigError, DataError
from bench.paths import cache_dir, project_root

Layout = Literal["npz", "class_folders", "metadata_csv"]
Task = Literal["binary", "multiclass"]
Color = Literal["rgb", "grayscale"]
Policy = Literal["official", "carve_val", "stratified"]
_CACHE_FORMAT = 1  # bump when the cached payload or the decoding changes meaning


@dataclass(frozen=True)
class SplitSpec:
    """How train/val/test are formed.

    * ``official``: the split the data ships with (npz keys, ``train|val|test`` folders, a split file).
    * ``carve_val``: published train/test kept; validation carved from train (a published val is
      merged into train first, as PneumoniaMNIST did with Kermany's 16-image val folder).
    * ``stratified``: everything pooled and split train/val/test by class.

    Carving and stratified splits are grouped (no group in two splits) when the layout has groups. A
    setting is None under a policy that does not use it; where it is used, reading the ``[split]`` table
    (:func:`bench.config.from_mapping`) fills in the default the file leaves out.
    """

    policy: Policy
    seed: int | None = only_for("policy", "carve_val", "stratified", default=0)
    train: float | None = only_for("policy", "stratified", default=0.7)
    val: float | None = only_for("policy", "carve_val", "stratified", default=0.1)
    test: float | None = only_for("policy", "stratified", default=0.2)

    def __post_init__(self) -> None:
        if self.seed is not None and self.seed < 0:
            raise FieldError("seed", f"is {self.seed}; a seed must be 0 or more")
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise FieldError(name, f"is {value}; a fraction must be between 0 and 1")
        if self.policy == "stratified" and abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise FieldError("train", "+ val + test must sum to 1")


@dataclass(frozen=True, kw_only=True)
class DatasetEntry:
    """One ``datasets/*.toml`` file, validated (schema: this module's docstring). ``path`` is absolute."""

    name: str
    title: str
    layout: Layout
    path: Path
    classes: tuple[str, ...]
    task: Task
    color: Color = "rgb"
    resize: Resize = "bilinear"
    crop: Crop = "none"
    split: SplitSpec
    licence: str
    citation: str
    shares_source_with: str = ""
    metadata_csv: MetadataOptions | None = only_for("layout", "metadata_csv")
    source_file: Path

    def __post_init__(self) -> None:
        if self.name != self.source_file.stem:
            raise FieldError("name", f"is '{self.name}' but must equal the file name '{self.source_file.stem}'")
        _check_classes(self.classes, self.task)
        _check_split_file(self.metadata_csv, self.split.policy)

    @property
    def grayscale(self) -> bool:
        return self.color == "grayscale"

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _check_classes(classes: tuple[str, ...], task: str) -> None:
    if not classes or not all(classes):
        raise FieldError("classes", "must be a non-empty list of class names")
    if len(set(classes)) != len(classes):
        raise FieldError("classes", "has duplicate names")
    if task == "binary" and len(classes) != 2:
        raise FieldError("classes", f"must have 2 names for task 'binary' (classes[1] is positive), not {len(classes)}")
    if task == "multiclass" and len(classes) < 3:
        raise FieldError("classes", "must have at least 3 names for task 'multiclass'; use task = 'binary' for 2")


def _check_split_file(metadata: MetadataOptions | None, policy: str) -> None:
    """A published split file is what the official and carve_val policies start from; stratified ignores one."""
    if metadata is None:
        return
    has_split_file = metadata.split_file is not None
    if has_split_file == (policy == "stratified"):
        need = "does not use" if has_split_file else "needs"
        raise FieldError(
            "metadata_csv.split_file", f"is {'set' if has_split_file else 'missing'}: policy '{policy}' {need} it"
        )


@dataclass
class Split:
    """One split: ``images`` uint8 (N, C, R, R) with C = 1 for grayscale entries, ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class LoadedDataset:
    """A dataset decoded at one resolution, with what a run must record to be auditable."""

    entry: DatasetEntry
    resolution: int
    train: Split
    val: Split
    test: Split
    fingerprint: str
    audit: dict

    @property
    def classes(self) -> tuple[str, ...]:
        return self.entry.classes

    @property
    def num_classes(self) -> int:
        return self.entry.num_classes

    @property
    def in_chans(self) -> int:
        return 1 if self.entry.grayscale else 3

    def split_assignment(self) -> pd.DataFrame:
        """Columns ``id, split, label``: saved with every run so its test set can be re-checked."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        return pd.concat(
            [
                pd.DataFrame({"id": part.ids, "split": name, "label": part.labels.numpy()})
                for name, part in parts.items()
            ],
            ignore_index=True,
        )


# ---------------------------------------------------------------------------------------------------
# Registry


def datasets_dir() -> Path:
    return project_root() / "datasets"


def list_datasets() -> list[DatasetEntry]:
    """Every entry in ``datasets/``, sorted by name; a malformed file raises ConfigError naming it."""
    folder = datasets_dir()
    if not folder.is_dir():
        raise ConfigError(f"no datasets folder at {folder} (set BENCH_HOME to your project folder)")
    return [parse_entry(file) for file in sorted(folder.glob("*.toml"))]


def get_dataset_entry(name: str) -> DatasetEntry:
    """The entry ``datasets/<name>.toml``; an unknown name suggests the closest known ones."""
    check_identifier(name, "dataset name")  # a path such as ../x would read a file outside datasets/
    file = datasets_dir() / f"{name}.toml"
    if file.is_file():
        return parse_entry(file)
    known = sorted(p.stem for p in datasets_dir().glob("*.toml"))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ConfigError(f"unknown dataset '{name}'; {hint}(known: {', '.join(known) or 'none'})")


def parse_entry(file: Path) -> DatasetEntry:
    """Read and validate one dataset TOML; every mistake is a ConfigError naming file and field."""
    entry = from_mapping(DatasetEntry, load_toml(file), str(file), source_file=file)
    path = entry.path.expanduser()
    return replace(entry, path=path if path.is_absolute() else project_root() / path)


# ---------------------------------------------------------------------------------------------------
# Reading and splitting (no decoding)


def _read_items(entry: DatasetEntry, data_root: Path | None) -> Items:
    root = Path(data_root).expanduser().absolute() if data_root is not None else entry.path
    if not root.exists():
        hint = (
            "check --data-root"
            if data_root is not None
            else f"download the data and pass --data-root, or fix 'path' in {entry.source_file}"
        )
        raise DataError(f"dataset '{entry.name}': path {root} does not exist; {hint}")
    if entry.layout != "npz" and not root.is_dir():
        raise DataError(f"dataset '{entry.name}': {root} is a file; layout '{entry.layout}' needs a folder")
    readers: dict[str, Callable[[], Items]] = {
        "npz": lambda: read_npz(root, entry.classes),
        "class_folders": lambda: read_class_folders(root, entry.classes),
        "metadata_csv": lambda: read_metadata_csv(root, entry.classes, entry.metadata_csv),
    }
    items = readers[entry.layout]()
    if items.table.empty:
        raise DataError(f"dataset '{entry.name}': no images found under {root}")
    return items


def assign_splits(entry: DatasetEntry, table: pd.DataFrame) -> np.ndarray:
    """The split name of every table row, following the entry's policy (deterministic given the seed).

    A lesion-grouped split of 10k images takes seconds in sklearn, so results are cached, keyed by the
    table's content, the split spec and the sklearn version (whose algorithm defines the split).
    """
    content = pd.util.hash_pandas_object(table[["id", "label", "group", "published"]], index=False)
    signature = json.dumps([_CACHE_FORMAT, sklearn.__version__, asdict(entry.split), entry.num_classes])
    digest = hashlib.sha256(signature.encode() + content.to_numpy().tobytes()).hexdigest()[:24]
    path = cache_dir() / "splits" / f"{entry.name}-{digest}.npy"
    splits = _read_split_cache(path, len(table))
    if splits is None:
        splits = _compute_splits(entry, table)
        _atomic_write(path, lambda fh: np.save(fh, splits.astype(str)))
    return splits


def _read_split_cache(path: Path, rows: int) -> np.ndarray | None:
    try:
        cached = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
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


def describe_dataset(entry: DatasetEntry, data_root: Path | None = None) -> dict:
    """Classes, split sizes, class counts and leakage of an entry, without decoding any image."""
    items = _read_items(entry, data_root)
    splits = assign_splits(entry, items.table)
    return {
        "name": entry.name,
        "title": entry.title,
        "task": entry.task,
        "layout": entry.layout,
        "path": str(data_root if data_root is not None else entry.path),
        "classes": list(entry.classes),
        "shares_source_with": entry.shares_source_with,
        "licence": entry.licence,
        **audit_splits(entry, items.table, splits),
    }


# ---------------------------------------------------------------------------------------------------
# Loading


def load_dataset(name_or_entry: str | DatasetEntry, resolution: int, data_root: Path | None = None) -> LoadedDataset:
    """Decode (or read from cache) every split at ``resolution`` x ``resolution``.

    ``data_root`` replaces the entry's path, e.g. to point the same entry at a full-size download.
    """
    entry = name_or_entry if isinstance(name_or_entry, DatasetEntry) else get_dataset_entry(name_or_entry)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise ConfigError(f"resolution must be an integer of at least 8 pixels, not {resolution!r}")
    items = _read_items(entry, data_root)
    splits = assign_splits(entry, items.table)
    spec = ImageSpec(resolution=resolution, grayscale=entry.grayscale, resize=entry.resize, crop=entry.crop)
    images, pixels_sha256 = _cached_images(items, spec)
    labels = torch.tensor(items.table["label"].to_numpy(), dtype=torch.int64)
    ids = items.table["id"].to_numpy(dtype=object)
    parts = {}
    for split in SPLITS:
        mask = splits == split
        index = torch.from_numpy(np.flatnonzero(mask))
        parts[split] = Split(images=images[index], labels=labels[index], ids=list(ids[mask]))
    return LoadedDataset(
        entry=entry,
        resolution=resolution,
        fingerprint=_fingerprint(entry, spec, items.table, splits),
        audit={**audit_splits(entry, items.table, splits), "pixels_sha256": pixels_sha256},
        **parts,
    )


def _fingerprint(entry: DatasetEntry, spec: ImageSpec, table: pd.DataFrame, splits: np.ndarray) -> str:
    """sha256 of what a run saw: classes, image spec, and (id, split, label) of every image, in order.

    File mtimes and absolute paths are left out on purpose: two clones of the same data agree.
    """
    payload = {
        "classes": list(entry.classes),
        "image": asdict(spec),
        "rows": [[i, s, int(label)] for i, s, label in zip(table["id"], splits, table["label"], strict=True)],
    }
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def _cached_images(items: Items, spec: ImageSpec) -> tuple[torch.Tensor, str]:
    """All images of ``items`` in table order, decoded once and then read from the cache.

    The cache holds the images of the sorted set of keys, so entries that share image files (dermamnist
    and ham10000) share one cache file whatever their row order. Also returns the sha256 of those
    pixels, which tells a bundled copy from a full download at the same resolution.
    """
    keys = sorted(set(items.table["key"]))
    signature = json.dumps([_CACHE_FORMAT, asdict(spec), items.source.signature(keys)])
    digest = hashlib.sha256(signature.encode()).hexdigest()[:24]
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", items.source.label)
    path = cache_dir() / f"{label}-{spec.resolution}px-{digest}.pt"
    payload = _read_cache(path, keys, spec)
    if payload is None:
        images = torch.from_numpy(items.source.decode(keys, spec))
        payload = {"keys": keys, "images": images, "sha256": hashlib.sha256(images.numpy()).hexdigest()}
        _atomic_write(path, lambda fh: torch.save(payload, fh))
    position = {key: i for i, key in enumerate(keys)}
    order = torch.tensor([position[k] for k in items.table["key"]], dtype=torch.long)
    return payload["images"].index_select(0, order), payload["sha256"]


def _read_cache(path: Path, keys: list[str], spec: ImageSpec) -> dict | None:
    """The cached payload, or None (with a warning if a file was there but unusable)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        warnings.warn(f"ignoring unreadable image cache {path}: {err}", stacklevel=3)
        return None
    expected = (len(keys), spec.channels, spec.resolution, spec.resolution)
    images = payload.get("images") if isinstance(payload, dict) else None
    matches = (
        isinstance(images, torch.Tensor)
        and images.dtype == torch.uint8
        and tuple(images.shape) == expected
        and payload.get("keys") == keys
        and isinstance(payload.get("sha256"), str)
    )
    if not matches:
        warnings.warn(f"ignoring image cache {path}: it does not match the data", stacklevel=3)
        return None
    return payload


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write via a temp file + os.replace, so a crash never leaves a half-written cache file.

    A cache that cannot be written (read-only home, full disk) only costs time, so it warns.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as err:
        warnings.warn(f"cannot write cache file {path} (continuing without it): {err}", stacklevel=4)
