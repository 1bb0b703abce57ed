"""The data layer's cache files (split assignments, decoded images): written whole or not at all.

A cache only saves time, so a cache that cannot be written (read-only home, full disk) warns and the load
goes on; records, which must not be lost, have their own writer that fails loudly
(:func:`bench.runs.record.atomic_write_bytes`).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

CACHE_FORMAT = 1  # bump when a cached payload or the decoding changes meaning


def write_cache_file(path: Path, write: Callable[[BinaryIO], None]) -> None:
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
