"""A user's own pictures: an image folder (one sub-folder per category or per product) or a catalog CSV.

Pictures are decoded with PIL (any size; JPEG, PNG, WebP, BMP; colour or gray) and brought to the model's size and
colour with the runtime's own preprocessing (:func:`edgecart.runtime.preprocess.to_model_uint8`), so training, catalog
embedding and the device agree. A picture that cannot be read is skipped and *listed* (:attr:`ImageSet.skipped`), never
dropped silently; the builds print that list and write it into their summary.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgecart.data import utf8_fix
from edgecart.progress import progress_iter
from edgecart.runtime.errors import EdgecartError
from edgecart.runtime.manifest import ImagePreprocessing
from edgecart.runtime.preprocess import IMAGE_SUFFIXES, ImageInputError, load_image, to_model_uint8


class ImageFolderError(EdgecartError, ValueError):
    """An image folder or catalog CSV is missing, empty, or malformed; the message says what to fix."""


@dataclass(frozen=True)
class ImageSet:
    """Pictures with integer labels. ``images`` is uint8 (N, H, W) for grayscale or (N, H, W, 3) for RGB.

    ``labels`` index ``classes`` (what a hit means: the category, or the product when pictures are grouped by
    product); ``coarse`` (optional) indexes ``coarse_classes`` (e.g. the product's category). ``metadata`` holds one
    dict of extra fields per picture (carried into a bundle's catalog). ``skipped`` lists the pictures that could not
    be read, as (path, reason).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    ids: tuple[str, ...]
    source: str = ""
    coarse: np.ndarray | None = None
    coarse_classes: tuple[str, ...] = ()
    metadata: tuple[dict[str, Any], ...] | None = None
    skipped: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise ValueError(f"images must be uint8 (N,H,W) or (N,H,W,3), got {self.images.dtype} "
                             f"{self.images.shape}")
        n = len(self.images)
        if self.labels.shape != (n,) or len(self.ids) != n:
            raise ValueError(f"{n} images but {self.labels.shape} labels and {len(self.ids)} ids")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)})")
        if self.coarse is not None and (self.coarse.shape != (n,) or (n and self.coarse.max() >= len(
                self.coarse_classes))):
            raise ValueError(f"coarse labels must be ({n},) indices into {len(self.coarse_classes)} coarse classes")
        if self.metadata is not None and len(self.metadata) != n:
            raise ValueError(f"{n} images but {len(self.metadata)} metadata rows")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def color(self) -> str:
        return "grayscale" if self.images.ndim == 3 else "rgb"

    @property
    def category_labels(self) -> np.ndarray:
        """The coarse label where there is one, else the label."""
        return self.coarse if self.coarse is not None else self.labels

    @property
    def category_names(self) -> tuple[str, ...]:
        return self.coarse_classes if self.coarse is not None else self.classes

    def take(self, index: np.ndarray) -> ImageSet:
        index = np.asarray(index, np.int64)
        return ImageSet(self.images[index], self.labels[index], self.classes, tuple(self.ids[i] for i in index),
                        self.source, None if self.coarse is None else self.coarse[index], self.coarse_classes,
                        None if self.metadata is None else tuple(self.metadata[i] for i in index), self.skipped)

    def resized(self, pre: ImagePreprocessing) -> ImageSet:
        """The same set with its pictures at ``pre.size`` and ``pre.color`` (the runtime's arithmetic)."""
        return ImageSet(to_model_uint8(self.images, pre), self.labels, self.classes, self.ids, self.source,
                        self.coarse, self.coarse_classes, self.metadata, self.skipped)


def concat(*sets: ImageSet) -> ImageSet:
    """Pictures of several sets with the same classes, one after the other."""
    a = sets[0]
    coarse = None if any(s.coarse is None for s in sets) else np.concatenate([s.coarse for s in sets])
    meta = None if any(s.metadata is None for s in sets) else tuple(m for s in sets for m in s.metadata)
    return ImageSet(np.concatenate([s.images for s in sets]), np.concatenate([s.labels for s in sets]), a.classes,
                    tuple(i for s in sets for i in s.ids), a.source, coarse, a.coarse_classes, meta,
                    tuple(x for s in sets for x in s.skipped))


#: pixel values resized in one batched call (float64 inside the resize: about 0.5 GB)
_RESIZE_VALUES = 64_000_000


def read_pictures(paths: list[Path], pre: ImagePreprocessing, desc: str = "read pictures"
                  ) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """Decode and resize ``paths``: (uint8 pictures of those read, their positions in ``paths``, skipped).

    Pictures of the same shape are resized together (one batched call of the runtime's resize)."""
    raw, kept, skipped = [], [], []
    for i, p in enumerate(progress_iter(paths, desc=desc, unit="img")):
        try:
            arr = load_image(p)
        except (ImageInputError, EdgecartError) as exc:
            skipped.append((str(p), str(exc)))
            continue
        raw.append(arr)
        kept.append(i)
    shape = (0, *pre.size) + ((3,) if pre.color == "rgb" else ())
    out = np.zeros((len(raw), *shape[1:]), np.uint8)
    groups: dict[tuple[int, ...], list[int]] = {}
    for j, a in enumerate(raw):
        groups.setdefault(a.shape, []).append(j)
    for members in groups.values():
        step = max(1, min(256, _RESIZE_VALUES // raw[members[0]].size))  # phone photos: a few at a time
        for s in range(0, len(members), step):
            chunk = members[s:s + step]
            out[chunk] = to_model_uint8(np.stack([raw[j] for j in chunk]), pre)
    return out, kept, skipped


def load_image_folder(root: str | os.PathLike[str], pre: ImagePreprocessing, *,
                      skip_unreadable: bool = True) -> ImageSet:
    """Every JPEG, PNG, WebP and BMP picture under ``root/<label>/`` (sub-folders below it included), at
    ``pre.size`` and ``pre.color``.

    ``<label>`` is a category or a product; labels follow the sorted sub-folder names. Item ids are the paths
    relative to ``root``. An empty sub-folder is an error (it would be a category nothing can be found in). An
    unreadable picture is skipped and listed in ``skipped`` (or raises when ``skip_unreadable=False``); so are the
    entries that are not read at all, with the reason: files of other formats (e.g. .gif, .heic), broken links,
    linked sub-folders (not followed) and files at the top level of ``root`` (outside any category folder).
    """
    base = Path(root)
    if not base.is_dir():
        raise ImageFolderError(f"{base}: no such folder; pass a folder with one sub-folder per category or product")
    cats = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not cats:
        raise ImageFolderError(f"{base}: no sub-folders; lay the pictures out as one sub-folder per category or "
                               "product (e.g. shoes/1.jpg, bags/2.png)")
    files: list[Path] = []
    labels: list[int] = []
    empty = []
    passed: list[tuple[str, str]] = []  # files that are not read, listed with the reason (never dropped silently)
    for p in sorted(base.iterdir()):
        if not p.name.startswith(".") and not p.is_dir():
            passed.append((p.name, _not_read(p) or f"not in a category sub-folder; move it into one of "
                                                  f"{', '.join(cats[:3])}{', ...' if len(cats) > 3 else ''}"))
    for label, cat in enumerate(cats):
        found, other = picture_files(base / cat, base)
        passed += other
        if not found:
            empty.append(cat)
        files += found
        labels += [label] * len(found)
    if empty:
        also = f" ({len(passed)} file(s) not read: {_first(passed)})" if passed else ""
        raise ImageFolderError(f"{base}: no JPEG, PNG, WebP or BMP pictures in the sub-folder(s) "
                               f"{', '.join(empty)}{also}; add pictures or remove the empty folder(s)")
    images, kept, skipped = read_pictures(files, pre, desc=f"read {base.name}")
    if skipped and not skip_unreadable:
        raise ImageFolderError(f"{skipped[0][0]}: unreadable ({skipped[0][1]}); remove it or skip unreadable files")
    if not kept:
        raise ImageFolderError(f"{base}: none of the {len(files)} pictures could be read: {_first(skipped)}")
    lab = np.asarray([labels[i] for i in kept], np.int64)
    lost = [cats[c] for c in range(len(cats)) if not (lab == c).any()]
    if lost:
        raise ImageFolderError(f"{base}: no readable picture in {', '.join(lost)} (all were skipped as unreadable: "
                               f"{_first(skipped)})")
    ids = tuple(files[i].relative_to(base).as_posix() for i in kept)
    meta = tuple({"path": i} for i in ids)
    return ImageSet(images, lab, tuple(cats), ids, source=str(base), metadata=meta,
                    skipped=tuple(passed) + tuple((Path(p).relative_to(base).as_posix(), why) for p, why in skipped))


def picture_files(folder: Path, base: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """The picture files (JPEG, PNG, WebP, BMP) under ``folder`` (sorted; hidden files and folders left out), and the
    other entries that are not read, as (path relative to ``base``, reason): files of other formats, broken links,
    linked folders (not followed)."""
    found: list[Path] = []
    other: list[tuple[str, str]] = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(base)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.is_file():
            if p.suffix.lower() in IMAGE_SUFFIXES:
                found.append(p)
            else:
                other.append((rel.as_posix(), _not_read(p)))
        elif p.is_symlink():
            other.append((rel.as_posix(), _not_read(p)))
    return found, other


def _not_read(p: Path) -> str:
    """Why a file or link under an image folder is not read ("" for a picture file it reads)."""
    if p.is_symlink() and not p.exists():
        return "a broken link (its target does not exist); fix or remove it"
    if p.is_symlink() and p.is_dir():
        return "a linked folder, not followed; copy the pictures in, or pass the folder itself"
    if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES:
        return (f"not a JPEG, PNG, WebP or BMP picture ({p.suffix or 'no extension'}); convert it to JPEG or PNG "
                "(e.g. mogrify -format png) or remove it")
    return ""


def _first(skipped: list[tuple[str, str]] | tuple[tuple[str, str], ...], n: int = 3) -> str:
    """The first ``n`` (path, reason) pairs, for an error message."""
    more = f"; and {len(skipped) - n} more" if len(skipped) > n else ""
    return "; ".join(f"{p}: {why.removeprefix(f'{p}: ')}" for p, why in skipped[:n]) + more


def read_csv_rows(p: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV in UTF-8 (with or without a byte-order mark), cells stripped; another encoding is an
    :class:`ImageFolderError` that says how to convert the file."""
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items() if isinstance(v, str) or v is None}
                    for r in reader]
    except UnicodeDecodeError as exc:
        raise ImageFolderError(f"{p}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                               f"{utf8_fix(p)}") from None
    return header, rows


#: columns a catalog CSV must have (``image`` may also be called ``path``; ``id`` may be ``product_id``)
CSV_COLUMNS = {"image": ("image", "path", "image_path"), "id": ("id", "product_id"), "category": ("category",)}


def load_image_catalog(csv_path: str | os.PathLike[str], pre: ImagePreprocessing, *,
                       skip_unreadable: bool = True) -> ImageSet:
    """A catalog CSV: one row per product with its picture (path relative to the CSV or absolute), its unique id,
    its category, and any extra columns (carried into the bundle as the item's metadata).

    Raises :class:`ImageFolderError` for a missing file or column, an empty id or category, or a duplicate id.
    """
    p = Path(csv_path)
    if not p.is_file():
        raise ImageFolderError(f"{p}: no such catalog CSV; pass a CSV with columns image, id, category")
    header, rows = read_csv_rows(p)
    col = {}
    for want, names in CSV_COLUMNS.items():
        hit = next((n for n in names if n in header), None)
        if hit is None:
            raise ImageFolderError(f"{p}: missing column {want!r} (accepted names: {', '.join(names)}); the header "
                                   f"is {header}")
        col[want] = hit
    if not rows:
        raise ImageFolderError(f"{p}: no rows; add one row per product (image, id, category)")
    seen: dict[str, int] = {}
    for n, r in enumerate(rows, start=2):
        for want in ("image", "id", "category"):
            if not r.get(col[want]):
                raise ImageFolderError(f"{p}, line {n}: empty {want!r}; every row needs an image, an id and a category")
        if r[col["id"]] in seen:
            raise ImageFolderError(f"{p}, line {n}: duplicate id {r[col['id']]!r} (first on line {seen[r[col['id']]]})"
                                   "; product ids must be unique")
        seen[r[col["id"]]] = n
    cats = sorted({r[col["category"]] for r in rows})
    files = [Path(r[col["image"]]) if Path(r[col["image"]]).is_absolute() else p.parent / r[col["image"]]
             for r in rows]
    images, kept, skipped = read_pictures(files, pre, desc=f"read {p.name}")
    if skipped and not skip_unreadable:
        raise ImageFolderError(f"{skipped[0][0]}: unreadable ({skipped[0][1]}); fix the row or skip unreadable files")
    if not kept:
        raise ImageFolderError(f"{p}: none of the {len(rows)} pictures could be read: {_first(skipped)}")
    present = {rows[i][col["category"]] for i in kept}
    lost = [c for c in cats if c not in present]
    if lost:
        raise ImageFolderError(f"{p}: no readable picture in {', '.join(lost)} (all were skipped as unreadable: "
                               f"{_first(skipped)}); fix those rows' pictures or remove the rows")
    extra = [h for h in header if h not in col.values()]
    by_path = {str(f): rows[i][col["id"]] for i, f in enumerate(files)}
    meta = tuple({k: rows[i][k] for k in extra} for i in kept)
    lab = np.asarray([cats.index(rows[i][col["category"]]) for i in kept], np.int64)
    return ImageSet(images, lab, tuple(cats), tuple(rows[i][col["id"]] for i in kept), source=str(p), metadata=meta,
                    skipped=tuple((f"{by_path[s]} ({s})", why) for s, why in skipped))


@dataclass(frozen=True)
class Split:
    """Index arrays of a seeded per-label split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_per_label(labels: np.ndarray, val: float = 0.15, test: float = 0.15, seed: int = 0) -> Split:
    """Split positions per label (seeded): at least one training picture per label; a label with 3 or more
    pictures gives at least one to val and one to test."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val ({val}) and test ({test}) fractions must be >= 0 and sum below 1")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        n_val = n_test = 0
        if n >= 3:
            n_val = max(1 if val > 0 else 0, int(round(val * n)))
            n_test = max(1 if test > 0 else 0, int(round(test * n)))
        parts["val"] += idx[:n_val].tolist()
        parts["test"] += idx[n_val:n_val + n_test].tolist()
        parts["train"] += idx[n_val + n_test:].tolist()
    return Split(*(np.sort(np.asarray(parts[k], np.int64)) for k in ("train", "val", "test")))


__all__ = ["CSV_COLUMNS", "ImageFolderError", "ImageSet", "Split", "concat", "load_image_catalog",
           "load_image_folder", "picture_files", "read_csv_rows", "read_pictures", "split_per_label"]
