"""Readers for the three on-disk layouts a dataset entry can name, and the image decoder they share.

A reader turns a folder or file into :class:`Items`: one row per image (id, label index, optional group
such as a lesion, optional published split) plus an :class:`ImageSource` that can decode those images.
Splitting, caching and auditing happen on top of this table (:mod:`bench.data.splits`, :mod:`bench.data.loading`),
so every layout gets the same split policies and the same checks. Reading a table never decodes an image, which keeps
``bench list datasets`` fast even for the full-size downloads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from bench.environment.cores import usable_cores
from bench.errors import DataError

SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
Resize = Literal["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"]  # PIL filters, by lower-case name
Crop = Literal["none", "center"]
RESAMPLING = {name: Image.Resampling[name.upper()] for name in get_args(Resize)}
# PIL decodes and resizes with the GIL released, so threads give real parallelism without the pickling
# cost of processes: one per core this process may use (a cold first load is mostly decoding).
DECODE_WORKERS = usable_cores()
CHUNK_BYTES = 64 << 20  # decoded images are handed on (to the cache file) in chunks of about this size


@dataclass(frozen=True)
class ImageSpec:
    """How every image becomes a ``resolution`` x ``resolution`` uint8 array (part of the cache key)."""

    resolution: int
    grayscale: bool
    resize: Resize  # PIL antialiases when it shrinks
    crop: Crop  # "none" squashes to a square (as MedMNIST did for DermaMNIST); "center" crops the short edge

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.resolution, self.resolution)


def chunk_rows(spec: ImageSpec) -> int:
    """Images per decoded chunk: about :data:`CHUNK_BYTES`, so decoding holds one chunk whatever the dataset size."""
    return max(1, CHUNK_BYTES // (spec.channels * spec.resolution**2))


class ImageSource(Protocol):
    """Something that decodes the images behind a table's ``key`` column."""

    label: str  # short human-readable name, used for cache file names

    def signature(self, keys: Sequence[str]) -> list:
        """Cheap identity of the bytes behind ``keys`` (sizes and mtimes, not contents)."""
        ...

    def decode(self, keys: Sequence[str], spec: ImageSpec) -> Iterator[np.ndarray]:
        """uint8 arrays (n, C, R, R) for ``keys``, in that order, a chunk (:func:`chunk_rows`) at a time."""
        ...


@dataclass(frozen=True)
class Items:
    """All images of a dataset, before a split policy is applied.

    ``table`` has columns ``id`` (stable per-image id), ``key`` (what ``source`` decodes: a relative
    path, or ``train/12`` for npz), ``label`` (class index), ``group`` (lesion/patient id or None) and
    ``published`` (train/val/test as shipped, or None).
    """

    table: pd.DataFrame
    source: ImageSource


def to_array(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """One decoded image as a (C, R, R) uint8 array, following ``spec``."""
    img = _to_8bit(img).convert("L" if spec.grayscale else "RGB")
    size = (spec.resolution, spec.resolution)
    if spec.crop == "center":
        img = ImageOps.fit(img, size, method=RESAMPLING[spec.resize])
    else:
        img = img.resize(size, RESAMPLING[spec.resize])
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _to_8bit(img: Image.Image) -> Image.Image:
    """Rescale 16-bit / float images (common for X-ray PNG/TIFF) to 0..255 by their own range.

    PIL's ``convert("L")`` clips such images at 255, which turns most X-rays white; a per-image linear
    stretch keeps 12-bit data stored in 16-bit containers usable.
    """
    if img.mode not in {"I", "F"} and not img.mode.startswith("I;16"):
        return img
    arr = np.asarray(img, dtype=np.float64)
    low, high = float(arr.min()), float(arr.max())
    scaled = (arr - low) * (255.0 / (high - low)) if high > low else np.zeros_like(arr)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


# ---------------------------------------------------------------------------------------------------
# Image sources


@dataclass(frozen=True)
class FileImages:
    """Image files under ``root``; keys are POSIX paths relative to it."""

    root: Path
    label: str

    def signature(self, keys: Sequence[str]) -> list:
        stats = [(self.root / key).stat() for key in keys]
        return [str(self.root), [[k, s.st_size, s.st_mtime_ns] for k, s in zip(keys, stats, strict=True)]]

    def decode(self, keys: Sequence[str], spec: ImageSpec) -> Iterator[np.ndarray]:
        step = chunk_rows(spec)
        with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
            for start in range(0, len(keys), step):
                arrays = list(pool.map(lambda key: self._decode_one(key, spec), keys[start : start + step]))
                yield stack_images(arrays, spec)

    def _decode_one(self, key: str, spec: ImageSpec) -> np.ndarray:
        path = self.root / key
        with decoding(path), Image.open(path) as img:
            return to_array(img, spec)


@contextmanager
def decoding(path: Path) -> Iterator[None]:
    """Whatever PIL raises on an image file it cannot open or decode, as one :class:`DataError` naming the file.

    The one place both a registered entry's images and a bare folder's headers are read through. PIL's
    ``DecompressionBombError`` (more pixels than ``Image.MAX_IMAGE_PIXELS`` allows) is no ``OSError``.
    """
    try:
        yield
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot decode image {path}: {one_line(err)}") from err


def stack_images(arrays: list[np.ndarray], spec: ImageSpec) -> np.ndarray:
    if not arrays:
        return np.zeros((0, spec.channels, spec.resolution, spec.resolution), dtype=np.uint8)
    return np.ascontiguousarray(np.stack(arrays))


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# ---------------------------------------------------------------------------------------------------
# Readers


def read_class_folders(root: Path, classes: Sequence[str]) -> Items:
    """``root/<class>/*`` (no published split) or ``root/<split>/<class>/*`` (train|test, optional val)."""
    subdirs = _visible_dirs(root)
    if not subdirs:
        raise DataError(
            f"{root}: empty folder, no class or split folders found "
            f"(expected {'/'.join(classes)} or train|test/{'|'.join(classes)})"
        )
    names = {d.name for d in subdirs}
    if names <= set(SPLITS):
        frames = [_class_frame(root, d, classes, published=d.name) for d in subdirs]
    else:
        frames = [_class_frame(root, root, classes, published=None)]
    table = pd.concat(frames, ignore_index=True)
    return Items(table=table, source=FileImages(root=root, label=root.name))


def _class_frame(root: Path, parent: Path, classes: Sequence[str], published: str | None) -> pd.DataFrame:
    index = {name: i for i, name in enumerate(classes)}
    rows = []
    for folder in _visible_dirs(parent):
        if folder.name not in index:
            raise DataError(
                f"{folder}: folder '{folder.name}' is not in the class list ({', '.join(classes)}); "
                "rename it or add the class to the dataset entry"
            )
        for file in sorted(folder.iterdir()):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES and not file.name.startswith("."):
                key = file.relative_to(root).as_posix()
                rows.append((key, key, index[folder.name], None, published))
    return pd.DataFrame(rows, columns=["id", "key", "label", "group", "published"])


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass(frozen=True)
class MetadataOptions:
    """Where a metadata-CSV dataset keeps its table, images and (optionally) a published split.

    The ``[metadata_csv]`` table of a dataset entry, read by :func:`bench.config.from_mapping`; paths are
    relative to the entry's ``path``. Image ``i`` is ``<image_dir>/<i><image_suffix>``.
    """

    file: str  # one row per image
    image_dir: str
    id_column: str
    label_column: str
    image_suffix: str = ""
    group_column: str | None = None  # lesion/patient: splits keep groups whole, the audit counts leaks
    split_file: str | None = None  # a published split: columns split, <id_column> [, index]


def read_metadata_csv(root: Path, classes: Sequence[str], opts: MetadataOptions) -> Items:
    """HAM10000-style: one CSV row per image (id, label, optional group), images in one folder.

    With ``split_file`` (columns ``split`` and the id column, optionally ``index``), rows come in that
    file's order, so index i of a published split is the i-th image of that split (as in DermaMNIST's npz).
    """
    csv_path = root / opts.file
    meta = _read_csv(csv_path)
    wanted = [opts.id_column, opts.label_column] + ([opts.group_column] if opts.group_column else [])
    _require_columns(csv_path, meta, wanted)
    meta = meta.astype({opts.id_column: str})
    _check_unique(csv_path, meta[opts.id_column])
    labels = _label_indices(csv_path, meta, opts, classes)
    table = pd.DataFrame(
        {
            "id": meta[opts.id_column],
            "key": [f"{opts.image_dir}/{i}{opts.image_suffix}" for i in meta[opts.id_column]],
            "label": labels,
            "group": _groups(meta, opts),
            "published": None,
        }
    )
    _check_images_present(root, opts, table)
    if opts.split_file:
        table = _apply_split_file(root / opts.split_file, opts.id_column, table)
    return Items(table=table, source=FileImages(root=root, label=root.name))


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"metadata file {path} does not exist")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot parse CSV {path}: {one_line(err)}") from err


def _require_columns(path: Path, frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column '{missing[0]}' (columns present: {', '.join(frame.columns)})")


def _check_unique(path: Path, ids: pd.Series) -> None:
    duplicated = ids[ids.duplicated()]
    if not duplicated.empty:
        raise DataError(f"{path}: image id '{duplicated.iloc[0]}' appears more than once")


def _label_indices(path: Path, meta: pd.DataFrame, opts: MetadataOptions, classes: Sequence[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    values = meta[opts.label_column]
    unknown = values[~values.isin(list(index))]
    if not unknown.empty:
        first = unknown.index[0]
        raise DataError(
            f"{path}: label '{unknown.iloc[0]}' in column '{opts.label_column}' is not in the class list "
            f"({', '.join(classes)}); {len(unknown)} row(s), e.g. image '{meta[opts.id_column][first]}'"
        )
    return values.map(index).to_numpy(dtype=np.int64)


def _groups(meta: pd.DataFrame, opts: MetadataOptions) -> pd.Series | None:
    """The group (lesion) of each image; an image with a blank group is its own group."""
    if not opts.group_column:
        return None
    groups = meta[opts.group_column].str.strip()
    return groups.where(groups != "", "image:" + meta[opts.id_column])


def _check_images_present(root: Path, opts: MetadataOptions, table: pd.DataFrame) -> None:
    image_dir = root / opts.image_dir
    if not image_dir.is_dir():
        raise DataError(f"image folder {image_dir} does not exist")
    present = {f"{opts.image_dir}/{p.name}" for p in image_dir.iterdir()}
    absent = table.loc[~table["key"].isin(present), "key"]
    if not absent.empty:
        raise DataError(
            f"{root / opts.file}: {len(absent)} listed image(s) absent from {image_dir}, "
            f"e.g. '{absent.iloc[0].split('/')[-1]}'"
        )


def _apply_split_file(path: Path, id_column: str, table: pd.DataFrame) -> pd.DataFrame:
    split = _read_csv(path)
    _require_columns(path, split, ["split", id_column])
    _check_unique(path, split[id_column])
    bad = split.loc[~split["split"].isin(SPLITS), "split"]
    if not bad.empty:
        raise DataError(f"{path}: split '{bad.iloc[0]}' is not one of {', '.join(SPLITS)}")
    unknown = split.loc[~split[id_column].isin(table["id"]), id_column]
    if not unknown.empty:
        raise DataError(f"{path}: image id '{unknown.iloc[0]}' is not in the metadata table")
    missing = table.loc[~table["id"].isin(split[id_column]), "id"]
    if not missing.empty:
        raise DataError(f"{path}: image id '{missing.iloc[0]}' of the metadata table has no split")
    split["order"] = split["split"].map({s: i for i, s in enumerate(SPLITS)})
    if "index" in split.columns:
        index = pd.to_numeric(split["index"], errors="coerce")
        if index.isna().any():
            raise DataError(f"{path}: column 'index' holds '{split['index'][index.isna()].iloc[0]}', not a number")
        split["index"] = index
    order_by = ["order", "index"] if "index" in split.columns else ["order"]
    split = split.sort_values(order_by, kind="stable")
    ordered = table.set_index("id").loc[split[id_column].to_numpy()].reset_index()
    ordered["published"] = split["split"].to_numpy()
    return ordered
