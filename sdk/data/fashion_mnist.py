"""Fashion-MNIST (70,000 Zalando product images, 10 categories) read from its IDX ``.gz`` files with numpy,
and fixed-seed search splits: a training set, and from the test set a catalog (gallery) and held-out queries.

Not part of the image-search demo any more (it runs on real shop photos, :mod:`edgecart.data.grocery`); kept as a
loader for experiments. Where the files come from, in order: an explicit directory, ``$EDGECART_DATA`` (the folder
itself or its ``fashion-mnist`` sub-folder), and the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .image_folder import ImageSet
from .sequences import DatasetMissingError

INSTALL_HINT = "apt-get install dataset-fashion-mnist"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
               0x0E: np.dtype(">f8")}


@dataclass(frozen=True)
class SearchSplits:
    """``train`` to learn from; ``gallery`` is the catalog to search; ``queries`` are held-out shopper photos."""

    train: ImageSet
    gallery: ImageSet
    queries: ImageSet


def fashion_mnist_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The first folder holding the four Fashion-MNIST files: ``root``, ``$EDGECART_DATA``, the Debian package."""
    candidates: list[Path] = []
    if root is not None:
        candidates.append(Path(root))
    else:
        env = os.environ.get("EDGECART_DATA")
        if env:
            candidates += [Path(env) / "fashion-mnist", Path(env)]
        candidates.append(SYSTEM_DIR)
    for c in candidates:
        if all(_find(c, name) is not None for pair in _FILES.values() for name in pair):
            return c
    where = ", ".join(str(c) for c in candidates)
    raise DatasetMissingError(f"Fashion-MNIST not found in {where}; install it with: {INSTALL_HINT} "
                              "(or point EDGECART_DATA at a folder holding the four IDX .gz files)")


def fashion_mnist_available(root: str | os.PathLike[str] | None = None) -> bool:
    """Whether :func:`fashion_mnist_dir` finds the four files."""
    try:
        fashion_mnist_dir(root)
    except DatasetMissingError:
        return False
    return True


def load_fashion_mnist(root: str | os.PathLike[str] | None = None) -> tuple[ImageSet, ImageSet]:
    """The 60,000 training and 10,000 test images (uint8 28x28, white product on black) with labels."""
    d = fashion_mnist_dir(root)
    out = []
    for split, (img_name, lab_name) in _FILES.items():
        images = read_idx(_find(d, img_name))  # type: ignore[arg-type]
        labels = read_idx(_find(d, lab_name)).astype(np.int64)  # type: ignore[arg-type]
        if images.ndim != 3 or images.dtype != np.uint8 or len(images) != len(labels):
            raise DatasetMissingError(f"{d}: {split} files are not Fashion-MNIST images/labels; reinstall with: "
                                      f"{INSTALL_HINT}")
        ids = tuple(f"fmnist-{split}-{i:05d}" for i in range(len(labels)))
        out.append(ImageSet(images, labels, CLASSES, ids, source=str(d)))
    return out[0], out[1]


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array of its declared type and shape."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetMissingError(f"{p}: unreadable ({exc}); reinstall with: {INSTALL_HINT}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetMissingError(f"{p}: not an IDX file; reinstall with: {INSTALL_HINT}")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    start = 4 + 4 * ndim
    count = int(np.prod(dims)) if dims else 0
    if len(data) != start + count * dtype.itemsize:
        raise DatasetMissingError(f"{p}: truncated IDX file ({len(data)} bytes for shape {dims}); reinstall with: "
                                  f"{INSTALL_HINT}")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=start).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def search_splits(train: ImageSet, test: ImageSet, *, queries: int = 1000, gallery: int | None = None,
                  train_size: int | None = None, seed: int = 0) -> SearchSplits:
    """Fixed-seed splits: ``queries`` test images held out as queries, the rest (or ``gallery`` of them) the catalog.

    ``train_size`` takes a fixed-seed subset of the training set (for quick runs). The same seed gives the same
    split on every machine.
    """
    if queries <= 0 or queries >= len(test):
        raise ValueError(f"queries must lie in [1, {len(test) - 1}], got {queries}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(test))
    q, g = order[:queries], order[queries:]
    if gallery is not None:
        if gallery <= 0 or gallery > len(g):
            raise ValueError(f"gallery must lie in [1, {len(g)}], got {gallery}")
        g = g[:gallery]
    t = np.arange(len(train))
    if train_size is not None:
        if train_size <= 0 or train_size > len(train):
            raise ValueError(f"train_size must lie in [1, {len(train)}], got {train_size}")
        t = np.sort(rng.permutation(len(train))[:train_size])
    return SearchSplits(train.take(t), test.take(np.sort(g)), test.take(np.sort(q)))


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None
