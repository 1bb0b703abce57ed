"""The data layer's cache files (split assignments, decoded images): written whole or not at all.

A cache only saves time, so a cache that cannot be written (read-only home, full disk) warns and the load
goes on; records, which must not be lost, use the same writer (:func:`bench.files.atomic_write`) but fail
loudly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from bench.errors import ResultsError
from bench.files import atomic_write

CACHE_FORMAT = 2  # bump when a cached payload or the decoding changes meaning


def write_cache_file(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """:func:`bench.files.atomic_write`, except that a cache that cannot be written only costs time: it warns."""
    try:
        atomic_write(path, write)
    except ResultsError as err:
        warnings.warn(f"{err} (continuing without this cache file)", stacklevel=4)
