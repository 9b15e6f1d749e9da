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


def test_image_folder_errors_and_skips(tmp_path):
    from PIL import Image

    pre = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))
    with pytest.raises(ImageFolderError, match="no such folder"):
        load_image_folder(tmp_path / "missing", pre)
    with pytest.raises(ImageFolderError, match="one sub-folder per category"):
        load_image_folder(tmp_path, pre)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageFolderError, match="no JPEG, PNG, WebP or BMP pictures in the sub-folder.*empty"):
        load_image_folder(tmp_path, pre)
    (tmp_path / "empty" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageFolderError, match="none of the 1 pictures"):
        load_image_folder(tmp_path, pre)
    (tmp_path / "full").mkdir()
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "full" / "ok.png")
    with pytest.raises(ImageFolderError, match="no readable picture in empty"):
        load_image_folder(tmp_path, pre)
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "empty" / "fine.png")
    ds = load_image_folder(tmp_path, pre)  # the broken picture is skipped and listed, never silently dropped
    assert ds.ids == ("empty/fine.png", "full/ok.png")
    assert [p for p, _ in ds.skipped] == ["empty/broken.jpg"] and "not a readable image" in ds.skipped[0][1]
    with pytest.raises(ImageFolderError, match="broken.jpg: unreadable"):
        load_image_folder(tmp_path, pre, skip_unreadable=False)


def _csv(path, rows):
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    return path


def test_catalog_csv_carries_metadata_and_refuses_bad_rows(tmp_path):
    from edgecart.data.image_folder import load_image_catalog
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((20, 10, 3), 80 * i, np.uint8)).save(tmp_path / f"p{i}.jpg")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    pre = ImagePreprocessing((16, 16), "rgb")
    head = ["image", "id", "category", "price", "name"]
    good = _csv(tmp_path / "c.csv", [head, ["p0.jpg", "A1", "tea", "2.5", "green"], ["p1.jpg", "A2", "coffee", "3",
                                     "dark"], [str(tmp_path / "p2.jpg"), "A3", "tea", "1", "black"],
                                     ["bad.png", "A4", "coffee", "9", "broken"]])
    ds = load_image_catalog(good, pre)
    assert ds.ids == ("A1", "A2", "A3") and ds.classes == ("coffee", "tea") and ds.labels.tolist() == [1, 0, 1]
    assert ds.metadata[1] == {"price": "3", "name": "dark"} and ds.images.shape == (3, 16, 16, 3)
    assert len(ds.skipped) == 1 and ds.skipped[0][0].startswith("A4")
    with pytest.raises(ImageFolderError, match="missing column 'category'"):
        load_image_catalog(_csv(tmp_path / "m.csv", [["image", "id"], ["p0.jpg", "A"]]), pre)
    with pytest.raises(ImageFolderError, match="line 3: duplicate id 'A1'"):
        load_image_catalog(_csv(tmp_path / "d.csv", [head[:3], ["p0.jpg", "A1", "x"], ["p1.jpg", "A1", "y"]]), pre)
    with pytest.raises(ImageFolderError, match="line 2: empty 'category'"):
        load_image_catalog(_csv(tmp_path / "e.csv", [head[:3], ["p0.jpg", "A1", ""]]), pre)
    with pytest.raises(ImageFolderError, match="no such catalog CSV"):
        load_image_catalog(tmp_path / "none.csv", pre)


def test_split_per_label_is_seeded_disjoint_and_keeps_small_labels_in_train():
    from edgecart.data.image_folder import split_per_label

    labels = np.repeat([0, 1, 2], [20, 10, 2])
    a, b = split_per_label(labels, 0.2, 0.2, seed=1), split_per_label(labels, 0.2, 0.2, seed=1)
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("train", "val", "test"))
    assert not np.array_equal(a.val, split_per_label(labels, 0.2, 0.2, seed=2).val)
    allidx = np.concatenate([a.train, a.val, a.test])
    assert sorted(allidx.tolist()) == list(range(len(labels)))
    assert np.bincount(labels[a.val], minlength=3).tolist() == [4, 2, 0]
    assert set(labels[a.train]) == {0, 1, 2}


def test_grocery_loader_reads_the_bundled_photos_as_rgb(tmp_path):
    from edgecart.data.grocery import grocery_dir, load_grocery

    pre = ImagePreprocessing((24, 24), "rgb")
    g = load_grocery(pre, limit_per_class=1)
    assert g.train.images.shape[1:] == (24, 24, 3) and len(g.iconic) == 81 and len(g.train.classes) == 81
    assert len(g.train.coarse_classes) == 43 and g.train.coarse is not None
    assert g.iconic.ids[0] == "Golden-Delicious" and g.iconic.metadata[0]["category"] == "Apple"
    assert len(g.train) == 81 and len(g.test) == 81 and not g.skipped
    assert (grocery_dir() / "LICENSE").is_file() and (grocery_dir() / "SOURCE.md").is_file()
    with pytest.raises(DatasetMissingError, match="data/grocery-store"):
        grocery_dir(tmp_path)


def test_grocery_demo_data_shape():
    """The demo searches the shop's product pictures with shop photos; the training photos are a second catalog."""
    from edgecart.vision.config import tiny_config
    from edgecart.vision.demo import DEMO_CONFIG, grocery_search_data

    cfg = tiny_config(data={"limit_per_class": 1, "catalog_repeat": 2})
    d = grocery_search_data(cfg)
    assert d.catalog is d.shipped and len(d.catalog) == 81 and d.catalog.ids[5] == "Avocado"
    assert len(d.train) == 81 + 2 * 81 and set(d.catalog.ids) <= set(d.train.ids)
    assert list(d.extra_catalogs) == ["training photos"] and len(d.extra_catalogs["training photos"]) == 81
    assert d.val.ids[0].startswith("val/") and d.test.ids[0].startswith("test/")
    assert d.train.images.shape[1:] == (32, 32, 3)
    assert DEMO_CONFIG.student.size <= DEMO_CONFIG.teacher.size and DEMO_CONFIG.export.gate_metrics == (
        "recall@1", "map@10")
    from edgecart.models.vision import MobileStudent, embedding_params

    s = DEMO_CONFIG.student
    assert embedding_params(MobileStudent(128, 81, s.size, 3, s.width)) <= 0.1 * 3_534_976
