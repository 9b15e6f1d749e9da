"""The Grocery Store Dataset (Klasson et al., WACV 2019; MIT): phone photos taken in shops and one catalog ("iconic")
picture per product, 81 fine products in 43 coarse classes, with the authors' train/val/test lists.

The project carries a compact copy (longer side 128 px) under ``data/grocery-store`` with its LICENSE and SOURCE.md.
Pictures are read with PIL as RGB and brought to the model's size with the runtime's own resize.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgecart.runtime.errors import EdgecartError
from edgecart.runtime.manifest import ImagePreprocessing

from .image_folder import ImageSet, read_pictures
from .sequences import DatasetMissingError

SPLITS = ("train", "val", "test")


def _candidates(root: str | os.PathLike[str] | None) -> list[Path]:
    if root is not None:
        return [Path(root)]
    out = []
    env = os.environ.get("EDGECART_DATA")
    if env:
        out += [Path(env) / "grocery-store", Path(env)]
    here = Path(__file__).resolve()
    out += [p / "data" / "grocery-store" for p in here.parents[:3]]  # the repository's own copy
    return out


def grocery_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The first folder holding the data set: ``root``, ``$EDGECART_DATA``, the repository's ``data/grocery-store``."""
    cands = _candidates(root)
    for c in cands:
        if (c / "classes.csv").is_file() and all((c / f"{s}.txt").is_file() for s in SPLITS):
            return c
    raise DatasetMissingError(f"the Grocery Store Dataset was not found in {', '.join(str(c) for c in cands)}; it "
                              "ships with the edgecart repository under data/grocery-store (or point EDGECART_DATA at "
                              "a folder holding classes.csv, train.txt, val.txt, test.txt and the pictures)")


def grocery_available(root: str | os.PathLike[str] | None = None) -> bool:
    try:
        grocery_dir(root)
    except DatasetMissingError:
        return False
    return True


@dataclass(frozen=True)
class GroceryData:
    """Shop photos per split and the catalog pictures; labels are fine products, ``coarse`` their coarse class."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    iconic: ImageSet

    @property
    def skipped(self) -> tuple[tuple[str, str], ...]:
        return tuple(x for s in (self.train, self.val, self.test, self.iconic) for x in s.skipped)


def _classes(d: Path) -> tuple[list[str], list[int], list[str], list[str]]:
    with (d / "classes.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    rows = sorted(rows, key=lambda r: int(r[1]))
    if [int(r[1]) for r in rows] != list(range(len(rows))):
        raise DatasetMissingError(f"{d}/classes.csv: class ids are not 0..{len(rows) - 1}")
    fine = [r[0] for r in rows]
    coarse_id = [int(r[3]) for r in rows]
    coarse_names = [""] * (max(coarse_id) + 1)
    for r in rows:
        coarse_names[int(r[3])] = r[2]
    return fine, coarse_id, coarse_names, [r[4].lstrip("/") for r in rows]


def load_grocery(pre: ImagePreprocessing, root: str | os.PathLike[str] | None = None, *,
                 limit_per_class: int | None = None) -> GroceryData:
    """Every split at ``pre.size`` / ``pre.color`` (RGB for the demo). ``limit_per_class`` keeps the first N photos
    of each product per split (small subsets for tests). Unreadable pictures are skipped and listed."""
    d = grocery_dir(root)
    fine, coarse_id, coarse_names, iconic_paths = _classes(d)
    coarse_of = np.asarray(coarse_id, np.int64)
    sets = {}
    for split in SPLITS:
        rows = []
        with (d / f"{split}.txt").open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                parts = [x.strip() for x in line.split(",")]
                if len(parts) != 3:
                    raise DatasetMissingError(f"{d}/{split}.txt, line {n}: expected 'path, fine_id, coarse_id'")
                rows.append((parts[0], int(parts[1])))
        if limit_per_class is not None:
            count: dict[int, int] = {}
            keep = []
            for r in rows:
                count[r[1]] = count.get(r[1], 0) + 1
                if count[r[1]] <= limit_per_class:
                    keep.append(r)
            rows = keep
        sets[split] = _read(d, rows, fine, coarse_of, coarse_names, pre, split)
    iconic_rows = [(p, i) for i, p in enumerate(iconic_paths)]
    iconic = _read(d, iconic_rows, fine, coarse_of, coarse_names, pre, "iconic")
    return GroceryData(sets["train"], sets["val"], sets["test"], iconic)


def _read(d: Path, rows: list[tuple[str, int]], fine: list[str], coarse_of: np.ndarray, coarse_names: list[str],
          pre: ImagePreprocessing, split: str) -> ImageSet:
    images, kept, skipped = read_pictures([d / p for p, _ in rows], pre, desc=f"read grocery {split}")
    if not kept:
        raise EdgecartError(f"{d}: none of the {len(rows)} {split} pictures could be read")
    labels = np.asarray([rows[i][1] for i in kept], np.int64)
    ids = tuple(fine[rows[i][1]] if split == "iconic" else rows[i][0] for i in kept)
    meta = tuple({"product": fine[rows[i][1]], "category": coarse_names[coarse_of[rows[i][1]]]} for i in kept)
    return ImageSet(images, labels, tuple(fine), ids, source=str(d), coarse=coarse_of[labels],
                    coarse_classes=tuple(coarse_names), metadata=meta,
                    skipped=tuple((str(Path(p).relative_to(d)), why) for p, why in skipped))


__all__ = ["GroceryData", "grocery_available", "grocery_dir", "load_grocery"]
