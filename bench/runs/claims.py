"""Claims on runs, so two sweeps on one results folder never train the same run at once.

Before a run starts, the process that drives the sweep takes an exclusive ``flock`` on ``<record stem>.lock``
beside the run's record and holds it until the run's outcome is in. The kernel drops the lock with the
process, so a killed sweep never leaves a run stuck: the next sweep takes the lock over at once (the file
left behind only says who held it last). A run whose lock another live process holds is skipped, with who
holds it; a run another process finished while this one waited its turn is skipped too, rather than trained
again. (``flock`` holds between processes of one machine; on Linux NFS clients it is a lock of the server's.)

Holding the claim also means nobody else is writing the run's files, so temp files of a killed write beside
them (``.<record stem>.*.tmp``: :func:`bench.files.atomic_write`) are stale and are removed then.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

from bench.errors import ResultsError
from bench.runs.planned import PlannedRun, record_status


def lock_path(record_file: Path) -> Path:
    """The claim file of a run, beside where its record is or will be."""
    return record_file.with_suffix(".lock")


class Claims:
    """The claims this process holds; :meth:`take` before a run starts, :meth:`release` once its outcome is in."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[int, Path]] = {}  # run key -> (locked fd, lock file)

    def take(self, item: PlannedRun) -> str | None:
        """Claim ``item``: None when this process now holds it, else why it is not to be run here."""
        path = lock_path(item.path)
        fd = _lock(path)
        if fd is None:
            return f"claimed by {_holder(path)}"
        os.ftruncate(fd, 0)
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {dt.datetime.now().isoformat(timespec='seconds')}"
        os.write(fd, holder.encode())
        self._held[item.key] = (fd, path)
        if record_status(item.path) != item.status:  # another sweep finished it after this one was planned
            self.release(item)
            return f"finished by another process meanwhile ({item.path.name})"
        for stale in item.path.parent.glob(f".{item.path.stem}.*.tmp"):
            stale.unlink(missing_ok=True)
        return None

    def release(self, item: PlannedRun) -> None:
        if item.key not in self._held:
            return
        fd, path = self._held.pop(item.key)
        path.unlink(missing_ok=True)  # before unlocking: whoever opened this file since finds it gone, and retries
        os.close(fd)

    def close(self) -> None:
        for fd, path in self._held.values():
            path.unlink(missing_ok=True)
            os.close(fd)
        self._held.clear()

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _lock(path: Path) -> int | None:
    """An fd holding the exclusive lock of ``path``, or None when another process holds it.

    The lock counts only while ``path`` is still the file locked: a holder removes the file on release, so
    a lock won on a removed file is tried again on the new one.
    """
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise ResultsError(f"cannot claim {path}: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"
