"""A folder of class folders is a dataset: the entry inferred from it, its checks, and its identity."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.config import is_folder_ref
from bench.data.entries import parse_entry
from bench.data.folder import dataset_entry, entry_toml, folder_name, infer_entry, resolve_dataset
from bench.data.identity import data_identity, forget
from bench.data.loading import load_dataset
from bench.errors import ConfigError, DataError


def write_images(folder: Path, n: int, value: int, mode: str = "RGB", start: int = 0) -> None:
    """``n`` 12x12 PNGs of brightness ``value`` (with noise) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value + start)
    for i in range(start, start + n):
        shape = (12, 12, 3) if mode == "RGB" else (12, 12)
        Image.fromarray(rng.normal(value, 20, shape).clip(0, 255).astype(np.uint8), mode).save(folder / f"{i}.png")


def classes_folder(root: Path, classes: dict[str, int], mode: str = "RGB") -> Path:
    for i, (name, n) in enumerate(classes.items()):
        write_images(root / name, n, 60 + 60 * i, mode)
    return root


def split_folder(root: Path, splits: tuple[str, ...] = ("train", "test"), n: int = 6) -> Path:
    for split in splits:
        classes_folder(root / split, {"benign": n, "malignant": n})
    return root


def test_one_folder_of_classes_is_split_stratified_and_reads_like_an_entry(home, tmp_path):
    root = classes_folder(tmp_path / "My Photos", {"dog": 10, "cat": 10, "bird": 10})
    entry = infer_entry(root)
    assert entry.name == "My_Photos"
    assert entry.classes == ("bird", "cat", "dog")  # sorted: the label order does not depend on the file system
    assert entry.task == "multiclass" and entry.color == "rgb" and entry.path == root
    assert (entry.split.policy, entry.split.train, entry.split.val, entry.split.test, entry.split.seed) == (
        "stratified", 0.7, 0.1, 0.2, 0,
    )  # fmt: skip
    data = load_dataset(entry, 16)
    assert (len(data.test), len(data.train) + len(data.val)) == (6, 24)  # 20 % test, the rest train and val
    assert set(data.val.labels.tolist()) == {0, 1, 2}  # stratified: every class in every split
    assert data.audit["split"].startswith("stratified 70%/10%/20% of all images (split seed 0")


def test_train_test_folders_keep_their_split_and_carve_val(home, tmp_path):
    entry = infer_entry(split_folder(tmp_path / "derm"))
    assert entry.task == "binary" and entry.positive == "malignant"
    assert (entry.split.policy, entry.split.val) == ("carve_val", 0.1)
    data = load_dataset(entry, 16)
    assert len(data.test) == 12 and len(data.train) + len(data.val) == 12
    assert all(i.startswith("test/") for i in data.test.ids)


def test_given_val_folder_is_the_official_split(home, tmp_path):
    entry = infer_entry(split_folder(tmp_path / "derm", ("train", "val", "test"), n=2))
    assert entry.split.policy == "official"
    assert len(load_dataset(entry, 16).val) == 4


def test_single_channel_images_make_a_grayscale_entry(home, tmp_path):
    root = classes_folder(tmp_path / "xray", {"normal": 3, "pneumonia": 3}, mode="L")
    assert infer_entry(root).color == "grayscale"
    write_images(root / "normal", 1, 90, mode="RGB", start=10)  # one colour image: read as rgb
    assert infer_entry(root).color == "rgb"


def test_printed_toml_saved_as_an_entry_is_the_same_entry_and_identity(home, tmp_path):
    """Saving the printed block as datasets/NAME.toml registers the same dataset: the run keys stay."""
    entry = infer_entry(split_folder(tmp_path / "derm"))
    (home / "datasets" / "derm.toml").write_text(entry_toml(entry))
    saved = parse_entry(home / "datasets" / "derm.toml")
    assert saved == entry
    inferred = data_identity("derm", 16, str(tmp_path / "derm"))
    assert data_identity("derm", 16) == inferred  # now read as the registered entry


def test_identity_follows_the_folder_content(home, tmp_path):
    root = classes_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    before = data_identity("pets", 16, str(root))
    assert before.entry.name == "pets" and before.fingerprint
    write_images(root / "dog", 1, 200, start=50)
    forget()
    after = data_identity("pets", 16, str(root))
    assert after.fingerprint != before.fingerprint


def with_file(name: str, text: str) -> Callable[[Path], object]:
    """Two good classes, then ``name`` (under the root) written with ``text``."""
    return lambda r: (classes_folder(r, {"cat": 4, "dog": 4}), (r / name).write_text(text))


def huge_png(path: Path, side: int = 20000) -> Path:
    """A PNG whose header says ``side`` x ``side`` (no pixel data): past PIL's decompression-bomb limit on open."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def renamed_test_class(r: Path) -> None:
    split_folder(r)
    (r / "test" / "benign").rename(r / "test" / "other")


def too_few_to_carve(r: Path) -> None:
    classes_folder(r / "train", {"a": 1, "b": 2})
    classes_folder(r / "test", {"a": 1, "b": 1})


BAD_FOLDERS = {
    "empty": (lambda r: r.mkdir(), "no class subfolders"),
    "a-file": (lambda r: r.write_bytes(b"npz"), "a file, not a folder of class folders"),
    "one-class": (lambda r: classes_folder(r, {"cat": 4}), r"one class folder only \('cat'\)"),
    "one-image": (lambda r: classes_folder(r, {"cat": 4, "dog": 1}), "dog: 1 image; a class needs at least 3"),
    "empty-class": (lambda r: classes_folder(r, {"cat": 4, "dog": 0}), "dog: 0 images"),
    "text-file": (with_file("cat/notes.txt", "x"), "notes.txt: not an image"),
    "broken-png": (with_file("dog/9.png", "x"), "cannot decode image .*9.png: cannot identify image file"),
    "huge-png": (
        lambda r: (classes_folder(r, {"cat": 4, "dog": 4}), huge_png(r / "dog" / "9.png")),
        r"cannot decode image .*9.png: Image size \(400000000 pixels\) exceeds limit",
    ),
    "no-test": (lambda r: classes_folder(r / "train", {"cat": 4, "dog": 4}), "has train/ but no test/"),
    "mixed": (
        lambda r: (split_folder(r), classes_folder(r / "extra", {"a": 3})),
        r"mixes split folders \(test, train\)",
    ),
    "class-missing": (renamed_test_class, "test: no folder for class 'benign'"),
    "carve-needs-2": (too_few_to_carve, "train/a: 1 image"),
}


@pytest.mark.parametrize(("build", "message"), BAD_FOLDERS.values(), ids=BAD_FOLDERS.keys())
def test_bad_folders_are_one_line_errors_naming_the_path(home, tmp_path, build, message):
    root = tmp_path / "bad"
    build(root)
    with pytest.raises(DataError, match=message) as err:
        infer_entry(root)
    assert str(root) in str(err.value) and "\n" not in str(err.value)


def test_an_image_past_pils_pixel_limit_is_the_same_line_in_a_folder_and_through_an_entry(home, tmp_path):
    """Issue 28: a bare folder's header check let PIL's DecompressionBombError out as a traceback."""
    root = classes_folder(tmp_path / "pets", {"cat": 10, "dog": 10}, mode="L")
    entry = entry_toml(infer_entry(root))
    (home / "datasets" / "pets.toml").write_text(entry)
    huge_png(root / "dog" / "99.png")
    forget()
    with pytest.raises(DataError) as from_folder:
        infer_entry(root)
    with pytest.raises(DataError) as from_entry:
        load_dataset("pets", 16)
    expected = (
        f"cannot decode image {root / 'dog' / '99.png'}: Image size (400000000 pixels) exceeds limit of "
        f"{2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression bomb DOS attack."
    )
    assert str(from_folder.value) == str(from_entry.value) == expected


def test_values_that_read_as_paths_are_folders_and_bare_words_are_names():
    assert [is_folder_ref(v) for v in ("./isic", "data/isic", "~/x", ".", "isic", "my_photos")] == [
        True, True, True, True, False, False,
    ]  # fmt: skip


def test_folder_names_are_stable_identifiers(tmp_path):
    assert folder_name(tmp_path / "skin lesions (2024)") == "skin_lesions_2024"
    assert folder_name(tmp_path / "ok-name.v2") == "ok-name.v2"
    with pytest.raises(ConfigError, match="cannot make a dataset name"):
        folder_name(tmp_path / "((()))")


def test_a_registered_entrys_own_folder_is_that_entry_and_another_of_its_name_is_refused(home, tmp_path):
    root = split_folder(tmp_path / "data" / "derm")
    (home / "datasets" / "derm.toml").write_text(entry_toml(infer_entry(root)))
    assert resolve_dataset(str(root)) == ("derm", None)
    other = split_folder(tmp_path / "elsewhere" / "derm")
    with pytest.raises(ConfigError, match=r"the folder's name 'derm' is the registered dataset .*--data-root"):
        resolve_dataset(str(other))


def test_a_folder_resolves_to_its_name_and_path_and_the_spec_alone_finds_the_entry(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    classes_folder(tmp_path / "pets", {"cat": 4, "dog": 4})
    name, root = resolve_dataset("./pets")
    assert (name, root) == ("pets", str(tmp_path / "pets"))
    assert dataset_entry(name, root) == infer_entry(tmp_path / "pets")
    with pytest.raises(ConfigError, match="unknown dataset 'pets'.*pass ./pets"):
        dataset_entry("pets")  # without its folder a name is looked up in the registry only
