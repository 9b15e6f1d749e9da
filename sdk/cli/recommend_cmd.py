"""``edgecart recommend --bundle DIR --history ID,ID,...``: next items for a shopper's recent items, on this machine."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="recommend the next items after a history of the shop's item ids")
    p.add_argument("--bundle", required=True, help="a recommendations bundle directory or .tar.gz")
    p.add_argument("--history", required=True, help="the shop's item ids, oldest first, comma-separated ('' = none)")
    p.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime, litert or executorch (default auto)")
    p.add_argument("--precision", default=None, choices=("fp32", "int8"), help="artifact precision (default: int8 "
                   "when the bundle kept one)")
    p.add_argument("--threads", type=int, default=None)
    seen = p.add_mutually_exclusive_group()
    seen.add_argument("--include-seen", dest="exclude_seen", action="store_false", default=None,
                      help="allow items already in the history (the default when the bundle ships a buy-again prior)")
    seen.add_argument("--exclude-seen", dest="exclude_seen", action="store_true", default=None,
                      help="leave out items already in the history (the default otherwise)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_recommend)


def _recommend(args: argparse.Namespace) -> int:
    from edgecart.runtime.recommender import Recommender

    if args.k < 1:
        raise SystemExit("edgecart recommend: --k must be >= 1")
    history = [t.strip() for t in args.history.split(",") if t.strip()]
    rec = Recommender(args.bundle, backend=args.backend, threads=args.threads, precision=args.precision)
    result = rec.recommend(history, k=args.k, exclude_seen=args.exclude_seen)
    if args.json:
        print(json.dumps({"items": list(result.items), "scores": list(result.scores), "source": result.source,
                          "unknown": list(result.unknown), "used": result.used, "artifact": result.artifact}))
        return 0
    where = f"model {result.artifact} on {rec.session.backend.name}" if result.source == "model" else "popularity"
    print(f"{len(result)} items from {where}; {result.used} history items used")
    if result.unknown:
        print(f"ignored unknown ids: {', '.join(str(u) for u in result.unknown)}")
    for rank, (item, score) in enumerate(zip(result.items, result.scores, strict=True), 1):
        print(f"{rank:>3}. {item}  {score:.4f}")
    return 0
