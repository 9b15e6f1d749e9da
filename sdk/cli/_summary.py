"""How the commands print what they made or found: the bundle ``export`` and ``compress`` wrote, and the note the
serving commands give when fewer results than ``--k`` came back (not a command module)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

#: the --threads help of the commands that run a bundle
THREADS_HELP = "engine threads, >= 1 (default: the engine's own choice)"


def print_bundle_summary(summary: dict[str, Any], as_json: bool, note: Callable[[dict[str, Any]], str]) -> None:
    """The summary as indented JSON (``as_json``), else one line per artifact — name, precision, bytes and
    ``note(artifact)`` — and the bundle's path. Only the summary goes to stdout (progress goes to stderr)."""
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for a in summary["artifacts"]:
        print(f"{a['name']:32s} {a['precision']:5s} {a['bytes']:>10,d} B  {note(a)}")
    print(f"bundle: {summary['bundle']}")


def note_fewer(asked: int, got: int, what: str, why: str) -> None:
    """On stderr, when fewer than ``--k`` results came back: how many, and why (``why`` completes the sentence)."""
    if got < asked:
        print(f"note: --k {asked}, but {got} {what}{'' if got == 1 else 's'} came back: {why}", file=sys.stderr)
