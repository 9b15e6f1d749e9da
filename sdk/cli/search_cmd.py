"""``edgecart search IMAGE --bundle DIR``: search a bundle's catalog with a picture, on this machine."""

from __future__ import annotations

import argparse
import json

from edgecart.cli._summary import THREADS_HELP, note_fewer
from edgecart.config import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="find the catalog items most similar to a picture (image_search bundles)")
    p.add_argument("image", help="a picture file (JPEG, PNG, WebP, BMP, ...)")
    p.add_argument("--bundle", required=True, help="bundle folder or .tar.gz")
    p.add_argument("-k", "--k", type=positive_int, default=10, help="how many items to return (default: 10)")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime, litert or executorch (default: auto)")
    p.add_argument("--artifact", default=None, help="artifact name (default: int8 first, then fp32)")
    p.add_argument("--catalog", choices=("int8", "fp32"), default=None, help="catalog embeddings to scan")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--index", choices=("auto", "exact", "ivf"), default="auto",
                   help="auto: the bundle's approximate index when it has one; exact: scan every item; ivf: require "
                        "the index")
    p.add_argument("--nprobe", type=int, default=None, help="index lists to search (default: the bundle's)")
    p.add_argument("--public-key", default=None, help="refuse the bundle unless it is signed by this Ed25519 public "
                   "key (PEM, from 'edgecart keygen')")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_search)


def _search(args: argparse.Namespace) -> int:
    from edgecart.runtime.search import ImageSearch

    s = ImageSearch(args.bundle, args.backend, args.threads, artifact=args.artifact, catalog_precision=args.catalog,
                    index=args.index, nprobe=args.nprobe, public_key=args.public_key)
    r = s.search(args.image, k=args.k)
    note_fewer(args.k, len(r.metadata), "item", "the index lists searched hold no more; raise --nprobe or pass --index "
               "exact" if s.approximate else f"the catalog holds {len(s.catalog)} items")
    if args.json:
        print(json.dumps({"artifact": s.session.artifact.name, "backend": s.session.backend.name,
                          "results": list(r.metadata)}, indent=2))
        return 0
    how = "approximate (IVF index)" if s.approximate else "exact"
    print(f"{s.session.artifact.name} on {s.session.backend.name}; catalog {len(s.catalog)} items "
          f"({s.catalog.precision}, embedded by {s.catalog.embedded_by or 'unknown'}; {how} search)")
    print(f"{'rank':>4}  {'score':>7}  {'category':<16} id")
    own = ("id", "category", "category_index", "score")
    for i, m in enumerate(r.metadata, 1):
        extra = ", ".join(f"{k}={v}" for k, v in m.items() if k not in own)
        print(f"{i:>4}  {m['score']:7.4f}  {m['category']:<16} {m['id']}" + (f"  ({extra})" if extra else ""))
    return 0
