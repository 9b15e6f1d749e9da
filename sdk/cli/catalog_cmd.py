"""``edgecart catalog add|remove|update BUNDLE``: change a bundle's products without re-exporting its model.

An image-search bundle takes pictures (``--images DIR`` or ``--catalog CSV``; ``remove`` also ``--ids``); a
recommendations bundle takes an items file (``--items CSV|Parquet``: an id column and metadata columns; ``add`` also
a ``like`` column naming a known item whose embedding each new one starts from; ``remove`` also ``--ids``).
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="add, remove or update products of an image-search bundle or the items of a "
                       "recommendations bundle (new version, models untouched)")
    actions = p.add_subparsers(dest="catalog_action", required=True, metavar="ACTION")
    for action, text in (("add", "add products (pictures embedded by the bundle's model) or items"),
                         ("remove", "remove products / items by id"),
                         ("update", "re-embed products from new pictures, or update item metadata")):
        a = actions.add_parser(action, help=text)
        a.add_argument("bundle", help="the bundle folder")
        src = a.add_mutually_exclusive_group(required=True)
        src.add_argument("--images", metavar="DIR", help="image search: pictures, one sub-folder per category (ids = "
                         "relative paths)")
        src.add_argument("--catalog", metavar="CSV", help="image search: CSV with image, id, category and extra "
                         "metadata columns")
        src.add_argument("--items", metavar="FILE", help="recommendations: CSV or Parquet, an id column and metadata "
                         "columns" + ("; plus a 'like' column naming a known item per new one" if action == "add"
                                      else ""))
        if action == "remove":
            src.add_argument("--ids", help="comma-separated ids to remove")
        a.add_argument("--id-col", help="recommendations: the id column of --items (default: the first of item_id, "
                       "id, item, product_id, sku)")
        if action == "update":
            a.add_argument("--skip-unknown", action="store_true", help="recommendations: ignore --items rows of "
                           "items the bundle does not hold (default: an error)")
        a.add_argument("--out", help="write the new version here (default: replace the bundle atomically)")
        a.add_argument("--backend", default="auto", help="image search: runtime backend that embeds the pictures "
                       "(default: auto)")
        a.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgecart.runtime import open_bundle
    from edgecart.runtime.archive import refuse_output_inside

    from .prefer_cmd import unsigned_note

    ids = parse_ids(getattr(args, "ids", None))
    m = open_bundle(args.bundle).manifest
    if args.out is not None:
        refuse_output_inside(Path(args.out), Path(args.bundle), kind="folder")
    code = _run_items(args, ids) if m.task == "recommendations" else _run_images(args, ids)
    if code == 0 and m.signature is not None:
        unsigned_note(args.out or args.bundle)
    return code


def parse_ids(text: str | None) -> list[str] | None:
    """``--ids a,b``: the ids, blanks dropped; None without --ids. A list with no id (``--ids ", ,"``) is an error
    (a remove that removes nothing would still write a new version)."""
    if text is None:
        return None
    ids = [i.strip() for i in text.split(",") if i.strip()]
    if not ids:
        from edgecart.vision.catalog import CatalogUpdateError

        raise CatalogUpdateError(f"--ids {text!r}: no ids to remove (the list is empty); name at least one id, "
                                 "comma-separated")
    return ids


def _run_images(args: argparse.Namespace, ids: list[str] | None) -> int:
    if args.items is not None:
        print(f"edgecart catalog: {args.bundle} is not a recommendations bundle; --items is for recommendations, "
              "an image-search bundle takes --images or --catalog", file=sys.stderr)
        return 2
    from edgecart.vision.catalog import update_catalog

    r = update_catalog(args.bundle, args.catalog_action, images=args.images, catalog=args.catalog, ids=ids,
                       out=args.out, backend=args.backend)
    for path, why in r.skipped:
        print(f"skipped unreadable picture: {path} ({why})", file=sys.stderr)
    n = len(r.added or r.removed or r.updated)
    print(f"{args.catalog_action}: {n} product(s); version {r.version}, {r.items} items, verified: {r.path} "
          f"({r.seconds:.1f} s)" + (f"; skipped {len(r.skipped)} unreadable picture(s)" if r.skipped else ""))
    return 0


def _run_items(args: argparse.Namespace, ids: list[str] | None) -> int:
    from edgecart.recs.catalog import update_items

    if args.images is not None or args.catalog is not None:
        print(f"edgecart catalog: {args.bundle} is a recommendations bundle; give --items FILE (an id column and "
              "metadata columns)" + (" or --ids" if args.catalog_action == "remove" else ""), file=sys.stderr)
        return 2
    r = update_items(args.bundle, args.catalog_action, items=args.items, ids=ids, id_col=args.id_col, out=args.out,
                     skip_unknown=getattr(args, "skip_unknown", False))
    n = len(r.added or r.removed or r.updated)
    print(f"{args.catalog_action}: {n} item(s); version {r.version}, {r.items} items, models untouched, verified: "
          f"{r.path} ({r.seconds:.1f} s)" + (f"; skipped {r.skipped} row(s) of items not in the bundle"
                                             if r.skipped else ""))
    return 0
