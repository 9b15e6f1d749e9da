"""The scripts that make the measured build inputs: a category folder from the grocery photos, MovieLens-100K as a
shop's CSV files, and the shopper-style renderings of Fashion-MNIST products."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cap_reaches_the_total_with_the_smallest_per_class_cap():
    m = _script("build_ten_categories")
    sizes = [576, 495, 373, 372, 327, 237, 235, 229, 155, 143]
    k = m.cap_for_total(sizes, 2000)
    assert k == 213 and sum(min(n, k) for n in sizes) == 2002 and sum(min(n, k - 1) for n in sizes) < 2000
    assert m.cap_for_total([3, 4], 100) == 4


@pytest.mark.skipif(not (ROOT / "data" / "grocery-store" / "train.txt").is_file(), reason="no grocery-store copy")
def test_ten_category_folder_keeps_every_picture(tmp_path):
    m = _script("build_ten_categories")
    counts = m.make_folder(tmp_path / "ten", classes=3, total=30)
    files = sorted((tmp_path / "ten").rglob("*.jpg"))
    # train/, val/ and test/ reuse file names: none may overwrite another
    assert len(counts) == 3 and len(files) == sum(counts.values()) >= 30
    assert {p.parent.name for p in files} == set(counts)
    with pytest.raises(SystemExit, match="not empty"):
        m.make_folder(tmp_path / "ten", classes=3, total=30)
    # the sample is seeded: the same seed picks the same photos, another seed others
    again = m.make_folder(tmp_path / "again", classes=3, total=30)
    other = m.make_folder(tmp_path / "other", classes=3, total=30, seed=1)

    def names(d):
        return sorted(str(p.relative_to(d)) for p in d.rglob("*.jpg"))

    assert again == counts and names(tmp_path / "again") == names(tmp_path / "ten") != names(tmp_path / "other")
    assert other == counts  # the per-class counts do not depend on the seed


def test_movielens_files_are_a_log_and_an_items_file(tmp_path):
    from edgecart.data.sequences import DatasetMissingError

    m = _script("build_movielens_log")
    try:
        ratings, items, n, k = m.write_files(tmp_path)
    except DatasetMissingError:
        pytest.skip("MovieLens-100K (recbole) not installed")
    with open(ratings, newline="", encoding="utf-8") as f:
        log = list(csv.reader(f))
    with open(items, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert log[0] == ["user_id", "item_id", "rating", "timestamp"] and n == 100_000
    assert rows[0] == ["item_id", "title", "year", "genres"] and len(rows) == k + 1 and rows[1][1] == "Toy Story"
    # every rating and every item, in the source's order, each field under its own header
    from edgecart.data.movielens import movielens_path

    def source(path):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
        return [ln.split("\t") for ln in lines if ln.strip()]

    assert log[1:] == source(movielens_path()) and len(log) == 100_001
    assert rows[1:] == source(movielens_path().with_suffix(".item")) and k == 1682
    assert rows[1] == ["1", "Toy Story", "1995", "Animation Children's Comedy"]
    assert {r[2] for r in log[1:]} == {"1", "2", "3", "4", "5"}


def test_shopper_rendering_is_a_dark_product_on_a_light_background():
    m = _script("build_fashion_shopper")
    product = np.zeros((28, 28), np.uint8)
    product[6:22, 8:20] = 255  # white product on black, as Fashion-MNIST draws it
    rng = np.random.default_rng(0)
    for _ in range(5):
        img = m.render(product, rng, style="shopper")
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        gray = img.astype(float).mean(axis=2)
        dark = gray < 120
        assert 0.02 < dark.mean() < 0.5 and np.median(gray[~dark]) > 170  # a dark shape on a light ground
    train = [m.render(product, rng, style="train", canvas=32) for _ in range(30)]
    assert {t.shape for t in train} <= {(28, 28, 3), (32, 32, 3)}
    corners = [t[0, 0].mean() for t in train if t.shape == (32, 32, 3)]
    assert min(corners) < 80 and max(corners) > 170  # both polarities among the training renderings


def test_shopper_training_folders_hold_every_product_plain_and_augmented(tmp_path):
    from PIL import Image

    m = _script("build_fashion_shopper")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 0, 2, 1])
    classes = ("T-shirt/top", "Trouser", "Pullover")
    m.write_folders(tmp_path, images, labels, classes, seed=0)
    for kind in ("plain", "augmented"):
        found = sorted(str(p.relative_to(tmp_path / kind)) for p in (tmp_path / kind).rglob("*.png"))
        assert found == sorted(f"{('T-shirt-top', 'Trouser', 'Pullover')[c]}/{i:05d}.png"
                               for i, c in enumerate(labels)), kind
    for i, c in enumerate(labels):
        plain = np.asarray(Image.open(tmp_path / "plain" / ("T-shirt-top", "Trouser", "Pullover")[c] / f"{i:05d}.png"))
        assert (plain == images[i]).all()  # the product itself, unchanged
