"""Leakage across a transfer: images of a target's val/test split that the source run trained on.

Fine-tuning from another run's weights (HAM10000 -> ISIC, chest X-ray -> PneumoniaMNIST) is only a fair test
if the source never saw the target's evaluation images: HAM10000 and the ISIC set both come from the ISIC
archive, and PneumoniaMNIST is the Kermany chest X-rays at 28 px. File names and bytes do not survive a
re-release (another resolution, another JPEG encoder, another name), so images are compared by content:

* **exact**: each image decoded at one canonical size (:data:`CANONICAL_SIZE`, grayscale, quantised to
  :data:`LEVELS` grey levels) and hashed: a copy at another resolution decodes to nearly the same array;
* **near**: a difference hash (dHash, :data:`DHASH_SIDE` x :data:`DHASH_SIDE` bits: is each cell brighter than
  its right neighbour?) within :data:`NEAR_BITS` bits, which survives re-encoding and slight resampling;
* **lesion**: the group id (``lesion_id``) where both datasets' entries have a group column.

The source side is its train *and* val split: both shaped its weights (the val split chose its epoch).
Images are read through :func:`bench.data.loading.load_dataset` at the canonical size, so they come from the
same decode cache the runs use; the hashes of a dataset are cached beside it, keyed by its data fingerprint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from bench.data._cache import write_cache_file
from bench.data.loading import LoadedDataset, load_dataset, read_items
from bench.errors import ConfigError
from bench.files import UNREADABLE_NUMPY
from bench.paths import cache_dir

CANONICAL_SIZE = 32
"""The side every image is decoded at before hashing: small enough to forgive resampling, large enough to tell
images apart (and the size the CPU sweeps already decode at, so the decode cache is shared)."""
LEVELS = 16
"""Grey levels of the exact hash: coarse enough that a re-resized copy lands on the same array."""
DHASH_SIDE = 16
"""The dHash grid: 16 x 16 = 256 bits, each "brighter than the cell to its right" on a 16 x 17 reduction."""
NEAR_BITS = 12
"""At most this many of the 256 dHash bits may differ for two images to count as near-duplicates. Measured on the
bundled data: HAM10000 copies of ISIC images sit at 0-12 bits (checked by eye), while the closest pair of
different lesions between ISIC's own train and test split is 15 bits apart."""
SHOWN = 5
"""How many overlapping files a refusal names."""
_HASH_FORMAT = 1  # bump when a hash's definition changes: cached hashes of another format are recomputed


@dataclass(frozen=True)
class ImageHashes:
    """The content hashes of some images of one dataset: ``ids`` in order, ``exact`` digests, ``dhash`` bits."""

    ids: list[str]
    exact: np.ndarray  # (N,) sha1 hex digests of the quantised canonical image
    dhash: np.ndarray  # (N, DHASH_SIDE**2 // 64) uint64
    groups: list[str | None]


@dataclass(frozen=True)
class Overlap:
    """What the check found: ``count`` target val/test images also in the source's training data (by any test).

    ``exact``, ``near`` and ``lesion`` count the target images each test flags (an image may be flagged by
    several); ``lesion`` is None where the two datasets do not both record lesions. ``files`` are the first
    few flagged target images, each with the source image it matched.
    """

    source: str
    target: str
    checked: int
    count: int
    exact: int
    near: int
    lesion: int | None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "source": self.source, "target": self.target, "checked": self.checked, "count": self.count,
            "exact": self.exact, "near": self.near, "lesion": self.lesion, "files": self.files,
        }  # fmt: skip

    def summary(self) -> str:
        """One line: how many target images overlap, by which test, and the first few."""
        lesion = "lesion ids not in both" if self.lesion is None else f"{self.lesion} by lesion id"
        found = (
            f"{self.count} of {self.checked} {self.target} val/test images are in {self.source}'s train/val split "
            f"({self.exact} exact at {CANONICAL_SIZE} px, {self.near} near-duplicate, {lesion})"
        )
        return found + (f": {', '.join(self.files)}" if self.files else "")


def check_overlap(
    source: str, target: str, source_root: Path | None = None, target_root: Path | None = None
) -> Overlap:
    """Compare the target's val and test images with the source's train and val images (see the module)."""
    src = dataset_hashes(source, ("train", "val"), source_root)
    tgt = dataset_hashes(target, ("val", "test"), target_root)
    exact = np.isin(tgt.exact, src.exact)
    distance, nearest = _nearest(tgt, src)
    near = distance <= NEAR_BITS
    lesion: np.ndarray | None = None
    if any(g is not None for g in src.groups) and any(g is not None for g in tgt.groups):
        src_groups = {g for g in src.groups if g is not None}
        lesion = np.array([g is not None and g in src_groups for g in tgt.groups], dtype=bool)
    flagged = exact | near | (lesion if lesion is not None else False)
    same = {h: i for i, h in enumerate(src.exact)}
    files = [
        f"{tgt.ids[i]} (~{src.ids[same.get(tgt.exact[i], nearest[i])]})"
        if exact[i] or near[i]
        else f"{tgt.ids[i]} (lesion {tgt.groups[i]})"
        for i in np.flatnonzero(flagged)[:SHOWN]
    ]
    return Overlap(
        source=source,
        target=target,
        checked=len(tgt.ids),
        count=int(flagged.sum()),
        exact=int(exact.sum()),
        near=int(near.sum()),
        lesion=None if lesion is None else int(lesion.sum()),
        files=files,
    )


def without_overlap(source: str, target: str, source_root: Path | None = None) -> pd.DataFrame:
    """The rows of ``source``'s metadata CSV left once every lesion with an image in ``target`` (any split) is out.

    A source for transfer to ``target`` made this way passes :func:`check_overlap` whatever split the target
    draws: whole lesions go, so a second photograph of a copied lesion (which no image hash catches) goes too.
    Only for metadata-CSV entries (the table is theirs to filter); the caller writes the CSV and an entry for it.
    """
    src = dataset_hashes(source, ("train", "val", "test"), source_root)
    tgt = dataset_hashes(target, ("train", "val", "test"))
    entry = load_dataset(source, CANONICAL_SIZE, source_root).entry
    options = entry.metadata_csv
    if options is None:
        raise ConfigError(f"dataset {source!r}: layout {entry.layout!r} has no metadata table to filter")
    hit = _matches(src, tgt)
    out = {src.ids[i] for i in np.flatnonzero(hit)}
    lesions = {src.groups[i] for i in np.flatnonzero(hit) if src.groups[i] is not None}
    out |= {i for i, g in zip(src.ids, src.groups, strict=True) if g in lesions}
    root = Path(source_root) if source_root is not None else entry.path
    table = pd.read_csv(root / options.file, dtype=str, keep_default_na=False)
    return table[~table[options.id_column].isin(out)]


def _matches(hashes: ImageHashes, others: ImageHashes) -> np.ndarray:
    """Which of ``hashes`` equal one of ``others`` exactly or lie within :data:`NEAR_BITS` of one."""
    return np.isin(hashes.exact, others.exact) | (_nearest(hashes, others)[0] <= NEAR_BITS)


def shared_images(hashes: ImageHashes, others: ImageHashes) -> np.ndarray:
    """:func:`check_overlap`'s image tests (exact, or within :data:`NEAR_BITS`) as a mask over ``hashes``: what an
    external test set (:mod:`bench.data.external_sets`) removes before it scores a model trained on ``others``."""
    return _matches(hashes, others)


def _nearest(hashes: ImageHashes, others: ImageHashes, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``hashes``: the dHash distance (bits) to the nearest of ``others``, and which one that is.

    A chunk of rows at a time: 10,000 x 10,000 pairs of 4 words would be 3 GB at once.
    """
    if not others.ids:
        return np.full(len(hashes.ids), DHASH_SIDE**2 + 1), np.zeros(len(hashes.ids), dtype=np.int64)
    distance, nearest = [], []
    for start in range(0, len(hashes.ids), chunk):
        xor = hashes.dhash[start : start + chunk, None, :] ^ others.dhash[None, :, :]
        bits = np.bitwise_count(xor).sum(axis=2, dtype=np.int64)
        distance.append(bits.min(axis=1))
        nearest.append(bits.argmin(axis=1))
    return np.concatenate(distance), np.concatenate(nearest)


def dataset_hashes(name: str, splits: tuple[str, ...], data_root: Path | None = None) -> ImageHashes:
    """The hashes of ``name``'s images in ``splits`` (from the cache when the data is unchanged)."""
    data = load_dataset(name, CANONICAL_SIZE, data_root)
    key = hashlib.sha256(f"{_HASH_FORMAT}-{data.fingerprint}-{data.audit.get('pixels_sha256')}".encode())
    path = cache_dir() / f"leakage-{data.entry.name}-{key.hexdigest()[:24]}.npz"
    hashes = _read_hashes(path) if path.is_file() else None
    if hashes is None:
        hashes = _hash_all(data)
        write_cache_file(path, lambda fh: np.savez(fh, **_arrays(hashes)))
    groups = _groups(data, data_root)
    keep = [i for i, s in enumerate(_split_of(data)) if s in splits]
    return ImageHashes(
        ids=[hashes.ids[i] for i in keep],
        exact=hashes.exact[keep],
        dhash=hashes.dhash[keep],
        groups=[groups.get(hashes.ids[i]) for i in keep],
    )


def image_hashes(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Exact digests and dHash bits of uint8 images (N, C, H, W), after reduction to the canonical size."""
    gray = images.float().mean(dim=1, keepdim=True)
    if gray.shape[-1] != CANONICAL_SIZE or gray.shape[-2] != CANONICAL_SIZE:
        gray = F.interpolate(gray, size=(CANONICAL_SIZE, CANONICAL_SIZE), mode="area")
    quantised = (gray / 256 * LEVELS).clamp(0, LEVELS - 1).to(torch.uint8).numpy()
    exact = np.array([hashlib.sha1(q.tobytes()).hexdigest() for q in quantised])
    small = F.adaptive_avg_pool2d(gray, (DHASH_SIDE, DHASH_SIDE + 1))[:, 0]
    bits = (small[:, :, 1:] > small[:, :, :-1]).reshape(len(images), -1).numpy()
    dhash = np.packbits(bits, axis=1).view(">u8").astype(np.uint64)
    return exact, dhash


def _hash_all(data: LoadedDataset, chunk: int = 2048) -> ImageHashes:
    """Hashes of every image of ``data``, in split order (train, val, test), a chunk at a time."""
    ids, exact, dhash = [], [], []
    for split in (data.train, data.val, data.test):
        ids += list(split.ids)
        for start in range(0, len(split), chunk):
            e, d = image_hashes(split.images[start : start + chunk])
            exact.append(e)
            dhash.append(d)
    words = DHASH_SIDE**2 // 64
    return ImageHashes(
        ids=ids,
        exact=np.concatenate(exact) if exact else np.array([], dtype="<U40"),
        dhash=np.concatenate(dhash) if dhash else np.zeros((0, words), dtype=np.uint64),
        groups=[],
    )


def _split_of(data: LoadedDataset) -> list[str]:
    return ["train"] * len(data.train) + ["val"] * len(data.val) + ["test"] * len(data.test)


def _groups(data: LoadedDataset, data_root: Path | None) -> dict[str, str]:
    """Image id -> lesion id, for entries whose layout records one (empty otherwise)."""
    options = data.entry.metadata_csv
    if options is None or not options.group_column:
        return {}
    table = read_items(data.entry, data_root).table
    return {str(i): str(g) for i, g in zip(table["id"], table["group"], strict=True) if g is not None}


def _arrays(hashes: ImageHashes) -> dict[str, np.ndarray]:
    return {"ids": np.array(hashes.ids, dtype=str), "exact": hashes.exact, "dhash": hashes.dhash}


def _read_hashes(path: Path) -> ImageHashes | None:
    """Cached hashes, or None when the file cannot be read (it is then recomputed and rewritten)."""
    try:
        with np.load(path) as cached:
            return ImageHashes(list(cached["ids"]), cached["exact"], cached["dhash"], groups=[])
    except (*UNREADABLE_NUMPY, KeyError):
        return None
