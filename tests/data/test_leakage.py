"""The leakage check: a target image the source trained on is found, also at another resolution; a clean pair passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.leakage import CANONICAL_SIZE, check_overlap, dataset_hashes, image_hashes, without_overlap

ENTRY = """name = "{name}"
title = "{name}"
layout = "class_folders"
path = "{path}"
classes = ["a", "b"]
task = "binary"
color = "rgb"
licence = "CC0"
citation = "synthetic"
[split]
policy = "carve_val"
val = 0.25
seed = 0
"""


def scene(seed: int, side: int) -> Image.Image:
    """A smooth random picture (8x8 random colours, upsampled), drawn at ``side`` px: the same scene at any size."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    return small.resize((side, side), Image.Resampling.BICUBIC)


def make_dataset(home: Path, root: Path, name: str, scenes: dict[str, list[tuple[int, int]]]) -> None:
    """``root/<split>/<class>/s<seed>.png`` for each (seed, side) of ``scenes[split]``, classes alternating."""
    for split, drawn in scenes.items():
        for i, (seed, side) in enumerate(drawn):
            path = root / split / "ab"[i % 2] / f"s{seed}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            scene(seed, side).save(path)
    (home / "datasets" / f"{name}.toml").write_text(ENTRY.format(name=name, path=root.as_posix()))


@pytest.fixture
def pair(home: Path, tmp_path: Path):
    """A source (train seeds 0-11, test 100-103) and a target whose test split holds source train seed 5 at 80 px."""
    make_dataset(
        home,
        tmp_path / "src",
        "src",
        {"train": [(s, 64) for s in range(12)], "test": [(100 + s, 64) for s in range(4)]},
    )
    target_test = [(200 + s, 48) for s in range(5)] + [(5, 80)]
    make_dataset(home, tmp_path / "tgt", "tgt", {"train": [(300 + s, 48) for s in range(8)], "test": target_test})
    make_dataset(
        home,
        tmp_path / "clean",
        "clean",
        {"train": [(400 + s, 48) for s in range(8)], "test": [(500 + s, 48) for s in range(6)]},
    )
    return home


def test_a_copy_at_another_resolution_is_found_and_named(pair):
    overlap = check_overlap("src", "tgt")
    assert overlap.count == 1 and overlap.near == 1
    assert overlap.checked == len(dataset_hashes("tgt", ("val", "test")).ids)
    assert overlap.files == ["test/b/s5.png (~train/b/s5.png)"]
    summary = overlap.summary()
    assert "\n" not in summary and summary.startswith("1 of ") and "test/b/s5.png" in summary


def test_a_clean_pair_passes(pair):
    overlap = check_overlap("src", "clean")
    assert (overlap.count, overlap.exact, overlap.near, overlap.files) == (0, 0, 0, [])
    assert overlap.lesion is None  # class folders record no lesions: the summary says the test did not apply
    assert "lesion ids not in both" in overlap.summary()


def test_only_the_sources_training_data_counts(pair):
    """A target image equal to a source *test* image is no leak: the source never trained on it."""
    assert check_overlap("tgt", "src").count == 0  # src's test scenes (100-103) are in nothing of tgt's
    itself = check_overlap("tgt", "tgt")  # its val split was carved from train: the source's val holds it
    assert itself.count == itself.checked - 6 and itself.exact == itself.count


def test_the_same_pixels_give_the_same_exact_hash_at_any_decoded_size():
    import torch

    big = torch.from_numpy(np.array(scene(7, 96))).permute(2, 0, 1)[None]
    small = torch.from_numpy(np.array(scene(7, CANONICAL_SIZE))).permute(2, 0, 1)[None]
    other = torch.from_numpy(np.array(scene(8, 96))).permute(2, 0, 1)[None]
    (e1, d1), (e2, d2), (e3, d3) = image_hashes(big), image_hashes(big.clone()), image_hashes(other)
    assert e1[0] == e2[0] and (d1 == d2).all()
    assert e1[0] != e3[0]
    distance = int(np.bitwise_count(image_hashes(small)[1] ^ d1).sum())
    assert distance <= int(np.bitwise_count(d3 ^ d1).sum())  # the same scene is nearer than another scene


def test_hashes_are_cached_and_reused(pair, cache: Path):
    first = dataset_hashes("src", ("train",))
    files = sorted(cache.glob("leakage-src-*.npz"))
    assert len(files) == 1
    again = dataset_hashes("src", ("train",))
    assert again.ids == first.ids and (again.dhash == first.dhash).all()
    assert sorted(cache.glob("leakage-src-*.npz")) == files


def test_without_overlap_needs_a_metadata_table(pair):
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="has no metadata table"):
        without_overlap("src", "tgt")
