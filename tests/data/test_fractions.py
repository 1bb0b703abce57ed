"""Training fractions (issue 31): stratified, nested, at least one image a class, groups whole, and the same images
whatever the run seed, the backbone or the resolution it decodes at."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data.fractions import class_target, subset_indices, take_train_fraction, unit_order
from bench.data.loading import load_dataset
from bench.errors import ConfigError

FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def labels_of(counts: list[int]) -> np.ndarray:
    """Class ``c`` repeated ``counts[c]`` times, classes interleaved (the split's order must not matter)."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return np.random.default_rng(0).permutation(labels)


def image_units(n: int) -> list[str]:
    return [f"image:{i}" for i in range(n)]


# (class counts, fraction, images per class asked): round half up, never below 1, never above the class.
TARGETS = [
    ([100, 900], 0.1, [10, 90]),
    ([228, 360, 81], 0.25, [57, 90, 20]),  # 20.25 -> 20
    ([5, 7], 0.5, [3, 4]),  # 2.5 -> 3, 3.5 -> 4: half up, not to even
    ([3, 1, 40], 0.1, [1, 1, 4]),  # 0.3 and 0.1 -> 1: no class vanishes
    ([3, 1, 40], 1.0, [3, 1, 40]),
]


@pytest.mark.parametrize("counts, fraction, expected", TARGETS)
def test_each_class_keeps_its_share_and_at_least_one_image(counts, fraction, expected):
    labels = labels_of(counts)
    kept = subset_indices(labels, image_units(len(labels)), fraction)
    assert [class_target(fraction, n) for n in counts] == expected
    assert np.bincount(labels[kept], minlength=len(counts)).tolist() == expected


# (class counts, group size): images in groups of that size, each group one class.
NESTING = [([50, 50], 1), ([228, 360, 81, 12], 1), ([228, 360, 81, 12], 3), ([7, 1, 2], 2)]


@pytest.mark.parametrize("counts, size", NESTING)
def test_a_smaller_fraction_is_inside_every_larger_one(counts, size):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    units = [f"group:{c}-{i // size}" for c, n in enumerate(counts) for i in range(n)]
    subsets = [set(subset_indices(labels, units, f)) for f in (0.05, *FRACTIONS)]
    for smaller, larger in zip(subsets, subsets[1:], strict=False):
        assert smaller <= larger  # equal where whole groups already held the larger share
    assert subsets[0] < subsets[-1]
    assert subsets[-1] == set(range(len(labels)))


# (unit of every image, labels, fraction, the units that must be whole)
GROUPS = [
    # one lesion of 5 images and 15 single images, one class: 20% asks 4 images, so either the lesion, whole, or 4
    # singles; never part of it
    (["group:L"] * 5 + [f"image:{i}" for i in range(15)], [0] * 20, 0.2),
    # a class whose 3 images are one lesion: 10% asks 1 image, and gets the lesion's 3
    (["group:G"] * 3 + [f"image:{i}" for i in range(30)], [1] * 3 + [0] * 30, 0.1),
    # a lesion with images of two classes is in both classes' orders and enters whole
    (["group:M"] * 2 + [f"image:{i}" for i in range(18)], [0, 1] + [0] * 9 + [1] * 9, 0.1),
]


@pytest.mark.parametrize("units, labels, fraction", GROUPS)
def test_a_group_trains_whole_or_not_at_all(units, labels, fraction):
    kept = set(subset_indices(labels, units, fraction))
    assert kept  # never empty: each class has at least one image
    for group in {u for u in units if u.startswith("group:")}:
        members = {i for i, u in enumerate(units) if u == group}
        assert members <= kept or not members & kept, f"{group} is split"
    counts = np.bincount(np.asarray(labels)[sorted(kept)], minlength=2)
    targets = [class_target(fraction, n) for n in np.bincount(labels, minlength=2)]
    assert (counts >= targets).all()  # a whole group may overshoot a class's share, never fall short of it


def test_the_order_depends_on_the_names_alone_not_on_their_order_or_the_others():
    names = [f"image:{i}" for i in range(50)]
    order = unit_order(names)
    assert unit_order(list(reversed(names))) == order  # the split's row order does not matter
    assert [n for n in unit_order([*names, "image:new"]) if n != "image:new"] == order  # one more keeps the rest
    assert order != sorted(names)  # a shuffle, not the file order


def test_the_same_labels_and_units_give_the_same_images_whatever_else():
    labels = labels_of([120, 80])
    units = image_units(200)
    first = subset_indices(labels, units, 0.25)
    assert np.array_equal(first, subset_indices(labels.copy(), list(units), 0.25))
    assert not np.array_equal(first, subset_indices(labels, [f"x{u}" for u in units], 0.25))  # names, not positions


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_a_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(ConfigError, match="must be in \\(0, 1\\]"):
        subset_indices([0, 1], ["a", "b"], fraction)


def test_a_loaded_dataset_is_cut_in_train_only_the_same_at_every_resolution(project):
    """The images and labels of the cut train together, val and test stay whole, and an upsized backbone (another
    resolution, so another data fingerprint) trains on the same images."""
    data = load_dataset("tiny", 28)
    cut, audit = take_train_fraction(data, 0.25)
    assert take_train_fraction(data, 1.0) == (data, None)
    assert len(cut.val) == len(data.val) and len(cut.test) == len(data.test)
    kept = [data.train.ids.index(i) for i in cut.train.ids]
    assert np.array_equal(cut.train.labels.numpy(), data.train.labels.numpy()[kept])
    assert np.array_equal(cut.train.images[:].numpy(), data.train.images[:].numpy()[kept])
    assert audit["images"] == len(cut.train) == round(0.25 * len(data.train)) and audit["of"] == len(data.train)
    upsized, upsized_audit = take_train_fraction(load_dataset("tiny", 32), 0.25)
    assert upsized.fingerprint != data.fingerprint
    assert upsized.train.ids == cut.train.ids and upsized_audit["ids_sha256"] == audit["ids_sha256"]
