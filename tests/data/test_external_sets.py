"""External test sets on a tiny synthetic pair of datasets: the label map in both directions, and the images (and
lesions) the model's dataset shares removed first, counted."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.entries import get_dataset_entry
from bench.data.external_sets import check_external, external_split, label_map
from bench.errors import ConfigError

FINE = ("a", "b", "c")
PER_CLASS = 20
MAP = 'a = "pos"\nb = "neg"\nc = "neg"\n'


def _image(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def pair(project: Path) -> Path:
    """``fine`` (3 classes, a metadata CSV with lesions, two images of lesion L0) and ``coarse`` (binary class folders)
    holding copies of two ``fine`` images: fine_0 (lesion L0, whose other image is fine_1) and fine_30."""
    data = project / "data"
    rows = ["image_id,dx,lesion_id"]
    for i in range(PER_CLASS * len(FINE)):
        lesion = "L0" if i < 2 else f"L{i}"
        rows.append(f"fine_{i},{FINE[i // PER_CLASS]},{lesion}")
        _image(data / "fine" / "images" / f"fine_{i}.png", i)
    (data / "fine" / "meta.csv").write_text("\n".join(rows) + "\n")
    for split, n in (("train", 16), ("test", 8)):
        for cls in ("neg", "pos"):
            for i in range(n):
                seed = 1000 + 100 * (cls == "pos") + 10 * n + i
                _image(data / "coarse" / split / cls / f"{cls}_{split}_{i}.png", seed)
    shutil.copy(data / "fine" / "images" / "fine_0.png", data / "coarse" / "test" / "pos" / "copy_0.png")
    shutil.copy(data / "fine" / "images" / "fine_30.png", data / "coarse" / "train" / "neg" / "copy_30.png")
    common = 'licence = "CC0"\ncitation = "synthetic"\ncolor = "rgb"\n'
    (project / "datasets" / "fine.toml").write_text(
        f'name = "fine"\ntitle = "fine"\nlayout = "metadata_csv"\npath = "data/fine"\nclasses = ["a", "b", "c"]\n'
        f'task = "multiclass"\n{common}[split]\npolicy = "stratified"\n[metadata_csv]\nfile = "meta.csv"\n'
        'image_dir = "images"\nimage_suffix = ".png"\nid_column = "image_id"\nlabel_column = "dx"\n'
        f'group_column = "lesion_id"\n[label_maps.coarse]\n{MAP}'
    )
    (project / "datasets" / "coarse.toml").write_text(
        f'name = "coarse"\ntitle = "coarse"\nlayout = "class_folders"\npath = "data/coarse"\nclasses = ["neg", "pos"]\n'
        f'task = "binary"\n{common}[split]\npolicy = "carve_val"\nval = 0.2\n'
    )
    return project


def test_a_fine_model_on_coarse_data_sums_its_probabilities_into_the_coarse_classes(pair):
    fine, coarse = get_dataset_entry("fine"), get_dataset_entry("coarse")
    mapping = label_map(fine, coarse)
    assert (mapping.direction, mapping.classes, mapping.positive) == ("model_to_data", ("neg", "pos"), "pos")
    assert mapping.source == "fine.toml [label_maps.coarse]"
    probs = mapping.probs(np.array([[0.2, 0.3, 0.5], [0.7, 0.1, 0.2]]), fine.classes)
    assert probs == pytest.approx(np.array([[0.8, 0.2], [0.3, 0.7]]), abs=1e-15)
    assert mapping.labels(np.array([0, 1]), coarse.classes).tolist() == [0, 1]  # the data's labels, as they are


def test_a_coarse_model_on_fine_data_maps_the_labels_and_scores_its_probabilities_as_they_are(pair):
    fine, coarse = get_dataset_entry("fine"), get_dataset_entry("coarse")
    mapping = label_map(coarse, fine)
    assert (mapping.direction, mapping.classes, mapping.positive) == ("data_to_model", ("neg", "pos"), "pos")
    assert mapping.labels(np.array([0, 1, 2]), fine.classes).tolist() == [1, 0, 0]
    partial = label_map(coarse, fine, {"a": "pos", "b": "neg"})  # c is left out: its images are not scored
    assert partial.source == "eval set" and partial.labels(np.array([2, 0]), fine.classes).tolist() == [-1, 1]


def test_a_map_that_fits_neither_direction_or_no_map_is_one_line(pair):
    fine, coarse = get_dataset_entry("fine"), get_dataset_entry("coarse")
    with pytest.raises(ConfigError, match=r"label map eval set for fine -> coarse maps \['a'\] to \['pos'\]"):
        label_map(fine, coarse, {"a": "pos"})
    with pytest.raises(ConfigError, match=r"no label map from \['dark', 'bright'\] to \['a', 'b', 'c'\]"):
        label_map(get_dataset_entry("tiny"), fine)
    tiny = get_dataset_entry("tiny")
    twin = dataclasses.replace(tiny, name="tiny2", source_file=tiny.source_file.with_name("tiny2.toml"))
    assert label_map(tiny, twin).direction == "identity"


def test_the_images_the_models_dataset_shares_are_removed_and_counted(pair):
    """A fine model on coarse: the two copies of fine images go (exactly equal; coarse records no lesions)."""
    fine, coarse = get_dataset_entry("fine"), get_dataset_entry("coarse")
    found = external_split(fine, None, coarse, "all", 24, label_map(fine, coarse))
    total = 2 * (16 + 8) + 2
    assert found.removed == {
        "checked": total, "removed": 2, "exact": 2, "near": 0, "lesion": None, "same_lesion": 0, "unmapped": 0
    }  # fmt: skip
    assert len(found.split) == total - 2 and not any("copy" in i for i in found.split.ids)
    assert found.split.images.shape == (total - 2, 3, 24, 24)
    assert sorted(set(found.split.labels.tolist())) == [0, 1]


def test_a_removed_images_lesion_goes_whole_and_unmapped_classes_are_not_scored(pair):
    """A coarse model on fine: fine_0 and fine_30 are in coarse, and fine_1 is fine_0's lesion."""
    fine, coarse = get_dataset_entry("fine"), get_dataset_entry("coarse")
    found = external_split(coarse, None, fine, "all", 24, label_map(coarse, fine))
    assert found.removed["exact"] == 2 and found.removed["same_lesion"] == 1 and found.removed["removed"] == 3
    assert not {"fine_0", "fine_1", "fine_30"} & set(found.split.ids)
    partial = external_split(coarse, None, fine, "all", 24, label_map(coarse, fine, {"a": "pos", "b": "neg"}))
    assert partial.removed["unmapped"] == PER_CLASS and partial.removed["removed"] == 3 + PER_CLASS  # all of c
    test_only = external_split(coarse, None, fine, "test", 24, label_map(coarse, fine))
    assert test_only.removed["checked"] < found.removed["checked"]


def test_entries_of_the_same_images_are_never_external(pair):
    fine, coarse = get_dataset_entry("fine"), get_dataset_entry("coarse")
    check_external(fine, coarse)  # shared images are removed; the rest is external
    with pytest.raises(ConfigError, match=r"external:coarse on fine: not external, the two are the same images"):
        check_external(dataclasses.replace(fine, same_source=("coarse",)), coarse)
    with pytest.raises(ConfigError, match="not external"):
        check_external(fine, fine)


def test_the_shipped_chest_xray_and_pneumoniamnist_are_not_external_for_each_other(monkeypatch):
    monkeypatch.delenv("BENCH_HOME", raising=False)
    chest, pneumonia = get_dataset_entry("chest_xray"), get_dataset_entry("pneumoniamnist")
    for model, data in ((chest, pneumonia), (pneumonia, chest)):
        with pytest.raises(ConfigError, match="not external"):
            check_external(model, data)
    check_external(get_dataset_entry("ham10000"), get_dataset_entry("isic"))
    mapping = label_map(get_dataset_entry("isic"), get_dataset_entry("ham10000"))
    assert mapping.direction == "data_to_model" and mapping.source == "ham10000.toml [label_maps.isic]"
