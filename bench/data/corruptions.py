"""MedMNIST-C corruptions of a test split, applied by the ``medmnistc`` library (the optional extra ``robustness``).

The corruptions and their five severities are MedMNIST-C's own (Di Salvo et al., 2024): the table of the
MedMNIST dataset of the modality (:data:`PRESETS`: DermaMNIST's for dermoscopy, PneumoniaMNIST's for chest
X-rays), applied as the library applies them (a PIL RGB image in, a grayscale dataset converted back to one
channel), never re-implemented here. They are applied to the test split's images at the run's resolution;
MedMNIST-C tuned its parameters at 224 px, so a figure compares rows of one resolution, not across them.

**Deterministic.** The library draws from numpy's and Python's global generators (and impulse noise from a
generator it is handed). Each image is corrupted under a seed of its own, from the corruption, the severity and
the image's id (:func:`image_seed`), so every backbone and every seed of a comparison sees the same corrupted
images, a rerun gets the same ones, and the generators' previous state is restored afterwards.

**What the library cannot do.** With numpy 2, medmnistc 0.1.0's ``motion_blur`` fails (it calls
``np.fromstring``, which numpy 2 removed), and ``characters`` needs about 90 px to place its letters. A
corruption that fails on any image at any asked severity raises :class:`CorruptionUnavailable` with the
library's reason; the run records it as skipped, the same for every row of that resolution.

medmnistc imports ImageMagick's MagickWand (through Wand) when its table is imported, so the extra needs that
system library too: the error says both.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator, Sequence
from importlib import metadata

import numpy as np
import torch
from PIL import Image

from bench.errors import ConfigError, DataError

LIBRARY = "medmnistc"
PRESETS: dict[str, str] = {"dermoscopy": "dermamnist", "chest_xray": "pneumoniamnist"}
"""The MedMNIST-C table each modality uses: the corruptions its authors chose for that kind of image."""
MISSING = (
    "corrupted eval sets need the optional extra 'robustness' (pip install -e '.[robustness]') and ImageMagick's "
    "MagickWand library (apt-get install libmagickwand-dev)"
)


class CorruptionUnavailable(DataError):
    """The library cannot apply a corruption here (the message says which image and why): it is skipped."""


def _tables() -> dict:
    """medmnistc's corruption table, imported on first use; a one-line :class:`ConfigError` when it cannot be."""
    try:
        from medmnistc.corruptions.registry import CORRUPTIONS_DS
    except ImportError as err:  # the package, or the MagickWand library Wand loads on import
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{MISSING}; importing {LIBRARY} failed: {reason}") from None
    return CORRUPTIONS_DS


def require_library() -> str:
    """The library's name and version (``medmnistc 0.1.0``), or the one-line error saying how to install it."""
    _tables()
    return f"{LIBRARY} {metadata.version(LIBRARY)}"


def corruption_names(modality: str, asked: Sequence[str] | None = None) -> tuple[str, ...]:
    """The modality's corruptions in MedMNIST-C's order, or the ``asked`` ones (each checked, a ConfigError if not)."""
    if modality not in PRESETS:
        raise ConfigError(f"modality {modality!r} has no MedMNIST-C corruptions; known: {', '.join(PRESETS)}")
    names = tuple(_tables()[PRESETS[modality]])
    if asked is None:
        return names
    unknown = [a for a in asked if a not in names]
    if unknown:
        raise ConfigError(f"corruption {unknown[0]!r} is not one of MedMNIST-C's for {modality}: {', '.join(names)}")
    return tuple(asked)


def image_seed(corruption: str, severity: int, image_id: str) -> int:
    """The seed an image is corrupted under: the same for every run that tests this image, and 32-bit for numpy."""
    digest = hashlib.sha256(f"{corruption}|{severity}|{image_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def corrupt(
    images: np.ndarray | torch.Tensor, ids: Sequence[str], modality: str, corruption: str, severity: int
) -> np.ndarray:
    """``images`` (uint8, N x C x H x W, C = 1 or 3) with ``corruption`` at ``severity`` (1-5), same shape and dtype.

    A failure of the library on any image is a :class:`CorruptionUnavailable` naming it (see the module).
    """
    pixels = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1] not in (1, 3):
        raise DataError(f"images to corrupt must be uint8 N x C x H x W, C 1 or 3; got {pixels.dtype} {pixels.shape}")
    corruptor = _tables()[PRESETS[modality]][corruption]
    out = np.empty_like(pixels)
    with _library_state():
        for i, (image, image_id) in enumerate(zip(pixels, ids, strict=True)):
            seed = image_seed(corruption, severity, str(image_id))
            random.seed(seed)
            np.random.seed(seed)
            corruptor.rng = np.random.default_rng(seed)  # impulse noise draws from the generator it is handed
            rgb = Image.fromarray(np.repeat(image, 3, axis=0).transpose(1, 2, 0) if image.shape[0] == 1 else
                                  image.transpose(1, 2, 0))  # fmt: skip
            try:
                done = np.asarray(corruptor.apply(rgb, severity - 1))
            except MemoryError:
                raise
            except Exception as err:  # the library's own failure, whatever its type: the reason is recorded
                reason = " ".join(str(err).split()) or type(err).__name__
                raise CorruptionUnavailable(
                    f"{corruption} at severity {severity} fails on image {image_id} at {image.shape[-1]} px "
                    f"({type(err).__name__}: {reason})"
                ) from None
            out[i] = _as_channels(done, image.shape, corruption)
    return out


def _as_channels(done: np.ndarray, shape: tuple[int, ...], corruption: str) -> np.ndarray:
    """The library's H x W x 3 output as the split's C x H x W (one channel: converted to L as MedMNIST-C does)."""
    channels, height, width = shape
    if done.shape != (height, width, 3) or done.dtype != np.uint8:
        raise CorruptionUnavailable(f"{corruption} returned {done.dtype} {done.shape}, not uint8 {height}x{width}x3")
    if channels == 1:
        return np.asarray(Image.fromarray(done).convert("L"))[None]
    return done.transpose(2, 0, 1)


@contextlib.contextmanager
def _library_state() -> Iterator[None]:
    """The global generators the library draws from, restored afterwards; torch on one thread meanwhile (its
    blur and gamma run per small image, where threads only contend: 80 ms an image on two busy cores, 1 ms on one)."""
    np_state, py_state, threads = np.random.get_state(), random.getstate(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.set_num_threads(threads)
