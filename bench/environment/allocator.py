"""Keep freed tensor memory in the process on glibc, so CPU training stops paying page faults for it every step.

glibc's ``malloc`` serves a large block with its own ``mmap`` and gives it back with ``munmap`` when it is freed;
the threshold for "large" starts at 128 KiB and only creeps up as such blocks are freed, and the top of the heap
is trimmed back to the system past a threshold too. A training step frees its activations and gradients and
allocates them again in the next one, so by default every step maps fresh pages and the kernel zero-fills each on
its first touch: measured here (1 torch thread, 32 px, batch 128), 14,000-44,000 minor page faults a step and
8-25% of the step's time for ResNet-18, DenseNet-121 and EfficientNet-B0, none of it in the arithmetic. With the
mmap threshold fixed at its ceiling (32 MiB on 64-bit glibc) and trimming only past 1 GiB, a step reuses the
memory the last one freed: ~500 faults a step, and the peak resident memory unchanged (the same tensors are live
at the peak either way; the memory is held between steps, not added). This is what PyTorch's CPU tuning guide
gets from swapping in jemalloc or tcmalloc, done with the allocator the process already has.

It changes no number a run computes, only its speed, so it is not part of a run's identity; the host fingerprint
of each record says whether it was on (:func:`state`). It is process-wide and cannot be undone (glibc has no call
back to its adaptive thresholds), so it is applied where a process trains or times its CPU engine
(:func:`bench.runs.runner.run`, :func:`bench.train.cpu_engine.measure_settings`), never on import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

_M_TRIM_THRESHOLD = -1  # mallopt parameters, <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling for it on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX); above it mallopt fails
TRIM_THRESHOLD = 2**30

_held = False


@functools.cache  # every record's fingerprint asks (state())
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None  # musl, macOS, Windows: their allocators have no such knobs, and are left as they are
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def hold_freed_memory() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` and its trim threshold at :data:`TRIM_THRESHOLD` for
    this process (once; later calls do nothing); returns whether the allocator holds freed memory now."""
    global _held
    if not _held:
        libc = _glibc()
        if libc is not None:
            _held = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(
                libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
    return _held


def state() -> str:
    """What the host fingerprint records: ``glibc, freed memory held`` after :func:`hold_freed_memory`, else the
    allocator left as is."""
    if _held:
        return f"glibc, freed memory held (mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim {TRIM_THRESHOLD >> 20} MiB)"
    return "glibc default" if _glibc() is not None else "system default"
