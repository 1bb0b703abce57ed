"""Decoded images kept in a file and read by row, so memory does not grow with the dataset.

The decode cache is a plain ``.npy`` file of uint8 (N, C, R, R) images. It is written chunk by chunk as the
images decode (:func:`write_images`), never stacked in memory, and each batch reads just its rows
(:class:`ImageRows`). The rows are read with ordinary file reads (``readinto``), not a memory map: the pages
of a mapped file that an epoch touches count in the process's resident memory, so a mapped 5 GB cache reads
as 5 GB of RSS by the end of the first epoch, while file reads leave those pages in the kernel's page cache
(shared, reclaimable) and the process holds one batch. A warm page cache makes a read a memory copy, so a
batch costs about what indexing an in-memory tensor did.
"""

from __future__ import annotations

import hashlib
import io
import math
import weakref
from collections.abc import Iterable
from typing import BinaryIO

import numpy as np
import torch

TO_DEVICE_BYTES = 64 << 20  # moving a whole split to a GPU goes through host chunks of this size


class ImageFile:
    """An open ``.npy`` file of uint8 (N, C, R, R) images: its header checked, its pixels read by row."""

    def __init__(self, fh: BinaryIO, expected: tuple[int, ...]):
        """Check ``fh``'s header against the ``expected`` shape; ``ValueError`` saying what differs.

        ``fh`` stays open for the reads (a cache file replaced or removed later does not change what is read).
        """
        fh.seek(0)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(fh)
        if dtype != np.uint8 or fortran_order or tuple(shape) != tuple(expected):
            raise ValueError(f"its header says {dtype} {shape}, not uint8 {tuple(expected)}")
        self.offset = fh.tell()
        self.shape = tuple(int(s) for s in shape)
        self.row_bytes = math.prod(self.shape[1:])
        size = fh.seek(0, io.SEEK_END)
        if size != self.offset + self.shape[0] * self.row_bytes:
            raise ValueError(f"{size} bytes, not the {self.offset + self.shape[0] * self.row_bytes} its header says")
        self._fh = fh
        weakref.finalize(self, fh.close)  # closed with the last view that reads it

    def read(self, rows: np.ndarray) -> torch.Tensor:
        """Images ``rows`` (int64 row numbers) into a fresh tensor; consecutive rows are read in one call."""
        out = torch.empty((len(rows), *self.shape[1:]), dtype=torch.uint8)
        flat = out.numpy().reshape(len(rows), self.row_bytes)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for start, stop in zip([0, *breaks], [*breaks, len(rows)], strict=True):
            self._fh.seek(self.offset + int(rows[start]) * self.row_bytes)
            if self._fh.readinto(memoryview(flat[start:stop]).cast("B")) != (stop - start) * self.row_bytes:
                raise OSError(f"image file {getattr(self._fh, 'name', '')} ended early")
        return out


def write_images(fh: BinaryIO, shape: tuple[int, ...], chunks: Iterable[np.ndarray]) -> str:
    """Write ``chunks`` (uint8 image arrays, in order, ``shape[0]`` rows in all) as one ``.npy`` to ``fh``.

    Returns the sha256 of the pixels: the same digest as of the stacked array, computed as the chunks pass.
    """
    np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
    digest = hashlib.sha256()
    rows = 0
    for chunk in chunks:
        data = np.ascontiguousarray(chunk, dtype=np.uint8)
        digest.update(data)
        fh.write(memoryview(data).cast("B"))
        rows += len(data)
    if rows != shape[0]:
        raise ValueError(f"{rows} images were decoded for {shape[0]} keys")
    return digest.hexdigest()


class ImageRows:
    """Some rows of an :class:`ImageFile`, indexed like the uint8 tensor it stands for.

    ``view[a:b]``, ``view[index_tensor]`` and ``view[i]`` read those images into a fresh CPU tensor (further
    indices apply to it: ``view[:, 0]``); ``shape``, ``dtype``, ``device``, ``numel`` and ``element_size`` answer
    without reading. ``to(cuda)`` copies every row to the GPU, for datasets small enough to live there.
    """

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, file: ImageFile, rows: np.ndarray):
        self.file = file
        self.rows = np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.file.shape[1:]))

    def __len__(self) -> int:
        return len(self.rows)

    def numel(self) -> int:
        return math.prod(self.shape)

    def element_size(self) -> int:
        return 1

    def __getitem__(self, index: int | slice | torch.Tensor | tuple) -> torch.Tensor:
        first, rest = (index[0], index[1:]) if isinstance(index, tuple) else (index, ())
        if isinstance(first, torch.Tensor):
            first = first.cpu().numpy()
        rows = self.rows[first]
        images = self.file.read(np.atleast_1d(rows))
        if np.ndim(rows) == 0:
            return images[0][rest] if rest else images[0]
        return images[(slice(None), *rest)] if rest else images

    def to(self, device: torch.device | str) -> ImageRows | torch.Tensor:
        """Itself on the CPU; on another device one tensor holding every row, copied a chunk at a time."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        out = torch.empty(tuple(self.shape), dtype=torch.uint8, device=device)
        step = max(1, TO_DEVICE_BYTES // max(1, self.file.row_bytes))
        for start in range(0, len(self.rows), step):
            out[start : start + step].copy_(self.file.read(self.rows[start : start + step]))
        return out
