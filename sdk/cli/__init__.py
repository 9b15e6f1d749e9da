"""The ``edgecart`` command line: it parses arguments and calls the library, nothing more.

Each command group lives in its own module with an ``add_parser(subparsers)`` function that sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgecart.runtime.errors import EdgecartError

#: Modules under edgecart.cli that contribute commands, in the order they appear in --help.
COMMAND_MODULES = ("bundle_cmds", "search_cmd", "recommend_cmd", "bench_cmd", "demo_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgecart", description="Distil, compress, export, bundle, run and "
                                     "benchmark e-commerce models for phones and edge devices.")
    from edgecart import __version__

    parser.add_argument("--version", action="version", version=f"edgecart {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"edgecart.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgecartError as exc:
        print(f"edgecart: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgecart: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
