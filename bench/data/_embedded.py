"""The default sweep's data inside a wheel: each dataset's image table and its images decoded at one resolution.

Why: ``bench run`` with no arguments is the first command a user types, and from a wheel it must train the
default sweep as a clone does, to the same numbers, although a wheel cannot carry ``data/`` (74 MB of image
files). So the wheel carries what a clone's loader makes of that data at the sweep's resolution: the reader's
table (:class:`~bench.data._layouts.Items`: id, key, label, group, published of every image) and the decoded
uint8 images of its keys, sorted, as the decode cache holds them (:mod:`bench.data.loading`). The split is not
shipped: the same code computes it from the same table, as in a clone. Same table, same split, same pixels: the
run's data identity (entry, fingerprint, pixels sha256) and so its run key come out equal to a clone's.

One file per dataset and resolution, ``<name>-<R>px.npz`` in :func:`bench.paths.embedded_folder`, made from a
clone's data by :mod:`bench.data.embed` when the wheel is built. Deflated, about 27 MB for the three default
datasets at 28 px, and written with fixed zip dates, so the same data gives the same bytes. Members:

* ``meta``: JSON bytes: the format, the entry fields that shape the table (:data:`READER_FIELDS`), the image spec,
  and the fingerprint and pixels sha256 of the load it was made from;
* ``table``: JSON bytes, the reader's table column by column;
* ``keys`` and ``images``: the sorted keys and their uint8 (N, C, R, R) images.

Only what was embedded is served: another resolution or decoding, or an entry whose reading fields differ from
the embedded one's (a ``BENCH_HOME`` file does not count: it has its own data), gets the wheel's data hint.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from bench.data._layouts import ImageSpec, Items, chunk_rows
from bench.data.entries import DatasetEntry
from bench.errors import DataError
from bench.files import UNREADABLE_NUMPY
from bench.paths import data_hint, embedded_data, embedded_folder

FORMAT = 1  # bump when a member's meaning changes
READER_FIELDS = ("layout", "classes", "metadata_csv")  # what the table is read with (decoding is the image spec)
TABLE_COLUMNS = ("id", "key", "label", "group", "published")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: no build time in the bytes


def embedded_file(name: str, resolution: int, folder: Path | None = None) -> Path:
    """The file of dataset ``name`` at ``resolution`` in ``folder`` (default: this installation's)."""
    return (folder or embedded_folder()) / f"{name}-{resolution}px.npz"


def reader_fields(entry: DatasetEntry) -> dict:
    """The entry's fields that decide its table, as JSON data (an embedded table is served only under them)."""
    return json.loads(json.dumps({f: asdict(entry)[f] for f in READER_FIELDS}, default=str))


def embedded_items(entry: DatasetEntry) -> Items | None:
    """``entry``'s table and an image source over its embedded files, or None where none fits the entry."""
    files = {r: embedded_file(entry.name, r) for r in embedded_data().get(entry.name, [])}
    metas = {r: read_meta(path) for r, path in files.items()}
    fitting = {r: files[r] for r, meta in metas.items() if meta and meta["reader"] == reader_fields(entry)}
    if not fitting:
        return None
    first = fitting[min(fitting)]
    with np.load(first, allow_pickle=False) as npz:
        table = table_from_json(bytes(npz["table"]))
    source = EmbeddedImages(entry.name, tuple(sorted(fitting.items())), label=f"{entry.name}-embedded")
    return Items(table=table, source=source)


@dataclass(frozen=True)
class EmbeddedImages:
    """The images of an embedded dataset, at the resolutions it was embedded at (an :class:`ImageSource`)."""

    name: str
    files: tuple[tuple[int, Path], ...]  # (resolution, file)
    label: str

    def signature(self, keys: Sequence[str]) -> list:
        stats = [(str(path), path.stat().st_size, path.stat().st_mtime_ns) for _, path in self.files]
        return [stats, list(keys)]

    def decode(self, keys: Sequence[str], spec: ImageSpec) -> Iterator[np.ndarray]:
        """The embedded images of ``keys`` if they were embedded under ``spec``; else the wheel's data hint."""
        path = dict(self.files).get(spec.resolution)
        meta = read_meta(path) if path is not None else None
        if meta is None or meta["spec"] != asdict(spec):
            embedded = ", ".join(f"{r} px" for r, _ in self.files)
            raise DataError(
                f"dataset '{self.name}': this installation holds its images decoded at {embedded} only, not "
                f"{spec.resolution} px as {'grayscale' if spec.grayscale else 'RGB'}, {spec.resize}, crop "
                f"{spec.crop}; {data_hint()}"
            )
        with np.load(path, allow_pickle=False) as npz:
            stored, images = [str(k) for k in npz["keys"]], npz["images"]
        position = {key: i for i, key in enumerate(stored)}
        missing = [key for key in keys if key not in position]
        if missing:
            raise DataError(f"{path}: holds no image '{missing[0]}'; {data_hint()}")
        rows = np.array([position[key] for key in keys], dtype=np.int64)
        step = chunk_rows(spec)
        for start in range(0, len(rows), step):
            yield np.ascontiguousarray(images[rows[start : start + step]])


def read_meta(path: Path) -> dict | None:
    """The ``meta`` member of an embedded file (JSON), or None for a file of another format or a damaged one."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["meta"]))
    except (*UNREADABLE_NUMPY, KeyError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def table_to_json(table: pd.DataFrame) -> bytes:
    """The reader's table, a list per column (None stays null, so a table of no groups reads back as one)."""
    columns = {c: table[c].tolist() for c in TABLE_COLUMNS}
    columns["label"] = [int(v) for v in columns["label"]]
    return json.dumps(columns, separators=(",", ":")).encode()


def table_from_json(blob: bytes) -> pd.DataFrame:
    """:func:`table_to_json` read back as the readers build their tables: int64 labels, the other columns
    inferred by pandas from Python lists (strings, or objects where a column is all None)."""
    columns = json.loads(blob)
    columns["label"] = np.array(columns["label"], dtype=np.int64)
    return pd.DataFrame({c: columns[c] for c in TABLE_COLUMNS})


def write_embedded(fh: BinaryIO, meta: dict, table: pd.DataFrame, keys: list[str], images: np.ndarray) -> None:
    """One embedded file into ``fh``: npz members written with a fixed date, so equal data gives equal bytes."""
    members = {
        "meta": np.frombuffer(json.dumps({"format": FORMAT, **meta}, sort_keys=True).encode(), dtype=np.uint8),
        "table": np.frombuffer(table_to_json(table), dtype=np.uint8),
        "keys": np.array(keys, dtype=str),
        "images": np.ascontiguousarray(images, dtype=np.uint8),
    }
    with zipfile.ZipFile(fh, "w") as archive:
        for name, array in members.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            archive.writestr(info, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
