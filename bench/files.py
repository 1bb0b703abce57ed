"""Files written whole or not at all: one atomic writer for records, scores, caches and reports.

A killed process, a full disk or a read-only folder must never leave a half-written file that a later read
could take for a result, so everything is written to a temporary name in the same folder, flushed, and
renamed over the target with ``os.replace``. Errors become one-line :class:`~bench.errors.ResultsError`
messages naming the path; callers for whom a file only saves time (the data cache) turn that into a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from bench.errors import ResultsError

UNREADABLE_NUMPY = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
"""What ``np.load`` and reading an npz member raise on a damaged file: OSError or ValueError (not numpy's
format), EOFError (0 bytes), BadZipFile (truncated: no central directory), zlib.error (corrupt member).
EOFError must never escape to the CLI, where click would take it for end of input at a prompt."""


def checkpoint_format(path: Path) -> str | None:
    """``"torch"`` or ``"safetensors"`` from a weights file's first bytes, None for anything else (or empty).

    Read without torch, so a sweep naming a text file as its weights is refused while it is planned, before any
    run starts. A torch checkpoint is a zip archive (or, before torch 1.6, a pickle); a safetensors file is an
    8-byte header length, then its JSON header.
    """
    with path.open("rb") as fh:
        head = fh.read(9)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    if head[8:9] == b"{":
        return "safetensors"
    return None


def not_a_checkpoint(path: Path) -> str:
    """What to say of a weights file :func:`checkpoint_format` does not recognise."""
    empty = " (an empty file)" if path.stat().st_size == 0 else ""
    return f"not a safetensors file or PyTorch checkpoint{empty}"


def load_npz_arrays(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of the npz file at ``path``, read whole; a missing or damaged file is one :class:`ResultsError`
    line naming it as ``what`` (e.g. "test scores file"), which readers of many runs turn into a warning."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except UNREADABLE_NUMPY as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ResultsError(f"{path}: unreadable {what} ({reason})") from None


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temp file in ``path``'s folder, then rename it to ``path``.

    Any OS error (read-only folder, disk full) becomes a one-line :class:`ResultsError` naming the path; the
    temp file is removed and an earlier file at ``path`` is left untouched.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise ResultsError(f"cannot write {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except OSError as err:
        raise ResultsError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_savefig(fig: Any, path: Path, **options: Any) -> None:
    """A matplotlib figure's ``savefig`` into :func:`atomic_write`: a full disk leaves no truncated image behind.

    The format is ``path``'s suffix, as ``savefig`` takes it from a file name (a file object names none).
    """
    atomic_write(path, lambda fh: fig.savefig(fh, format=path.suffix.lstrip("."), **options))


def check_writable(folder: Path) -> None:
    """A one-line :class:`ResultsError` naming ``folder`` unless files can be created in it (made if missing).

    Checked before a sweep trains anything, so a read-only folder is reported before an epoch is spent.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise ResultsError(f"{folder}/: cannot write there ({err.strerror})") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """:func:`atomic_write` of ``data``."""
    atomic_write(path, lambda fh: fh.write(data))


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB checkpoints do not need to fit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def jsonable(value: Any) -> Any:
    """NaN/inf become null (JSON has no NaN); numpy scalars become Python numbers; paths strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as indented, key-sorted JSON (NaN as null), written atomically."""
    atomic_write_bytes(path, json.dumps(jsonable(payload), indent=1, sort_keys=True).encode())
