"""The dataset layer: layouts, split policies, cache, errors, and the bundled data.

Fixture datasets are built in tmp_path in each published layout (a few generated images), so these
tests say what the loaders promise without depending on the bundled copies; the last section checks
the bundled ``data/`` against the published DermaMNIST numbers.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from pathlib import Path
from textwrap import dedent

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.data._layouts import FileImages
from bench.data.entries import get_dataset_entry, list_datasets
from bench.data.loading import describe_dataset, load_dataset
from bench.errors import ConfigError, DataError
from bench.paths import project_root

HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def write_entry(home: Path, name: str, body: str) -> None:
    """Write ``datasets/<name>.toml``: the required boilerplate plus ``body``."""
    header = f'name = "{name}"\ntitle = "test data"\nlicence = "CC0"\ncitation = "none"\n'
    (home / "datasets" / f"{name}.toml").write_text(header + dedent(body))


def save_image(path: Path, seed: int, size: tuple[int, int] = (12, 10), rgb: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if rgb else (size[1], size[0])
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)


def make_class_folders(root: Path, counts: dict[str, int], split: str | None = None, rgb: bool = True) -> None:
    """``root/[split/]<class>/<class>_<i>.png`` with ``counts[class]`` images each."""
    for cls, n in counts.items():
        for i in range(n):
            save_image(
                root / (split or "") / cls / f"{cls}_{i}.png",
                seed=zlib.crc32(f"{split}/{cls}/{i}".encode()),
                rgb=rgb,
            )


def make_npz(path: Path, sizes: dict[str, int], num_classes: int = 2, rgb: bool = False) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in sizes.items():
        shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % num_classes).reshape(n, 1).astype(np.uint8)
    np.savez_compressed(path, **arrays)


def make_ham(root: Path, lesions_per_class: int = 12, seed: int = 0) -> pd.DataFrame:
    """A HAM10000-like folder: metadata CSV (1-3 images per lesion) and one image per row."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, dx in enumerate(HAM_CLASSES[:3]):
        for lesion in range(lesions_per_class):
            for _ in range(int(rng.integers(1, 4))):
                image_id = f"ISIC_{len(rows):07d}"
                rows.append({"lesion_id": f"HAM_{c}_{lesion}", "image_id": image_id, "dx": dx})
                save_image(root / "images" / f"{image_id}.jpg", seed=len(rows))
    meta = pd.DataFrame(rows)
    meta.to_csv(root / "meta.csv", index=False)
    return meta


NPZ_ENTRY = """\
layout = "npz"
path = "{path}"
classes = ["normal", "pneumonia"]
task = "binary"
color = "grayscale"
[split]
policy = "official"
"""

FOLDERS_ENTRY = """\
layout = "class_folders"
path = "{path}"
classes = ["a", "b"]
task = "binary"
color = "{color}"
[split]
policy = "{policy}"
{split}
"""

HAM_ENTRY = """\
layout = "metadata_csv"
path = "{path}"
classes = ["akiec", "bcc", "bkl"]
task = "multiclass"
[split]
policy = "{policy}"
{split}
[metadata_csv]
file = "meta.csv"
image_dir = "images"
image_suffix = ".jpg"
id_column = "image_id"
label_column = "dx"
group_column = "lesion_id"
{extra}
"""


def folders_entry(home: Path, name: str, path: Path, policy: str, split: str = "", color: str = "rgb") -> None:
    write_entry(home, name, FOLDERS_ENTRY.format(path=path, color=color, policy=policy, split=split))


def ham_entry(home: Path, name: str, path: Path, policy: str = "stratified", split: str = "", extra: str = "") -> None:
    write_entry(home, name, HAM_ENTRY.format(path=path, policy=policy, split=split, extra=extra))


# ---------------------------------------------------------------------------------------------------
# Layouts


def test_npz_official_split_is_the_file_unchanged_at_native_resolution(home: Path, tmp_path: Path) -> None:
    make_npz(tmp_path / "p.npz", {"train": 10, "val": 4, "test": 6})
    write_entry(home, "p", NPZ_ENTRY.format(path=tmp_path / "p.npz"))
    loaded = load_dataset("p", 28)
    with np.load(tmp_path / "p.npz") as npz:
        assert torch.equal(loaded.val.images[:, 0], torch.from_numpy(npz["val_images"]))
        assert loaded.test.labels.tolist() == npz["test_labels"][:, 0].tolist()
    assert loaded.train.ids[:2] == ["train/0", "train/1"]
    assert loaded.train.images.dtype == torch.uint8 and loaded.train.labels.dtype == torch.int64
    assert (len(loaded.train), len(loaded.val), len(loaded.test)) == (10, 4, 6)
    assert loaded.in_chans == 1 and loaded.num_classes == 2
    assert load_dataset("p", 32).test.images.shape == (6, 1, 32, 32)


def test_plain_class_folders_get_a_stratified_seeded_split(home: Path, tmp_path: Path) -> None:
    make_class_folders(tmp_path / "plain", {"a": 60, "b": 40})
    split = "train = 0.6\nval = 0.2\ntest = 0.2\nseed = 1"
    folders_entry(home, "plain", tmp_path / "plain", "stratified", split)
    loaded = load_dataset("plain", 16)
    assert (len(loaded.train), len(loaded.val), len(loaded.test)) == (60, 20, 20)
    for part in (loaded.train, loaded.val, loaded.test):
        assert abs(part.labels.float().mean().item() - 0.4) <= 0.05  # class b share, as in the whole set
    assert loaded.train.images.shape[1:] == (3, 16, 16)
    assert loaded.test.ids[0].startswith(("a/", "b/"))


def test_same_seed_same_split_and_different_seed_different_split(home: Path, tmp_path: Path) -> None:
    make_class_folders(tmp_path / "plain", {"a": 30, "b": 30})
    for name, seed in (("s1", 1), ("s1again", 1), ("s2", 2)):
        folders_entry(home, name, tmp_path / "plain", "stratified", f"seed = {seed}")
    s1, s1again, s2 = (load_dataset(n, 16) for n in ("s1", "s1again", "s2"))
    assert s1.split_assignment().equals(s1again.split_assignment())
    assert s1.fingerprint == s1again.fingerprint
    assert set(s1.test.ids) != set(s2.test.ids)
    assert s1.fingerprint != s2.fingerprint


def test_train_test_folders_keep_the_published_test_and_carve_val(home: Path, tmp_path: Path) -> None:
    make_class_folders(tmp_path / "cx", {"a": 20, "b": 30}, split="train", rgb=True)
    make_class_folders(tmp_path / "cx", {"a": 5, "b": 6}, split="test", rgb=True)
    (tmp_path / "cx" / "manifest.csv").write_text("path\n")  # stray files next to the folders are ignored
    folders_entry(home, "cx", tmp_path / "cx", "carve_val", "val = 0.2\nseed = 0", color="grayscale")
    loaded = load_dataset("cx", 20)
    assert sorted(loaded.test.ids) == sorted(f"test/{c}/{c}_{i}.png" for c, n in (("a", 5), ("b", 6)) for i in range(n))
    assert (len(loaded.train), len(loaded.val)) == (40, 10)
    assert all(i.startswith("train/") for i in loaded.val.ids)
    assert loaded.train.images.shape[1] == 1 and loaded.in_chans == 1  # RGB files, grayscale entry
    assert loaded.audit["published_val_merged_into_train"] == 0


def test_a_published_val_folder_is_merged_into_train_before_carving(home: Path, tmp_path: Path) -> None:
    for split, n in (("train", 20), ("val", 2), ("test", 4)):
        make_class_folders(tmp_path / "k", {"a": n, "b": n}, split=split)
    folders_entry(home, "k", tmp_path / "k", "carve_val", "val = 0.1")
    info = describe_dataset(get_dataset_entry("k"))
    assert info["published_val_merged_into_train"] == 4
    assert sum(info["split_sizes"].values()) == 52 and info["split_sizes"]["test"] == 8


def test_lesion_grouped_split_puts_no_lesion_in_two_splits(home: Path, tmp_path: Path) -> None:
    meta = make_ham(tmp_path / "ham", lesions_per_class=20)
    ham_entry(home, "ham", tmp_path / "ham", split="train = 0.7\nval = 0.1\ntest = 0.2\nseed = 3")
    loaded = load_dataset("ham", 16)
    lesion = meta.set_index("image_id")["lesion_id"]
    lesions = {
        name: set(lesion[part.ids])
        for name, part in (("train", loaded.train), ("val", loaded.val), ("test", loaded.test))
    }
    assert not lesions["train"] & lesions["val"] and not lesions["train"] & lesions["test"]
    assert not lesions["val"] & lesions["test"]
    assert loaded.audit["groups_in_multiple_splits"] == 0 and loaded.audit["groups"] == 60
    assert abs(len(loaded.test) / len(meta) - 0.2) < 0.08
    assert sorted(loaded.split_assignment()["id"]) == sorted(meta["image_id"])


def test_split_file_gives_the_official_order_and_the_leakage_audit(home: Path, tmp_path: Path) -> None:
    meta = make_ham(tmp_path / "ham", lesions_per_class=8)
    meta["split"] = np.array(["train", "train", "train", "val", "test"])[np.arange(len(meta)) % 5]
    meta["index"] = meta.groupby("split").cumcount()
    # Rows shuffled: the index column, not the row order, gives the position within a split.
    meta.sample(frac=1, random_state=0)[["split", "index", "image_id"]].to_csv(
        tmp_path / "ham" / "split.csv", index=False, lineterminator="\r\n"
    )
    ham_entry(home, "dm", tmp_path / "ham", policy="official", extra='split_file = "split.csv"')
    loaded = load_dataset("dm", 16)
    assert loaded.train.ids == meta.loc[meta["split"] == "train", "image_id"].tolist()
    assert loaded.test.ids == meta.loc[meta["split"] == "test", "image_id"].tolist()
    leaked = int((meta.groupby("lesion_id")["split"].nunique() > 1).sum())
    assert leaked > 0 and loaded.audit["groups_in_multiple_splits"] == leaked


def test_data_root_replaces_the_entry_path(home: Path, tmp_path: Path) -> None:
    make_class_folders(tmp_path / "small", {"a": 5, "b": 5})
    make_class_folders(tmp_path / "full", {"a": 10, "b": 10})
    folders_entry(home, "d", tmp_path / "small", "stratified", "train = 0.6\nval = 0.2\ntest = 0.2")
    assert sum(describe_dataset(get_dataset_entry("d"))["split_sizes"].values()) == 10
    assert sum(describe_dataset(get_dataset_entry("d"), tmp_path / "full")["split_sizes"].values()) == 20
    loaded = load_dataset("d", 16, data_root=tmp_path / "full")
    assert len(loaded.train) + len(loaded.val) + len(loaded.test) == 20


def test_sixteen_bit_images_are_stretched_not_clipped(home: Path, tmp_path: Path) -> None:
    for cls in ("a", "b"):
        for i in range(3):
            values = np.linspace(0, 4095, 64, dtype=np.uint16).reshape(8, 8)  # 12-bit data in 16-bit PNG
            (tmp_path / "x" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(values).save(tmp_path / "x" / cls / f"{i}.png")
    folders_entry(home, "x", tmp_path / "x", "stratified", "train = 0.34\nval = 0.33\ntest = 0.33", color="grayscale")
    image = load_dataset("x", 8).train.images[0, 0]
    assert image.min().item() == 0 and image.max().item() == 255


def test_split_assignment_lists_every_image_once(home: Path, tmp_path: Path) -> None:
    make_npz(tmp_path / "p.npz", {"train": 6, "val": 2, "test": 4})
    write_entry(home, "p", NPZ_ENTRY.format(path=tmp_path / "p.npz"))
    frame = load_dataset("p", 28).split_assignment()
    assert list(frame.columns) == ["id", "split", "label"]
    assert frame["split"].value_counts().to_dict() == {"train": 6, "test": 4, "val": 2}
    assert frame["id"].is_unique


# ---------------------------------------------------------------------------------------------------
# Cache


def test_second_load_reads_the_cache_without_decoding(
    home: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_class_folders(tmp_path / "c", {"a": 6, "b": 6})
    folders_entry(home, "c", tmp_path / "c", "stratified", "train = 0.5\nval = 0.25\ntest = 0.25")
    calls = []
    decode = FileImages.decode
    monkeypatch.setattr(FileImages, "decode", lambda self, keys, spec: calls.append(1) or decode(self, keys, spec))
    first = load_dataset("c", 16)
    second = load_dataset("c", 16)
    assert len(calls) == 1
    assert torch.equal(first.train.images[:], second.train.images[:]) and first.fingerprint == second.fingerprint
    assert first.audit["pixels_sha256"] == second.audit["pixels_sha256"]
    assert len(list(cache.glob("*.npy"))) == 1
    load_dataset("c", 20)  # another resolution is another cache file
    save_image(tmp_path / "c" / "a" / "a_0.png", seed=999, size=(14, 10))  # a changed file is seen
    changed = load_dataset("c", 16)
    assert len(calls) == 3 and changed.fingerprint == first.fingerprint
    assert changed.audit["pixels_sha256"] != first.audit["pixels_sha256"]


def test_the_grouped_split_is_computed_once_per_table_and_split_spec(
    home: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold start's slowest step (StratifiedGroupKFold) is cached: another resolution reuses it, another
    seed or a changed table is computed anew."""
    import bench.data.splits as splits

    make_ham(tmp_path / "ham", lesions_per_class=6)
    ham_entry(home, "ham", tmp_path / "ham", split="train = 0.6\nval = 0.2\ntest = 0.2")
    ham_entry(home, "ham_seed5", tmp_path / "ham", split="train = 0.6\nval = 0.2\ntest = 0.2\nseed = 5")
    computed = []
    compute = splits._compute_splits
    monkeypatch.setattr(
        splits, "_compute_splits", lambda entry, table: computed.append(entry.name) or compute(entry, table)
    )
    first = load_dataset("ham", 16)
    again = load_dataset("ham", 20)  # another resolution: the same split, read from its cache file
    assert computed == ["ham"] and list(again.test.ids) == list(first.test.ids)
    load_dataset("ham_seed5", 16)
    assert computed == ["ham", "ham_seed5"] and len(list((cache / "splits").glob("*.npy"))) == 2
    meta = pd.read_csv(tmp_path / "ham" / "meta.csv")
    meta.loc[0, "lesion_id"] = "a_new_lesion"  # another grouping: the cached split no longer applies
    meta.to_csv(tmp_path / "ham" / "meta.csv", index=False)
    load_dataset("ham", 16)
    assert computed == ["ham", "ham_seed5", "ham"]


def test_entries_sharing_images_share_the_cache(home: Path, tmp_path: Path, cache: Path) -> None:
    make_ham(tmp_path / "ham", lesions_per_class=6)
    ham_entry(home, "ham", tmp_path / "ham", split="train = 0.6\nval = 0.2\ntest = 0.2")
    ham_entry(home, "ham_again", tmp_path / "ham", split="train = 0.6\nval = 0.2\ntest = 0.2\nseed = 5")
    load_dataset("ham", 16)
    load_dataset("ham_again", 16)
    assert len(list(cache.glob("*.npy"))) == 1


def test_a_corrupt_cache_file_is_ignored_and_rewritten(home: Path, tmp_path: Path, cache: Path) -> None:
    make_class_folders(tmp_path / "c", {"a": 3, "b": 3})
    folders_entry(home, "c", tmp_path / "c", "stratified", "train = 0.34\nval = 0.33\ntest = 0.33")
    first = load_dataset("c", 16)
    expected = first.test.images[:]  # read now: ``first`` reads the file it opened, which is garbled next
    (cached,) = cache.glob("*.npy")
    cached.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="ignoring unreadable image cache"):
        again = load_dataset("c", 16)
    assert torch.equal(expected, again.test.images[:])
    assert load_dataset("c", 16).audit["pixels_sha256"] == first.audit["pixels_sha256"]


# ---------------------------------------------------------------------------------------------------
# Bad data: one-line DataError naming the culprit, and nothing already computed is lost


def expect_data_error(name: str, match: str) -> None:
    with pytest.raises(DataError, match=match) as caught:
        load_dataset(name, 16)
    assert "\n" not in str(caught.value)


def test_missing_metadata_column(home: Path, tmp_path: Path) -> None:
    make_ham(tmp_path / "ham")
    meta = pd.read_csv(tmp_path / "ham" / "meta.csv").drop(columns="dx")
    meta.to_csv(tmp_path / "ham" / "meta.csv", index=False)
    ham_entry(home, "ham", tmp_path / "ham")
    expect_data_error("ham", r"meta\.csv: missing column 'dx'")


def test_image_listed_but_absent(home: Path, tmp_path: Path) -> None:
    meta = make_ham(tmp_path / "ham")
    (tmp_path / "ham" / "images" / f"{meta['image_id'][3]}.jpg").unlink()
    ham_entry(home, "ham", tmp_path / "ham")
    expect_data_error("ham", rf"1 listed image\(s\) absent from .*images, e\.g\. '{meta['image_id'][3]}\.jpg'")


def test_label_not_in_the_class_list(home: Path, tmp_path: Path) -> None:
    make_ham(tmp_path / "ham")
    meta = pd.read_csv(tmp_path / "ham" / "meta.csv")
    meta.loc[5, "dx"] = "melanoma"
    meta.to_csv(tmp_path / "ham" / "meta.csv", index=False)
    ham_entry(home, "ham", tmp_path / "ham")
    expect_data_error("ham", r"label 'melanoma' in column 'dx' is not in the class list")


def test_class_folder_not_in_the_class_list(home: Path, tmp_path: Path) -> None:
    make_class_folders(tmp_path / "c", {"a": 3, "b": 3, "other": 1})
    folders_entry(home, "c", tmp_path / "c", "stratified")
    expect_data_error("c", r"folder 'other' is not in the class list \(a, b\)")


def test_npz_label_not_in_the_class_list(home: Path, tmp_path: Path) -> None:
    make_npz(tmp_path / "p.npz", {"train": 6, "val": 3, "test": 3}, num_classes=3)
    write_entry(home, "p", NPZ_ENTRY.format(path=tmp_path / "p.npz"))
    expect_data_error("p", r"p\.npz: train_labels holds label 2, not in the class list")


def test_image_that_does_not_decode_keeps_other_caches(home: Path, tmp_path: Path, cache: Path) -> None:
    make_class_folders(tmp_path / "good", {"a": 3, "b": 3})
    folders_entry(home, "good", tmp_path / "good", "stratified", "train = 0.34\nval = 0.33\ntest = 0.33")
    load_dataset("good", 16)
    before = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()}
    make_class_folders(tmp_path / "bad", {"a": 3, "b": 3})
    (tmp_path / "bad" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    folders_entry(home, "bad", tmp_path / "bad", "stratified", "train = 0.5\nval = 0.25\ntest = 0.25")
    expect_data_error("bad", r"cannot decode image .*broken\.png")
    assert all(p.read_bytes() == content for p, content in before.items())
    assert not list(cache.glob("bad-*.npy")) and not list(cache.glob(".*.tmp"))


def test_class_with_no_images_in_a_split(home: Path, tmp_path: Path) -> None:
    make_class_folders(tmp_path / "cx", {"a": 10, "b": 10}, split="train")
    make_class_folders(tmp_path / "cx", {"a": 4}, split="test")
    folders_entry(home, "cx", tmp_path / "cx", "carve_val")
    expect_data_error("cx", r"class 'b' has no images in the test split \(10 in the whole dataset\)")


def test_class_too_small_to_stratify(home: Path, tmp_path: Path) -> None:
    make_class_folders(tmp_path / "c", {"a": 10, "b": 1})
    folders_entry(home, "c", tmp_path / "c", "stratified")
    expect_data_error("c", r"class 'b' has only 1 image in train")


def test_npz_without_the_expected_keys(home: Path, tmp_path: Path) -> None:
    make_npz(tmp_path / "p.npz", {"train": 4, "test": 4})
    write_entry(home, "p", NPZ_ENTRY.format(path=tmp_path / "p.npz"))
    expect_data_error("p", r"p\.npz: missing key 'val_images'")


def _cut(keep: float):
    return lambda data: data[: int(len(data) * keep)]


def _zeroed(start: int, stop: int):
    return lambda data: data[:start] + bytes(stop - start) + data[stop:]


# damage to the npz's bytes -> why it cannot be read (numpy's EOFError on 0 bytes read as Ctrl-D on the CLI)
DAMAGED_NPZ = {
    "empty": (_cut(0), "No data left in file"),
    "truncated": (_cut(0.5), "File is not a zip file"),
    "pixels-corrupt": (_zeroed(20000, 20100), "Bad CRC-32 for file 'train_images.npy'"),  # past the headers read
}


@pytest.mark.parametrize(("damage", "reason"), DAMAGED_NPZ.values(), ids=DAMAGED_NPZ.keys())
def test_a_damaged_npz_is_one_line_naming_it(home: Path, tmp_path: Path, damage, reason: str) -> None:
    path = tmp_path / "p.npz"
    make_npz(path, {"train": 60, "val": 20, "test": 20})
    write_entry(home, "p", NPZ_ENTRY.format(path=path))
    path.write_bytes(damage(path.read_bytes()))
    expect_data_error("p", f"^cannot read npz file {re.escape(str(path))}: {re.escape(reason)}$")


def test_an_empty_split_cache_is_computed_again(home: Path, tmp_path: Path, cache: Path) -> None:
    make_npz(tmp_path / "p.npz", {"train": 10, "val": 4, "test": 6})
    write_entry(home, "p", NPZ_ENTRY.format(path=tmp_path / "p.npz"))
    first = load_dataset("p", 28)
    (cached,) = (cache / "splits").glob("*.npy")
    cached.write_bytes(b"")  # np.load raises EOFError, which no reader of a cache expected
    assert list(load_dataset("p", 20).test.ids) == list(first.test.ids)


def test_empty_folder(home: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    folders_entry(home, "e", tmp_path / "empty", "stratified")
    expect_data_error("e", r"empty: empty folder, no class or split folders found")


def test_empty_class_folders(home: Path, tmp_path: Path) -> None:
    (tmp_path / "e" / "a").mkdir(parents=True)
    (tmp_path / "e" / "b").mkdir()
    folders_entry(home, "e", tmp_path / "e", "stratified")
    expect_data_error("e", r"dataset 'e': no images found under")


def test_path_that_does_not_exist_names_entry_and_path(home: Path, tmp_path: Path) -> None:
    folders_entry(home, "gone", tmp_path / "nowhere", "stratified")
    expect_data_error("gone", r"dataset 'gone': path .*nowhere does not exist; download .* --data-root")
    with pytest.raises(DataError, match=r"path .*elsewhere does not exist; check --data-root"):
        load_dataset("gone", 16, data_root=tmp_path / "elsewhere")


def test_a_file_where_a_folder_is_needed(home: Path, tmp_path: Path) -> None:
    (tmp_path / "file.zip").write_bytes(b"")
    folders_entry(home, "z", tmp_path / "file.zip", "stratified")
    expect_data_error("z", r"dataset 'z': .*file\.zip is a file; layout 'class_folders' needs a folder")


def test_official_policy_on_unsplit_folders(home: Path, tmp_path: Path) -> None:
    make_class_folders(tmp_path / "c", {"a": 3, "b": 3})
    folders_entry(home, "c", tmp_path / "c", "official")
    expect_data_error("c", r"policy 'official' needs a published train/val/test split, but the data has no split")


# ---------------------------------------------------------------------------------------------------
# Bad entries: ConfigError naming file and field


def expect_config_error(home: Path, body: str, match: str) -> None:
    (home / "datasets" / "bad.toml").write_text(body)
    with pytest.raises(ConfigError, match=match) as caught:
        get_dataset_entry("bad")
    assert "bad.toml" in str(caught.value) and "\n" not in str(caught.value)


GOOD = dedent(
    """\
    name = "bad"
    title = "t"
    layout = "class_folders"
    path = "somewhere"
    classes = ["a", "b"]
    task = "binary"
    licence = "x"
    citation = "y"
    [split]
    policy = "stratified"
    """
)
CSV_GOOD = GOOD.replace('"class_folders"', '"metadata_csv"') + dedent(
    """\
    [metadata_csv]
    file = "meta.csv"
    image_dir = "images"
    id_column = "image_id"
    label_column = "dx"
    """
)


def test_good_entry_parses_with_defaults(home: Path) -> None:
    (home / "datasets" / "bad.toml").write_text(GOOD)
    entry = get_dataset_entry("bad")
    assert entry.path == home / "somewhere" and entry.classes == ("a", "b")
    assert (entry.color, entry.resize, entry.crop) == ("rgb", "bilinear", "none")
    assert (entry.split.train, entry.split.val, entry.split.test, entry.split.seed) == (0.7, 0.1, 0.2, 0)
    assert entry.source_file == home / "datasets" / "bad.toml"
    assert {"bad", "isic"} <= {e.name for e in list_datasets()}  # BENCH_HOME's entries add to the shipped
    (home / "datasets" / "bad.toml").write_text(CSV_GOOD)
    csv = get_dataset_entry("bad").metadata_csv
    assert (csv.file, csv.image_dir, csv.id_column, csv.label_column) == ("meta.csv", "images", "image_id", "dx")
    assert (csv.image_suffix, csv.group_column, csv.split_file) == ("", None, None)


@pytest.mark.parametrize(
    ("policy", "settings", "split"),
    [
        ("official", "", (None, None, None, None)),
        ("carve_val", "", (None, 0.1, None, 0)),
        ("carve_val", "val = 0.25\nseed = 4\n", (None, 0.25, None, 4)),
        ("stratified", "train = 0.6\ntest = 0.3\n", (0.6, 0.1, 0.3, 0)),
    ],
)
def test_split_defaults_follow_the_policy(home: Path, policy: str, settings: str, split: tuple) -> None:
    """A setting the policy does not use stays None (the split cache key and the audit's split_seed say so)."""
    (home / "datasets" / "bad.toml").write_text(GOOD.replace('"stratified"', f'"{policy}"') + settings)
    spec = get_dataset_entry("bad").split
    assert (spec.train, spec.val, spec.test, spec.seed) == split
    assert all(isinstance(v, float) for v in (spec.train, spec.val, spec.test) if v is not None)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (GOOD.replace('task = "binary"', 'task = "binary'), r"invalid TOML: .*line 6"),
        (GOOD.replace("classes", "clases"), r"unknown field 'clases' \(did you mean 'classes'\?\)"),
        (GOOD.replace('citation = "y"\n', ""), r"field 'citation' is missing"),
        (
            GOOD.replace('layout = "class_folders"', 'layout = "folders"'),
            r"field 'layout' is 'folders'; expected",
        ),
        (
            GOOD.replace('["a", "b"]', '["a", "b", "c"]'),
            r"field 'classes' must have 2 names for task 'binary'",
        ),
        (GOOD.replace('["a", "b"]', '["a", "a"]'), r"field 'classes' has duplicate names"),
        (GOOD.replace('["a", "b"]', '["a", ""]'), r"field 'classes' must be a non-empty list of class names"),
        (GOOD.replace('["a", "b"]', '["a", 2]'), r"field 'classes\[1\]' must be str, got 2"),
        (GOOD.replace('"somewhere"', "3"), r"field 'path' must be a path string, got 3"),
        (GOOD + "sed = 1\n", r"unknown field 'split.sed' \(did you mean 'split.seed'\?\)"),
        ('source_file = "x"\n' + GOOD, r"unknown field 'source_file'"),
        (GOOD.replace('[split]\npolicy = "stratified"\n', ""), r"'split' is missing \(a table with at least 'policy'"),
        (GOOD + "val = 1\n", r"field 'split.val' is 1.0; a fraction must be between 0 and 1"),
        (GOOD.replace('name = "bad"', 'name = "other"'), r"field 'name' is 'other' but must equal"),
        (GOOD + "train = 0.5\n", r"field 'split.train' \+ val \+ test must sum to 1"),
        (GOOD + "seed = -1\n", r"field 'split.seed' is -1; a seed must be 0 or more"),
        (GOOD + "seed = 1.5\n", r"field 'split.seed' must be int, got 1.5"),
        (
            GOOD.replace('"stratified"', '"official"') + "seed = 1\n",
            r"field 'split.seed' is only for policy 'carve_val' or 'stratified', not 'official'",
        ),
        (GOOD + "[metadata_csv]\nfile = 'x'\n", r"field 'metadata_csv' is only for layout 'metadata_csv'"),
        (GOOD.replace('"class_folders"', '"metadata_csv"'), r"field 'metadata_csv' is missing"),
        (CSV_GOOD.replace('image_dir = "images"\n', ""), r"field 'metadata_csv.image_dir' is missing"),
        (CSV_GOOD + 'split_file = "s.csv"\n', r"'metadata_csv.split_file' is set: policy 'stratified' does not use it"),
        (
            CSV_GOOD.replace('"stratified"', '"official"'),
            r"field 'metadata_csv.split_file' is missing: policy 'official' needs it",
        ),
    ],
)
def test_malformed_entries(home: Path, body: str, match: str) -> None:
    expect_config_error(home, body, match)


def test_unknown_dataset_suggests_close_names(home: Path) -> None:
    (home / "datasets" / "ham10000.toml").write_text(GOOD.replace('"bad"', '"ham10000"'))
    with pytest.raises(
        ConfigError, match=r"unknown dataset 'ham1000'; did you mean 'ham10000' or 'ham10000-minus-isic'\?"
    ):
        get_dataset_entry("ham1000")


def test_bad_resolution(home: Path) -> None:
    (home / "datasets" / "bad.toml").write_text(GOOD)
    with pytest.raises(ConfigError, match="resolution"):
        load_dataset("bad", 0)


# ---------------------------------------------------------------------------------------------------
# The bundled data/


DERMAMNIST_COUNTS = {
    "train": [228, 359, 769, 80, 779, 4693, 99],
    "val": [33, 52, 110, 12, 111, 671, 14],
    "test": [66, 103, 220, 23, 223, 1341, 29],
}


def test_bundled_entries_are_listed_with_provenance() -> None:
    entries = {e.name: e for e in list_datasets()}
    assert {"pneumoniamnist", "dermamnist", "ham10000", "isic", "chest_xray"} <= set(entries)
    for name in ("pneumoniamnist", "dermamnist", "ham10000", "isic", "chest_xray"):
        entry = entries[name]
        assert entry.path.is_relative_to(project_root() / "data") and entry.path.exists()
        assert entry.licence and entry.citation and entry.shares_source_with
    assert "chest_xray" in entries["pneumoniamnist"].shares_source_with
    assert entries["ham10000"].classes == tuple(HAM_CLASSES) == entries["dermamnist"].classes


def test_bundled_dermamnist_has_the_official_split_and_its_leakage() -> None:
    info = describe_dataset(get_dataset_entry("dermamnist"))
    assert info["split_sizes"] == {"train": 7007, "val": 1003, "test": 2005}
    assert {s: list(c.values()) for s, c in info["class_counts"].items()} == DERMAMNIST_COUNTS
    assert info["groups_in_multiple_splits"] == 1006
    assert info["groups_by_splits"] == {
        "train+test": 601,
        "train+val": 292,
        "train+val+test": 40,
        "val+test": 73,
    }
    assert (info["test_images_with_group_in_train"], info["val_images_with_group_in_train"]) == (693, 348)


def test_bundled_ham10000_split_is_lesion_disjoint() -> None:
    info = describe_dataset(get_dataset_entry("ham10000"))
    assert info["groups_in_multiple_splits"] == 0 and info["groups"] == 7470
    assert sum(info["split_sizes"].values()) == 10015
    assert abs(info["split_sizes"]["test"] / 10015 - 0.2) < 0.01


def test_bundled_class_folder_counts() -> None:
    chest = describe_dataset(get_dataset_entry("chest_xray"))
    assert chest["class_counts"]["test"] == {"NORMAL": 234, "PNEUMONIA": 390}
    assert chest["split_sizes"]["train"] + chest["split_sizes"]["val"] == 1341 + 3875
    isic = describe_dataset(get_dataset_entry("isic"))
    assert isic["class_counts"]["test"] == {"benign": 122, "malignant": 102}


def test_bundled_pneumoniamnist_is_the_official_file() -> None:
    path = get_dataset_entry("pneumoniamnist").path
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "e1792d3f03751cb101e99f19a63b3c1941436c988665f47853417b05be250cd8"
    info = describe_dataset(get_dataset_entry("pneumoniamnist"))
    assert info["split_sizes"] == {"train": 4708, "val": 524, "test": 624}


@pytest.mark.slow
def test_bundled_dermamnist_decodes_at_28_pixels() -> None:
    loaded = load_dataset("dermamnist", 28)
    assert loaded.train.images.shape == (7007, 3, 28, 28) and loaded.test.images.shape == (2005, 3, 28, 28)
    assert np.bincount(loaded.val.labels.numpy()).tolist() == DERMAMNIST_COUNTS["val"]
    assert loaded.audit["groups_in_multiple_splits"] == 1006


# ---------------------------------------------------------------------------------------------------
# A protocol's own split (``split = "70/20/10"``: bench.data.entries.with_split)


def test_a_70_20_10_split_pools_a_published_split(home: Path, tmp_path: Path) -> None:
    from bench.data.entries import with_split

    make_class_folders(tmp_path / "xr", {"a": 40, "b": 60}, split="train")
    make_class_folders(tmp_path / "xr", {"a": 20, "b": 30}, split="test")
    folders_entry(home, "xr", tmp_path / "xr", "carve_val", "val = 0.1")
    entry = get_dataset_entry("xr")
    assert with_split(entry, "dataset") is entry
    loaded = load_dataset(with_split(entry, "70/20/10"), 16)
    assert len(loaded.test) == 15 and abs(len(loaded.val) - 30) <= 1 and len(loaded.train) + len(loaded.val) == 135
    assert loaded.audit["split_policy"] == "stratified"
    assert loaded.audit["class_counts"]["test"] == {"a": 6, "b": 9}  # stratified by class
    assert loaded.fingerprint != load_dataset(entry, 16).fingerprint


def test_a_70_20_10_split_keeps_lesions_whole(home: Path, tmp_path: Path) -> None:
    from bench.data.entries import with_split

    meta = make_ham(tmp_path / "ham", lesions_per_class=20)
    ham_entry(home, "ham", tmp_path / "ham", split="train = 0.7\nval = 0.1\ntest = 0.2\nseed = 3")
    loaded = load_dataset(with_split(get_dataset_entry("ham"), "70/20/10"), 16)
    assert loaded.audit["groups_in_multiple_splits"] == 0 and loaded.audit["split_seed"] == 3
    assert abs(len(loaded.test) / len(meta) - 0.1) < 0.05 and abs(len(loaded.val) / len(meta) - 0.2) < 0.08
