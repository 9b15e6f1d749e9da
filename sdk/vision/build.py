"""Search-by-image from your own pictures: fine-tune a teacher, distil a mobile student, export a verified bundle.

``edgecart build image-search --images DIR --out OUT`` (one sub-folder per category or per product) or
``--catalog catalog.csv`` (columns image, id, category, and any extra metadata columns carried into the bundle);
``--config build.toml`` sets the rest (see :mod:`edgecart.vision.config`). The pictures are split per label (seeded)
into train / val / test: the teacher and the students learn from train, every choice is made on val, the test photos
give the reported figures; the shipped catalog holds every readable picture. Unreadable pictures are skipped and
listed. ``OUT/bundle`` is the bundle; ``OUT/summary.md``, ``summary.json`` and ``summary.png`` the report.

This module stays light at import (no torch): the CLI builds its parser from it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="folder with one sub-folder of pictures (JPEG, PNG, WebP, "
                     "BMP) per category (or per product)")
    src.add_argument("--catalog", metavar="CSV", help="catalog CSV: image (path), id, category, extra columns")
    p.add_argument("--out", required=True, help="output folder (bundle under OUT/bundle, report OUT/summary.*)")
    p.add_argument("--config", metavar="TOML", help="build.toml with [data] [teacher] [student] [export] sections")
    p.add_argument("--name", help="bundle name (default: the config's, else the folder's name)")
    p.add_argument("--threads", type=int, help="torch threads (default: the cores free now)")
    p.add_argument("--cache", help="cache for the teacher and embeddings (default: OUT/cache)")
    p.add_argument("--no-cache", action="store_true", help="train everything afresh and cache nothing")


def run(args: argparse.Namespace) -> int:
    from .config import BuildConfig

    cfg = BuildConfig.from_toml(args.config) if args.config else BuildConfig()
    src = Path(args.images or args.catalog)
    name = args.name or (cfg.name if args.config and cfg.name != BuildConfig().name else _safe_name(src))
    cfg = cfg.replace(name=name, threads=args.threads if args.threads is not None else cfg.threads)
    out = Path(args.out)
    cache = None if args.no_cache else Path(args.cache) if args.cache else out / "cache"
    summary = build_image_search(out, cfg, images=args.images, catalog=args.catalog, cache=cache)
    _print_result(summary, out)
    return 0


def build_image_search(out: str | os.PathLike[str], cfg: Any = None, *, images: str | os.PathLike[str] | None = None,
                       catalog: str | os.PathLike[str] | None = None, cache: str | os.PathLike[str] | None = None,
                       progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The library face of ``edgecart build image-search``: returns the summary dict."""
    from edgecart.outputs import remove_made

    from .config import BuildConfig
    from .pipeline import run_build

    cfg = cfg or BuildConfig()
    progress = progress or _log
    made = check_build_paths(out, cache, images=images)
    try:
        data = user_data(cfg, images=images, catalog=catalog)
    except BaseException:
        remove_made(made)  # nothing is left behind when the pictures are refused
        raise
    return run_build(data, cfg, out, cache=cache, progress=progress)


def check_build_paths(out: str | os.PathLike[str], cache: str | os.PathLike[str] | None, *,
                      images: str | os.PathLike[str] | None = None) -> list[Path]:
    """Refuse, before any picture is read, an ``out`` or ``cache`` the build could not write (a file there or above
    it, a folder that cannot be written, an ``out/bundle`` that is not a bundle) or one inside the ``images`` folder
    (the next build would read the build's own outputs as pictures). Makes the folders; returns those it made, for
    :func:`edgecart.outputs.remove_made`. Errors are :class:`edgecart.outputs.BuildOutputError`."""
    from edgecart.outputs import BuildOutputError, check_out

    out, cache = Path(out), (None if cache is None else Path(cache))
    if images is not None:
        src = Path(images).resolve()
        for folder, flag in ((out, "--out"), (cache, "--cache")):
            if folder is not None and folder.resolve().is_relative_to(src):
                raise BuildOutputError(f"{flag} {folder} is inside the --images folder {images}: the next build would "
                                       "read its files as pictures; choose a folder outside it")
    return check_out(out, cache)


def user_data(cfg: Any, *, images: str | os.PathLike[str] | None = None,
              catalog: str | os.PathLike[str] | None = None) -> Any:
    """Read a user's pictures and split them (seeded, per label) into the build's :class:`SearchData`."""
    from edgecart.data.image_folder import ImageFolderError, load_image_catalog, load_image_folder, split_per_label

    from .pipeline import SearchData

    if (images is None) == (catalog is None):
        raise ImageFolderError("give exactly one of images (a folder) or catalog (a CSV)")
    pre = cfg.storage_preprocessing
    allset = load_image_folder(images, pre) if images is not None else load_image_catalog(catalog, pre)
    if len(allset.category_names) < 2:
        raise ImageFolderError(f"{allset.source}: only one category ({allset.category_names[0]!r}); an image-search "
                               "build needs at least 2 categories (every search would hit it, so recall, precision "
                               "and mAP would all read 1.0 and the int8 gate could not tell models apart); add "
                               "pictures of other categories")
    d = cfg.data
    sp = split_per_label(allset.labels, d.val, d.test, d.seed)
    if d.limit_per_class is not None:
        sp = _limit(sp, allset.labels, d.limit_per_class)
    if len(sp.val) == 0 or len(sp.test) == 0:
        raise ImageFolderError(f"{allset.source}: too few pictures to hold any out for validation and test; a "
                               "category needs at least 3 readable pictures")
    src = Path(images or catalog)
    # a folder's sub-folders are what a hit means: categories (category-level P@10) or products
    hit = "same category" if catalog is not None else f"same sub-folder of {src.name} (its category or product)"
    return SearchData(name=cfg.name, train=allset.take(sp.train), val=allset.take(sp.val),
                      test=allset.take(sp.test), catalog=allset.take(sp.train), shipped=allset,
                      skipped=allset.skipped, hit=hit)


def _limit(sp: Any, labels: Any, n: int) -> Any:
    import numpy as np
    from edgecart.data.image_folder import Split

    def cap(idx: Any) -> Any:
        keep = [i for c in np.unique(labels[idx]) for i in idx[labels[idx] == c][:n]]
        return np.sort(np.asarray(keep, np.int64))

    return Split(cap(sp.train), cap(sp.val), cap(sp.test))


def _safe_name(p: Path) -> str:
    stem = p.stem if p.suffix else p.name
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).strip("-.") or "image-search"
    return f"{name}-search"


def _log(msg: str) -> None:
    print(msg, flush=True)


def _print_result(s: dict[str, Any], out: Path) -> None:
    skipped = s["data"]["skipped"]
    if skipped:
        print(f"skipped {len(skipped)} picture(s) or file(s) not read:", file=sys.stderr)
        for x in skipped:
            print(f"  {x['path']}: {x['reason']}", file=sys.stderr)
    print(f"bundle: {s['bundle']}")
    for a in s["artifacts"]:
        print(f"  {a['artifact']:<36} R@1 {a['recall@1']:.4f}  P@10 {a['precision@10']:.4f}  mAP@10 "
              f"{a['map@10']:.4f}  p50 {a['p50_ms']:.3f} ms")
    print(f"report: {out / 'summary.md'} (and summary.json, summary.png); total {s['timings']['total_s']:.0f} s")


__all__ = ["add_arguments", "build_image_search", "check_build_paths", "run", "user_data"]
