"""A user's own catalog as an image folder: one sub-folder per category, JPEG or PNG pictures inside.

Pictures are decoded with PIL and brought to the model's size and colour with the runtime's own preprocessing
(:func:`edgecart.runtime.preprocess.to_model_uint8`), so training, catalog embedding and the device agree.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from edgecart.runtime.errors import EdgecartError
from edgecart.runtime.manifest import ImagePreprocessing
from edgecart.runtime.preprocess import IMAGE_SUFFIXES, ImageInputError, load_image, to_model_uint8
from tqdm.auto import tqdm

from .fashion_mnist import ImageSet


class ImageFolderError(EdgecartError, ValueError):
    """An image folder is missing, empty, or holds a picture that cannot be read."""


def load_image_folder(root: str | os.PathLike[str], pre: ImagePreprocessing, *,
                      skip_unreadable: bool = False) -> ImageSet:
    """Every JPEG/PNG under ``root/<category>/``, at ``pre.size`` and ``pre.color``, labelled by sorted category.

    Item ids are the paths relative to ``root``. An unreadable picture raises :class:`ImageFolderError` naming it,
    unless ``skip_unreadable``.
    """
    base = Path(root)
    if not base.is_dir():
        raise ImageFolderError(f"{base}: no such folder; pass a folder with one sub-folder per category")
    cats = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not cats:
        raise ImageFolderError(f"{base}: no sub-folders; lay the catalog out as one sub-folder per category "
                               "(e.g. shoes/1.jpg, bags/2.png)")
    files: list[tuple[Path, int]] = []
    for label, cat in enumerate(cats):
        files += [(p, label) for p in sorted((base / cat).rglob("*"))
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ImageFolderError(f"{base}: no JPEG or PNG pictures in {', '.join(cats)}")
    images, labels, ids = [], [], []
    for p, label in tqdm(files, desc=f"read {base.name}", unit="img", leave=False, disable=None):
        try:
            arr = load_image(p)
        except ImageInputError as exc:
            if skip_unreadable:
                continue
            raise ImageFolderError(f"{p}: unreadable ({exc}); remove it or pass skip_unreadable=True") from None
        images.append(to_model_uint8(arr[None], pre)[0])
        labels.append(label)
        ids.append(p.relative_to(base).as_posix())
    if not images:
        raise ImageFolderError(f"{base}: none of the {len(files)} pictures could be read")
    return ImageSet(np.stack(images), np.asarray(labels, np.int64), tuple(cats), tuple(ids), source=str(base))
