"""The decode cache as a file read by row: chunked writing, reading by index like a tensor, unwritable caches."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import folders_entry, make_class_folders

from bench.data import _layouts
from bench.data.images import ImageFile, ImageRows, write_images
from bench.data.loading import load_dataset


def images_file(images: np.ndarray, chunk: int) -> tuple[ImageFile, str]:
    fh = io.BytesIO()
    sha = write_images(fh, images.shape, (images[i : i + chunk] for i in range(0, len(images), chunk)))
    return ImageFile(fh, images.shape), sha


IMAGES = np.random.default_rng(0).integers(0, 256, (10, 3, 4, 4), dtype=np.uint8)


@pytest.mark.parametrize("chunk", [1, 3, 10])
def test_chunked_writing_gives_the_stacked_arrays_bytes_and_digest(chunk):
    file, sha = images_file(IMAGES, chunk)
    assert sha == hashlib.sha256(IMAGES).hexdigest()
    assert torch.equal(file.read(np.arange(10)), torch.from_numpy(IMAGES))


def test_writing_fewer_images_than_keys_fails():
    with pytest.raises(ValueError, match="9 images were decoded for 10 keys"):
        write_images(io.BytesIO(), IMAGES.shape, [IMAGES[:9]])


def test_a_file_of_another_shape_or_size_is_refused():
    fh = io.BytesIO()
    write_images(fh, IMAGES.shape, [IMAGES])
    with pytest.raises(ValueError, match=r"not uint8 \(11, 3, 4, 4\)"):
        ImageFile(fh, (11, 3, 4, 4))
    fh.truncate(len(fh.getvalue()) - 1)
    with pytest.raises(ValueError, match="its header says"):
        ImageFile(fh, IMAGES.shape)


# view rows (a shuffled subset, as a split is), then the indices a loop, a test or a report uses
ROWS = np.array([7, 2, 3, 4, 9, 0])
INDICES = [slice(None), slice(1, 4), torch.tensor([5, 0, 0, 2]), 3, (slice(None), 0), (2, 1, slice(0, 2))]


@pytest.mark.parametrize("index", INDICES, ids=[str(i) for i in INDICES])
def test_rows_index_like_the_tensor_they_stand_for(index):
    view = ImageRows(images_file(IMAGES, 4)[0], ROWS)
    tensor = torch.from_numpy(IMAGES)[torch.from_numpy(ROWS)]
    assert torch.equal(view[index], tensor[index])
    assert view.shape == tensor.shape and len(view) == len(tensor) and view.numel() == tensor.numel()
    assert view.dtype == tensor.dtype and view.element_size() == 1 and view.to("cpu") is view


def test_a_dataset_decoded_in_many_chunks_is_the_same_dataset(home: Path, tmp_path: Path, cache: Path, monkeypatch):
    make_class_folders(tmp_path / "c", {"a": 6, "b": 6})
    folders_entry(home, "c", tmp_path / "c", "stratified", "train = 0.5\nval = 0.25\ntest = 0.25")
    whole = load_dataset("c", 16)
    expected = {split: getattr(whole, split).images[:] for split in ("train", "val", "test")}
    for path in cache.glob("*.np*"):
        path.unlink()
    monkeypatch.setattr(_layouts, "CHUNK_BYTES", 5 * 3 * 16 * 16)  # 5 images a chunk: 3 chunks
    chunked = load_dataset("c", 16)
    assert chunked.audit["pixels_sha256"] == whole.audit["pixels_sha256"]
    for split, images in expected.items():
        assert torch.equal(getattr(chunked, split).images[:], images)


def test_a_cache_that_cannot_be_written_decodes_into_a_temporary_file(home: Path, tmp_path: Path, monkeypatch):
    make_class_folders(tmp_path / "c", {"a": 4, "b": 4})
    folders_entry(home, "c", tmp_path / "c", "stratified", "train = 0.5\nval = 0.25\ntest = 0.25")
    expected = load_dataset("c", 16)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("BENCH_CACHE", str(blocker / "cache"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_dataset("c", 16)
    assert any("continuing without this cache file" in str(w.message) for w in caught)
    assert loaded.audit["pixels_sha256"] == expected.audit["pixels_sha256"]
    assert torch.equal(loaded.train.images[:], expected.train.images[:])


def test_a_cache_without_its_sidecar_is_decoded_again(home: Path, tmp_path: Path, cache: Path, monkeypatch):
    make_class_folders(tmp_path / "c", {"a": 4, "b": 4})
    folders_entry(home, "c", tmp_path / "c", "stratified", "train = 0.5\nval = 0.25\ntest = 0.25")
    first = load_dataset("c", 16)
    (sidecar,) = cache.glob("*.json")
    sidecar.unlink()  # as a process killed between the two writes leaves it
    calls = []
    decode = _layouts.FileImages.decode
    monkeypatch.setattr(_layouts.FileImages, "decode", lambda self, k, s: calls.append(1) or decode(self, k, s))
    again = load_dataset("c", 16)
    assert calls == [1] and again.audit["pixels_sha256"] == first.audit["pixels_sha256"]
    assert len(list(cache.glob("*.json"))) == 1
