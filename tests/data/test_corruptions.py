"""MedMNIST-C corruptions through medmnistc: deterministic per image, stronger with severity, restoring the global
generators, and one line naming the extra when the library is not installed."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest

from bench.data import corruptions
from bench.data.corruptions import MISSING, CorruptionUnavailable, corrupt, corruption_names, image_seed
from bench.errors import ConfigError


def _library() -> None:
    try:
        corruptions.require_library()
    except ConfigError as err:
        pytest.skip(f"the robustness extra is not installed here: {err}")


def tiny_images(channels: int, n: int = 6, side: int = 32) -> np.ndarray:
    """Smooth images (a gradient and a disc) with texture: what blurs, noise and contrast act on visibly."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side]
    base = 60 + 100 * x / side + 60 * ((x - side / 2) ** 2 + (y - side / 2) ** 2 < (side / 4) ** 2)
    images = base[None, None] + rng.normal(0, 10, size=(n, channels, side, side))
    return images.clip(0, 255).astype(np.uint8)


IDS = [f"test/{i}" for i in range(6)]


@pytest.mark.parametrize(("modality", "channels"), [("dermoscopy", 3), ("chest_xray", 1)])
def test_same_images_same_corruption_and_the_shape_kept(modality, channels):
    _library()
    images = tiny_images(channels)
    for name in corruption_names(modality, ("gaussian_noise", "pixelate", "contrast_down")):
        first = corrupt(images, IDS, modality, name, 3)
        assert first.shape == images.shape and first.dtype == np.uint8
        assert np.array_equal(first, corrupt(images, IDS, modality, name, 3)), name


def test_each_image_has_its_own_seed_whatever_else_is_corrupted_with_it():
    """A run's result cannot depend on the batch or order an image came in: its noise is its own."""
    _library()
    images = tiny_images(3)
    together = corrupt(images, IDS, "dermoscopy", "gaussian_noise", 2)
    alone = corrupt(images[2:3], IDS[2:3], "dermoscopy", "gaussian_noise", 2)
    assert np.array_equal(together[2:3], alone)
    other = corrupt(images[2:3], ["test/other"], "dermoscopy", "gaussian_noise", 2)
    assert not np.array_equal(alone, other)
    assert image_seed("gaussian_noise", 2, "test/2") != image_seed("gaussian_noise", 3, "test/2")


def test_the_global_generators_are_left_as_they_were():
    _library()
    np.random.seed(7)
    random.seed(7)
    expected = (np.random.random(), random.random())
    np.random.seed(7)
    random.seed(7)
    corrupt(tiny_images(3), IDS, "dermoscopy", "impulse_noise", 5)
    assert (np.random.random(), random.random()) == expected


@pytest.mark.parametrize(
    ("modality", "channels", "name"),
    [
        ("dermoscopy", 3, "gaussian_noise"),
        ("dermoscopy", 3, "jpeg_compression"),
        ("dermoscopy", 3, "zoom_blur"),
        ("dermoscopy", 3, "defocus_blur"),
        ("dermoscopy", 3, "contrast_down"),
        ("chest_xray", 1, "gaussian_blur"),
        ("chest_xray", 1, "brightness_down"),
        ("chest_xray", 1, "impulse_noise"),
    ],
)
def test_a_higher_severity_changes_the_images_more(modality, channels, name):
    _library()
    images = tiny_images(channels)
    change = [
        np.abs(corrupt(images, IDS, modality, name, s).astype(float) - images.astype(float)).mean() for s in range(1, 6)
    ]
    assert all(a < b for a, b in zip(change, change[1:], strict=False)), (name, change)


def test_a_corruption_the_library_cannot_apply_here_says_which_and_why():
    """MedMNIST-C's letters need about 90 px: at 32 px the library's own placement fails, and the run skips it."""
    _library()
    with pytest.raises(CorruptionUnavailable, match=r"characters at severity 5 fails on image test/0 at 32 px"):
        corrupt(tiny_images(3), IDS, "dermoscopy", "characters", 5)


def test_an_unknown_corruption_names_the_known_ones():
    _library()
    with pytest.raises(ConfigError, match=r"corruption 'fog' is not one of MedMNIST-C's for chest_xray: pixelate"):
        corruption_names("chest_xray", ("fog",))


def test_without_the_library_one_line_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "medmnistc.corruptions.registry", None)  # import fails, as when not installed
    with pytest.raises(ConfigError) as err:
        corruption_names("dermoscopy")
    assert str(err.value).startswith(MISSING) and "\n" not in str(err.value)
    assert "pip install -e '.[robustness]'" in str(err.value) and "libmagickwand-dev" in str(err.value)
