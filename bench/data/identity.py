"""The data part of a run's experiment identity: the dataset entry and what its files hold.

A run is only the same experiment as another if it saw the same data: the entry's content (split policy
and seed, classes, decoding), the split ``fingerprint`` (id, split and label of every image) and
``pixels_sha256`` (the decoded pixels), as :func:`bench.data.loading.load_dataset` reports them. So an
edited ``datasets/*.toml`` or a changed data file gives another identity and another run key
(:mod:`bench.runs.spec`): a new run, never a skip.

Loading decodes the images once (later loads read the decode cache). Planning a sweep asks for every
run's data identity, so it is memoised per entry, resolution, data root, and the data path's size and
mtime, which a rewritten npz changes. A file changed in place inside a folder that keeps the folder's
mtime is only seen by a new process, or after :func:`forget`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from bench.data.entries import DatasetEntry, with_split
from bench.data.folder import dataset_entry
from bench.data.loading import LoadedDataset, load_dataset


@dataclass(frozen=True)
class DataIdentity:
    """The data a run saw: its entry, split fingerprint and pixels digest."""

    entry: DatasetEntry
    fingerprint: str
    pixels_sha256: str | None

    @classmethod
    def of(cls, data: LoadedDataset) -> DataIdentity:
        return cls(data.entry, data.fingerprint, data.audit.get("pixels_sha256"))


def data_identity(dataset: str, resolution: int, data_root: str | None = None, split: str = "dataset") -> DataIdentity:
    """The data identity of ``dataset`` at ``resolution`` (read from ``data_root`` when given) under a protocol's
    ``split`` (:func:`bench.data.entries.with_split`)."""
    return entry_data_identity(with_split(dataset_entry(dataset, data_root), split), resolution, data_root)


def entry_data_identity(entry: DatasetEntry, resolution: int, data_root: str | None = None) -> DataIdentity:
    """The data identity of a resolved dataset ``entry`` (its split applied) at ``resolution``."""
    root = Path(data_root).expanduser().absolute() if data_root else entry.path
    return _load(entry, resolution, data_root, _stat(root))


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None  # load_dataset says what is wrong with it
    return st.st_size, st.st_mtime_ns


@functools.cache
def _load(entry: DatasetEntry, resolution: int, data_root: str | None, stat: tuple[int, int] | None) -> DataIdentity:
    """Memoised on the arguments; ``stat`` only keys the memo."""
    del stat
    return DataIdentity.of(load_dataset(entry, resolution, Path(data_root) if data_root else None))


def forget() -> None:
    """Drop the memo (for data changed in place within this process)."""
    _load.cache_clear()
