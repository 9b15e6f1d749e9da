"""``edgecart compress --config compress.toml``: prune → distil → quantize a model from a config file, as a bundle."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._summary import print_bundle_summary


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="prune / distil / quantize a model from a config file into a bundle",
                       description="Run a compression recipe ([prune], [distill], [quantize]) on the model that "
                       "compress.toml names, and write the verified bundle; the manifest records the recipe.")
    p.add_argument("--config", required=True, help="compress.toml (or .json)")
    p.add_argument("--out", default=None, help="bundle directory (overrides the config's out)")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace an existing bundle")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(func=run)


def note(artifact: dict[str, Any]) -> str:
    """The last column of an artifact's summary line: the compression recipe that made it (blank for none)."""
    return artifact["recipe"] or ""


def run(args: argparse.Namespace) -> int:
    from edgecart.compress.cli_support import compress_from_config

    summary = compress_from_config(args.config, out=args.out, overwrite=args.overwrite,
                                   progress=lambda m: print(f"edgecart compress: {m}", file=sys.stderr, flush=True))
    print_bundle_summary(summary, args.json, note)
    return 0
