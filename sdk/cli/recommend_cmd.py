"""``edgecart recommend --bundle DIR --history ID,ID,...``: next items for a shopper's recent items, on this machine.

Item ids that hold a comma go one per line in a file: ``--history-file FILE`` (``-`` reads standard input)."""

from __future__ import annotations

import argparse
import json
import sys

from edgecart.cli._summary import THREADS_HELP, note_fewer
from edgecart.config import positive_int
from edgecart.runtime.errors import EdgecartError


class HistoryFileError(EdgecartError, OSError):
    """``--history-file`` cannot be read as text."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="recommend the next items after a history of the shop's item ids")
    p.add_argument("--bundle", required=True, help="a recommendations bundle directory or .tar.gz")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--history", help="the shop's item ids, oldest first, comma-separated ('' = none); for ids "
                       "that hold a comma use --history-file")
    given.add_argument("--history-file", metavar="FILE", help="the shop's item ids, oldest first, one per line, "
                       "taken whole (commas included; blank lines skipped); '-' reads standard input")
    p.add_argument("-k", "--k", type=positive_int, default=10, help="how many items, >= 1 (default 10)")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime, litert or executorch (default auto)")
    p.add_argument("--precision", default=None, choices=("fp32", "int8"), help="artifact precision (default: int8 "
                   "when the bundle kept one)")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    seen = p.add_mutually_exclusive_group()
    seen.add_argument("--include-seen", dest="exclude_seen", action="store_false", default=None,
                      help="allow items already in the history (the default when the bundle ships a buy-again prior)")
    seen.add_argument("--exclude-seen", dest="exclude_seen", action="store_true", default=None,
                      help="leave out items already in the history (the default otherwise)")
    p.add_argument("--public-key", default=None, help="refuse the bundle unless it is signed by this Ed25519 public "
                   "key (PEM, from 'edgecart keygen')")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_recommend)


def read_history(args: argparse.Namespace) -> list[str]:
    """The history's ids: ``--history`` split on commas, or ``--history-file``'s lines (each stripped of surrounding
    whitespace, blank ones skipped)."""
    if args.history_file is None:
        return [t.strip() for t in args.history.split(",") if t.strip()]
    try:
        if args.history_file == "-":
            text = sys.stdin.read()
        else:
            with open(args.history_file, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise HistoryFileError(f"--history-file {args.history_file}: cannot read it ({why}); pass a UTF-8 text file "
                               "with one item id per line") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _recommend(args: argparse.Namespace) -> int:
    from edgecart.runtime.recommender import Recommender

    history = read_history(args)
    rec = Recommender(args.bundle, backend=args.backend, threads=args.threads, precision=args.precision,
                      public_key=args.public_key)
    result = rec.recommend(history, k=args.k, exclude_seen=args.exclude_seen)
    if result.unknown and args.history_file is None:
        print("note: --history splits on commas; for item ids that hold a comma pass --history-file FILE, one id "
              "per line", file=sys.stderr)
    note_fewer(args.k, len(result), "item", "that is every item the bundle may recommend for this history (its "
               "catalog, less removed items and, unless --include-seen, the history's own)")
    if args.json:
        print(json.dumps({"items": list(result.items), "scores": list(result.scores), "source": result.source,
                          "unknown": list(result.unknown), "used": result.used, "artifact": result.artifact,
                          "metadata": list(result.metadata)}))
        return 0
    where = f"model {result.artifact} on {rec.session.backend.name}" if result.source == "model" else "popularity"
    print(f"{len(result)} items from {where}; {result.used} history items used")
    if result.unknown:
        print(f"ignored unknown ids: {', '.join(str(u) for u in result.unknown)}")
    records = result.metadata or ({},) * len(result)
    for rank, (item, score, rec_) in enumerate(zip(result.items, result.scores, records, strict=True), 1):
        about = "  ".join(f"{k}={v}" for k, v in rec_.items() if v is not None)
        print(f"{rank:>3}. {item}  {score:.4f}" + (f"  {about}" if about else ""))
    return 0
