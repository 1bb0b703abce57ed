"""Loading a dataset: every split as uint8 tensors at the asked resolution, with what a run must record.

* ``fingerprint`` hashes what a run saw (classes, image spec, and id/split/label of every image), so
  two results can be checked for having used the same split. It leaves pixels out, so a bundled copy
  and a full download agree; ``audit["pixels_sha256"]`` tells them apart.
* Decoding is the slow part, so decoded images are cached on disk keyed by the image files' sizes and
  mtimes and the image spec; a second load opens one file. The images stay in that file and each batch
  reads its rows (:mod:`bench.data.images`), so memory does not grow with the dataset.

The entry says where the files are and how they are laid out (:mod:`bench.data.entries`); the readers of
each layout are :mod:`bench.data._layouts`. An installed wheel, which has no ``data/``, reads the default
sweep's datasets from the copies it embeds (:mod:`bench.data._embedded`): the same table and pixels.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.data._cache import CACHE_FORMAT, write_cache_file
from bench.data._embedded import embedded_items
from bench.data._layouts import SPLITS, ImageSource, ImageSpec, Items, read_class_folders, read_metadata_csv
from bench.data._npz import read_npz
from bench.data.entries import DatasetEntry
from bench.data.folder import dataset_entry
from bench.data.images import ImageFile, ImageRows, write_images
from bench.data.splits import assign_splits, audit_splits
from bench.errors import ConfigError, DataError
from bench.paths import cache_dir, data_hint, is_shipped


@dataclass
class Split:
    """One split: ``images`` uint8 (N, C, R, R) with C = 1 for grayscale entries, ``labels`` int64 (N,).

    Loaded images are an :class:`~bench.data.images.ImageRows` view of the decode cache, read a batch at a time
    (indexed like the tensor it stands for); a tensor (a split moved to a GPU whole, a test's) works the same.
    ``groups``: each image's group (lesion, patient) where the layout has them, else None; a training fraction keeps
    a group's images together (:mod:`bench.data.fractions`).
    """

    images: torch.Tensor | ImageRows
    labels: torch.Tensor
    ids: list[str]
    groups: list[str | None] | None = None

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


def read_items(entry: DatasetEntry, data_root: Path | None) -> Items:
    root = Path(data_root).expanduser().absolute() if data_root is not None else entry.path
    if not root.exists():
        embedded = embedded_items(entry) if data_root is None and is_shipped(entry.source_file) else None
        if embedded is not None:
            return embedded  # a wheel: the default sweep's data, decoded at its resolution (bench.data._embedded)
        if data_root is not None:
            hint = "check --data-root"
        elif is_shipped(entry.source_file):
            hint = data_hint()  # a shipped entry: its data is bundled with the repository
        else:
            hint = f"download the data and pass --data-root, or fix 'path' in {entry.source_file}"
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


def describe_dataset(entry: DatasetEntry, data_root: Path | None = None) -> dict:
    """Classes, split sizes, class counts and leakage of an entry, without decoding any image."""
    items = read_items(entry, data_root)
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


def load_dataset(name_or_entry: str | DatasetEntry, resolution: int, data_root: Path | None = None) -> LoadedDataset:
    """Decode (or read from cache) every split at ``resolution`` x ``resolution``.

    ``data_root`` replaces the entry's path, e.g. to point the same entry at a full-size download.
    """
    entry = name_or_entry if isinstance(name_or_entry, DatasetEntry) else dataset_entry(name_or_entry, data_root)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise ConfigError(f"resolution must be an integer of at least 8 pixels, not {resolution!r}")
    items = read_items(entry, data_root)
    splits = assign_splits(entry, items.table)
    spec = ImageSpec(resolution=resolution, grayscale=entry.grayscale, resize=entry.resize, crop=entry.crop)
    file, rows, pixels_sha256 = _cached_images(items, spec)
    labels = torch.tensor(items.table["label"].to_numpy(), dtype=torch.int64)
    ids = items.table["id"].to_numpy(dtype=object)
    groups = items.table["group"].to_numpy(dtype=object)
    grouped = not pd.isna(groups).all()
    parts = {}
    for split in SPLITS:
        mask = splits == split
        index = np.flatnonzero(mask)
        images = ImageRows(file, rows[index])
        parts[split] = Split(
            images=images,
            labels=labels[torch.from_numpy(index)],
            ids=list(ids[mask]),
            groups=list(groups[mask]) if grouped else None,
        )
    return LoadedDataset(
        entry=entry,
        resolution=resolution,
        fingerprint=_fingerprint(entry, spec, items.table, splits),
        audit={
            **audit_splits(entry, items.table, splits),
            "split": entry.split.describe(),  # the policy in words: records state how their test set was made
            "pixels_sha256": pixels_sha256,
        },
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


def _cached_images(items: Items, spec: ImageSpec) -> tuple[ImageFile, np.ndarray, str]:
    """All images of ``items``, decoded once into the cache file and then read from it by row.

    The cache holds the images of the sorted set of keys, so entries that share image files (dermamnist
    and ham10000) share one cache file whatever their row order; also returned are the file row of each
    table row, and the sha256 of the pixels (in sorted-key order), which tells a bundled copy from a full
    download at the same resolution. The ``.npy`` is written first and its ``.json`` sidecar (keys, shape,
    sha256) last, so a sidecar means a complete file. A cache that cannot be written is decoded into an
    unnamed temporary file instead: memory stays flat either way.
    """
    keys = sorted(set(items.table["key"]))
    signature = json.dumps([CACHE_FORMAT, asdict(spec), items.source.signature(keys)])
    digest = hashlib.sha256(signature.encode()).hexdigest()[:24]
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", items.source.label)
    path = cache_dir() / f"{label}-{spec.resolution}px-{digest}.npy"
    position = {key: i for i, key in enumerate(keys)}
    rows = np.array([position[k] for k in items.table["key"]], dtype=np.int64)
    cached = _read_cache(path, keys, (len(keys), *spec.shape))
    file, pixels_sha256 = cached or _decode_to_cache(path, items.source, keys, spec)
    return file, rows, pixels_sha256


def _decode_to_cache(path: Path, source: ImageSource, keys: list[str], spec: ImageSpec) -> tuple[ImageFile, str]:
    """Decode ``keys`` chunk by chunk into the cache file ``path``, or into a temporary file if it cannot be written."""
    shape = (len(keys), *spec.shape)
    sha: list[str] = []
    write_cache_file(path, lambda fh: sha.append(write_images(fh, shape, source.decode(keys, spec))))
    if sha:
        meta = json.dumps({"keys": keys, "shape": shape, "sha256": sha[0]}).encode()
        write_cache_file(path.with_suffix(".json"), lambda fh: fh.write(meta))
        written = _read_cache(path, keys, shape)
        if written is not None:
            return written
    fh = tempfile.TemporaryFile()
    pixels_sha256 = write_images(fh, shape, source.decode(keys, spec))
    return ImageFile(fh, shape), pixels_sha256


def _read_cache(path: Path, keys: list[str], shape: tuple[int, ...]) -> tuple[ImageFile, str] | None:
    """The cache file, open, and its pixels' sha256; or None (with a warning if it was there but unusable)."""
    sidecar = path.with_suffix(".json")
    if not (path.is_file() and sidecar.is_file()):
        return None
    try:
        meta = json.loads(sidecar.read_text())
        fh = path.open("rb", buffering=0)
    except (OSError, ValueError) as err:
        warnings.warn(f"ignoring unreadable image cache {path}: {err}", stacklevel=3)
        return None
    try:
        file = ImageFile(fh, shape)
    except ValueError as err:
        fh.close()
        warnings.warn(f"ignoring unreadable image cache {path}: {err}", stacklevel=3)
        return None
    if not isinstance(meta, dict) or meta.get("keys") != keys or not isinstance(meta.get("sha256"), str):
        fh.close()
        warnings.warn(f"ignoring image cache {path}: it does not match the data", stacklevel=3)
        return None
    return file, meta["sha256"]
