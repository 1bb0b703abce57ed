"""The npz layout: MedMNIST-style ``{train,val,test}_{images,labels}`` arrays, checked before anything decodes.

Pixels and labels are validated here because a wrong dtype or scale does not fail later: int64 or float
pixels would be wrapped or clipped into other images, float labels truncated into other classes. Shapes and
dtypes are read from the members' headers, so describing a large file reads no pixels.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bench.data._layouts import SPLITS, ImageSpec, Items, chunk_rows, one_line, stack_images, to_array
from bench.errors import DataError
from bench.files import UNREADABLE_NUMPY


@dataclass(frozen=True)
class NpzImages:
    """The ``{split}_images`` arrays of a MedMNIST-style npz; keys are ``split/index``."""

    path: Path
    label: str

    def signature(self, keys: Sequence[str]) -> list:
        stat = self.path.stat()
        return [str(self.path), stat.st_size, stat.st_mtime_ns, list(keys)]

    def decode(self, keys: Sequence[str], spec: ImageSpec) -> Iterator[np.ndarray]:
        """A compressed npz member cannot be read in part, so the source arrays are read whole, once."""
        try:
            with np.load(self.path) as npz:
                arrays_by_split = {
                    split: npz_pixels(self.path, f"{split}_images", npz[f"{split}_images"])
                    for split in {k.split("/")[0] for k in keys}
                }
        except UNREADABLE_NUMPY as err:  # pixels damaged past the headers that describing the file read
            raise DataError(f"cannot read npz file {self.path}: {one_line(err)}") from None
        step = chunk_rows(spec)
        for start in range(0, len(keys), step):
            arrays = []
            for key in keys[start : start + step]:
                split, index = key.split("/")
                arrays.append(to_array(Image.fromarray(arrays_by_split[split][int(index)]), spec))
            yield stack_images(arrays, spec)


def npz_pixels(path: Path, key: str, images: np.ndarray) -> np.ndarray:
    """``images`` (N, H, W) or (N, H, W, 1|3) as uint8 (N, H, W[, 3]), refusing what would not convert exactly.

    uint8 is taken as it is; other integers must lie in 0..255; floats must be finite and either in [0, 1]
    (scaled by 255 and rounded, as ``ToTensor`` output is) or whole numbers in [0, 255]. Anything else
    (16-bit counts, z-scored floats) would be clipped or wrapped into a different image without a word.
    The scale is decided per array, so one split's images are all read the same way.
    """
    if images.shape[-1:] == (1,) and images.ndim == 4:
        images = images[..., 0]
    if images.dtype == np.uint8:
        return images
    where = f"{path}: {key} ({images.dtype})"
    if images.size == 0:
        return images.astype(np.uint8)
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise DataError(f"{where} holds NaN or infinite pixels")
    low, high = images.min(), images.max()
    if images.dtype.kind == "f" and 0.0 <= low and high <= 1.0:
        return np.round(images * 255.0).astype(np.uint8)
    if low < 0 or high > 255 or (images.dtype.kind == "f" and not np.array_equal(images, np.round(images))):
        raise DataError(
            f"{where} holds values {low:g}..{high:g}: pixels must be uint8, integers in 0..255, "
            "floats in [0, 1], or whole-number floats in 0..255"
        )
    return images.astype(np.uint8)


def read_npz(path: Path, classes: Sequence[str]) -> Items:
    """A MedMNIST npz: ``{train,val,test}_images`` and ``_labels``; the published split is the file's."""
    if path.is_dir():
        raise DataError(f"{path} is a folder; the npz layout needs the path of the .npz file itself")
    try:
        frames = _npz_frames(path, classes)
    except UNREADABLE_NUMPY as err:  # 0 bytes, truncated, corrupt: np.load's EOFError would read as Ctrl-D
        raise DataError(f"cannot read npz file {path}: {one_line(err)}") from None
    table = pd.concat(frames, ignore_index=True)
    return Items(table=table, source=NpzImages(path=path, label=path.stem))


def _npz_frames(path: Path, classes: Sequence[str]) -> list[pd.DataFrame]:
    npz = np.load(path)
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single array, not an npz archive with MedMNIST keys")
    with npz:
        for split in SPLITS:
            for kind in ("images", "labels"):
                if f"{split}_{kind}" not in npz.files:
                    raise DataError(
                        f"{path}: missing key '{split}_{kind}' (a MedMNIST npz holds "
                        f"train/val/test_images and train/val/test_labels; found {sorted(npz.files)})"
                    )
        return [_npz_split_frame(path, npz, split, len(classes)) for split in SPLITS]


def _npz_split_frame(path: Path, npz: np.lib.npyio.NpzFile, split: str, num_classes: int) -> pd.DataFrame:
    n_images = _npz_images_shape(path, f"{split}_images")[0]
    labels = _npz_labels(path, npz, f"{split}_labels", num_classes)
    if n_images != len(labels):
        raise DataError(f"{path}: {split}_images has {n_images} images but {split}_labels has {len(labels)}")
    keys = [f"{split}/{i}" for i in range(len(labels))]
    return pd.DataFrame({"id": keys, "key": keys, "label": labels, "group": None, "published": split})


def _npz_labels(path: Path, npz: np.lib.npyio.NpzFile, key: str, num_classes: int) -> np.ndarray:
    """One split's labels as int64 class indices: whole numbers in 0..num_classes-1, one per image."""
    dtype = _npz_member_header(path, key)[1]
    if dtype.kind not in "iuf":
        raise DataError(f"{path}: {key} has dtype {dtype}; labels must be integer class indices")
    labels = np.asarray(npz[key])
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{path}: {key} has shape {labels.shape}; only single-label data is supported")
    fractional = labels[~np.isfinite(labels) | (labels != np.round(labels))] if dtype.kind == "f" else labels[:0]
    if fractional.size:
        raise DataError(f"{path}: {key} holds label {fractional[0]:g}; labels must be whole class indices")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise DataError(
            f"{path}: {key} holds label {bad[0]:g}, not in the class list "
            f"(the entry has {num_classes} classes, labels 0..{num_classes - 1})"
        )
    return labels.astype(np.int64)


def _npz_images_shape(path: Path, key: str) -> tuple[int, ...]:
    """The shape of an images member, checked from its header: (N, H, W) or (N, H, W, 1|3) of numbers."""
    shape, dtype = _npz_member_header(path, key)
    if dtype.kind not in "iuf":
        raise DataError(f"{path}: {key} has dtype {dtype}; images must be uint8 (or integers/floats that convert)")
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)) or 0 in shape[1:]:
        raise DataError(f"{path}: {key} has shape {shape}; images must be (N, H, W) or (N, H, W, C) with C = 1 or 3")
    return shape


def _npz_member_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one npz member from its header alone, so describing a 224 px file reads no pixels."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
    return shape, dtype
