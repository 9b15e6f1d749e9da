"""``edgecart demo --task image-search``: the image-search build on the bundled Grocery Store photos.

Shop photos (queries) search the shop's catalog pictures of its 81 products (the evaluation and shipped catalog); as a
second setting, the same queries search the 2,640 training photos. The teacher and the students learn from the
training photos plus the catalog pictures (repeated ``data.catalog_repeat`` times); the authors' val list makes every
choice, their test list gives the figures. Hit = the same product (instance level); coarse-class figures beside.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import BuildConfig, DataConfig, ExportConfig, StudentConfig, TeacherConfig

#: the student at 64x64, width 44 (294k parameters, 0.083 of the teacher), 10 epochs: the smallest setting measured
#: to keep >= 90% of the teacher's R@1 and mAP. ``w_soft = 1.0`` (soft labels through the teacher's prototypes) and
#: ``consistent_teacher`` (the teacher embeds the student's own augmented view at every step): the distillation
#: setting with the best validation mAP@10 gain over the label-only student, 3 seeds, the only one whose interval is
#: above 0 (results/image_search/README.md). The label-only baseline is skipped here (it doubles the student time);
#: the distilled-vs-label-only comparison over 3 seeds is ``scripts/vision_seeds.py``.
DEMO_CONFIG = BuildConfig(
    name="grocery-search",
    teacher=TeacherConfig(size=64, epochs=6, patience=2, freeze_blocks=3),
    student=StudentConfig(size=64, width=44, epochs=10, w_soft=1.0, consistent_teacher=True, baseline=False),
    data=DataConfig(catalog_repeat=4),
    export=ExportConfig(),
)


def grocery_search_data(cfg: BuildConfig, root: str | os.PathLike[str] | None = None) -> Any:
    """The grocery photos as the build's :class:`~edgecart.vision.pipeline.SearchData`."""
    from edgecart.data.grocery import load_grocery
    from edgecart.data.image_folder import concat

    from .pipeline import SearchData

    g = load_grocery(cfg.storage_preprocessing, root, limit_per_class=cfg.data.limit_per_class)
    train = concat(g.train, *[g.iconic] * cfg.data.catalog_repeat)
    return SearchData(name=cfg.name, train=train, val=g.val, test=g.test, catalog=g.iconic, shipped=g.iconic,
                      extra_catalogs={"training photos": g.train}, skipped=g.skipped,
                      hit="same product (fine class); coarse = same coarse class")


def run_grocery_demo(out: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None,
                     cfg: BuildConfig | None = None, progress: Callable[[str], None] = print) -> dict[str, Any]:
    from .pipeline import run_build

    cfg = cfg or DEMO_CONFIG
    return run_build(grocery_search_data(cfg), cfg, Path(out), cache=cache, progress=progress)


__all__ = ["DEMO_CONFIG", "grocery_search_data", "run_grocery_demo"]
