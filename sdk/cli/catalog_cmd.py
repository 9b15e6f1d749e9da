"""``edgecart catalog add|remove|update BUNDLE``: change an image-search bundle's products without re-exporting."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="add, remove or update products of an image-search bundle (new version, "
                       "models untouched)")
    actions = p.add_subparsers(dest="catalog_action", required=True, metavar="ACTION")
    for action, text in (("add", "embed new products with the bundle's model and add them"),
                         ("remove", "remove products by id"),
                         ("update", "re-embed existing products from new pictures / metadata")):
        a = actions.add_parser(action, help=text)
        a.add_argument("bundle", help="the bundle folder")
        src = a.add_mutually_exclusive_group(required=True)
        src.add_argument("--images", metavar="DIR", help="pictures, one sub-folder per category (ids = relative "
                         "paths)")
        src.add_argument("--catalog", metavar="CSV", help="CSV with image, id, category and extra metadata columns")
        if action == "remove":
            src.add_argument("--ids", help="comma-separated ids to remove")
        a.add_argument("--out", help="write the new version here (default: replace the bundle atomically)")
        a.add_argument("--backend", default="auto", help="runtime backend that embeds the pictures (default: auto)")
        a.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from edgecart.vision.catalog import update_catalog

    ids = [i.strip() for i in args.ids.split(",") if i.strip()] if getattr(args, "ids", None) else None
    r = update_catalog(args.bundle, args.catalog_action, images=args.images, catalog=args.catalog, ids=ids,
                       out=args.out, backend=args.backend)
    for path, why in r.skipped:
        print(f"skipped unreadable picture: {path} ({why})", file=sys.stderr)
    n = len(r.added or r.removed or r.updated)
    print(f"{args.catalog_action}: {n} product(s); version {r.version}, {r.items} items, verified: {r.path} "
          f"({r.seconds:.1f} s)" + (f"; skipped {len(r.skipped)} unreadable picture(s)" if r.skipped else ""))
    return 0
