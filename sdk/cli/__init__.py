"""The ``edgecart`` command line: it parses arguments and calls the library, nothing more.

Each command group lives in its own module ``edgecart/cli/<name>_cmd.py`` (or ``_cmds.py``) with an
``add_parser(subparsers)`` function that sets ``func``; modules are found by that naming, listed in ``ORDER`` first.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgecart.runtime.errors import EdgecartError

#: Command modules shown first in --help, in this order; any other ``*_cmd``/``*_cmds`` module follows by name.
ORDER = ("bundle_cmds", "search_cmd", "recommend_cmd", "bench_cmd", "demo_cmd")


def command_modules() -> list[str]:
    import pkgutil

    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.endswith(("_cmd", "_cmds")))
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgecart", description="Distil, compress, export, bundle, run and "
                                     "benchmark e-commerce models for phones and edge devices.")
    from edgecart import __version__

    parser.add_argument("--version", action="version", version=f"edgecart {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(f"edgecart.cli.{name}").add_parser(sub)
    return parser


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub-)command parser that ``args`` went through last: ``edgecart build text`` -> the ``text`` parser."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if name not in (subs[0].choices if subs else {}):
            return parser
        parser = subs[0].choices[name]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser, so its usage is the one shown
        _innermost(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
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
