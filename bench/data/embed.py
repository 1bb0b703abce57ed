"""Making the data a wheel embeds: a shipped dataset as a clone's loader decodes it at one resolution.

The wheel build (hatch_build.py, through scripts/embed_default_data.py, which picks the default sweep's
datasets and resolutions) calls :func:`embed_dataset` on this checkout's ``data/``. The file holds the loader's
own table and decode-cache pixels (format: :mod:`bench.data._embedded`), never a second decoder's, so what a
wheel trains on cannot differ from what a clone does; tests/test_wheel.py checks the shipped files against a
fresh load all the same. A file already holding the same load (its fingerprint, pixels sha256, reading fields
and image spec) is left as it is, so building again costs one warm load per dataset.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench.data._embedded import FORMAT, embedded_file, read_meta, reader_fields, write_embedded
from bench.data._layouts import ImageSpec
from bench.data.entries import DatasetEntry, parse_entry
from bench.data.loading import load_dataset, read_items
from bench.errors import DataError
from bench.files import atomic_write
from bench.paths import registry_folders


def shipped_entry(name: str) -> DatasetEntry:
    """The entry this checkout ships as ``datasets/<name>.toml`` (a ``BENCH_HOME`` file of that name is not it)."""
    file = registry_folders("datasets")[0] / f"{name}.toml"
    if not file.is_file():
        raise DataError(f"no shipped dataset entry {file} to embed")
    return parse_entry(file)


def embed_dataset(name: str, resolution: int, folder: Path) -> tuple[Path, bool]:
    """The shipped dataset ``name`` at ``resolution`` as an embedded file in ``folder``; and whether it was written.

    The pixels are the decode cache's (every key of the table, sorted, as :func:`bench.data.loading.load_dataset`
    decodes them), so their sha256 is the ``pixels_sha256`` a clone's run records.
    """
    entry = shipped_entry(name)
    data = load_dataset(entry, resolution)
    spec = ImageSpec(resolution=resolution, grayscale=entry.grayscale, resize=entry.resize, crop=entry.crop)
    meta = {
        "name": entry.name,
        "reader": reader_fields(entry),
        "spec": asdict(spec),
        "fingerprint": data.fingerprint,
        "pixels_sha256": data.audit["pixels_sha256"],
    }
    path = embedded_file(name, resolution, folder)
    if read_meta(path) == {"format": FORMAT, **meta}:
        return path, False
    table = read_items(entry, None).table
    keys = sorted(set(table["key"]))
    file = data.train.images.file  # the decode cache: every key's image, sorted (each split's rows are a view)
    images = file.read(np.arange(file.shape[0])).numpy()
    if images.shape != (len(keys), *spec.shape):
        raise DataError(f"dataset '{name}': the decode cache holds {images.shape} images for {len(keys)} keys")
    atomic_write(path, lambda fh: write_embedded(fh, meta, table, keys, images))
    return path, True
