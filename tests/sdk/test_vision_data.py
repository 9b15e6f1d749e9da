"""Fashion-MNIST and image-folder loaders, and the fixed-seed search splits."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from edgecart.data.fashion_mnist import (
    CLASSES,
    INSTALL_HINT,
    fashion_mnist_available,
    fashion_mnist_dir,
    load_fashion_mnist,
    read_idx,
    search_splits,
)
from edgecart.data.image_folder import ImageFolderError, load_image_folder
from edgecart.data.sequences import DatasetMissingError
from edgecart.runtime import ImagePreprocessing

needs_fmnist = pytest.mark.skipif(not fashion_mnist_available(), reason=f"Fashion-MNIST not installed: {INSTALL_HINT}")


@pytest.fixture(scope="module")
def fmnist():
    return load_fashion_mnist()


@needs_fmnist
def test_fashion_mnist_loads_the_real_files(fmnist):
    train, test = fmnist
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.classes == CLASSES and len(CLASSES) == 10
    assert np.bincount(train.labels).tolist() == [6000] * 10  # Fashion-MNIST is balanced
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert train.ids[0] == "fmnist-train-00000" and len(set(test.ids)) == 10000


@needs_fmnist
def test_splits_are_fixed_by_the_seed_and_disjoint(fmnist):
    train, test = fmnist
    a = search_splits(train, test, queries=100, gallery=500, train_size=1000, seed=3)
    b = search_splits(train, test, queries=100, gallery=500, train_size=1000, seed=3)
    c = search_splits(train, test, queries=100, gallery=500, train_size=1000, seed=4)
    assert a.queries.ids == b.queries.ids and a.gallery.ids == b.gallery.ids and a.train.ids == b.train.ids
    assert a.queries.ids != c.queries.ids
    assert not set(a.queries.ids) & set(a.gallery.ids)
    assert len(a.train) == 1000 and len(a.gallery) == 500 and len(a.queries) == 100
    full = search_splits(train, test, queries=1000)
    assert len(full.gallery) == 9000 and len(full.train) == 60000


def test_env_and_explicit_dir_and_missing_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECART_DATA", str(tmp_path))
    with pytest.raises(DatasetMissingError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist_dir(tmp_path / "nowhere")
    # a hand-made IDX set in EDGECART_DATA/fashion-mnist is found and read
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    for stem, n in (("train", 12), ("t10k", 5)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labs = rng.integers(0, 10, n, dtype=np.uint8)
        _write_idx(d / f"{stem}-images-idx3-ubyte.gz", imgs)
        _write_idx(d / f"{stem}-labels-idx1-ubyte.gz", labs)
    assert fashion_mnist_dir() == d
    train, test = load_fashion_mnist()
    assert train.images.shape == (12, 28, 28) and test.labels.shape == (5,)
    np.testing.assert_array_equal(read_idx(d / "t10k-images-idx3-ubyte.gz"), test.images)


def test_truncated_idx_is_refused(tmp_path):
    p = tmp_path / "x-idx3-ubyte.gz"
    _write_idx(p, np.zeros((3, 4, 4), np.uint8))
    data = gzip.decompress(p.read_bytes())[:-5]
    p.write_bytes(gzip.compress(data))
    with pytest.raises(DatasetMissingError, match="truncated"):
        read_idx(p)


def _write_idx(path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def test_image_folder_reads_categories_and_resizes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cat, n in (("bags", 2), ("shoes", 3)):
        (tmp_path / cat).mkdir()
        for i in range(n):
            arr = rng.integers(0, 256, (40 + i, 30, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cat / f"{i}.{'png' if i % 2 else 'jpg'}")
    (tmp_path / "shoes" / "notes.txt").write_text("not an image")
    pre = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))
    ds = load_image_folder(tmp_path, pre)
    assert ds.classes == ("bags", "shoes") and ds.labels.tolist() == [0, 0, 1, 1, 1]
    assert ds.images.shape == (5, 28, 28) and ds.images.dtype == np.uint8
    assert ds.ids[0] == "bags/0.jpg"
    rgb = load_image_folder(tmp_path, ImagePreprocessing((16, 16), "rgb"))
    assert rgb.images.shape == (5, 16, 16, 3)


def test_image_folder_errors(tmp_path):
    pre = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))
    with pytest.raises(ImageFolderError, match="no such folder"):
        load_image_folder(tmp_path / "missing", pre)
    with pytest.raises(ImageFolderError, match="one sub-folder per category"):
        load_image_folder(tmp_path, pre)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageFolderError, match="no JPEG or PNG"):
        load_image_folder(tmp_path, pre)
    (tmp_path / "empty" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageFolderError, match="broken.jpg"):
        load_image_folder(tmp_path, pre)
