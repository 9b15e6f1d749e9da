"""``edgecart build TASK``: build a release bundle from the user's own data.

Each task's builder is a module with ``add_arguments(parser)`` (light: no torch at import) and ``run(args) -> int``;
``BUILDERS`` maps the task name to that module. A builder module that is not there yet is simply not offered.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

#: task name -> module providing ``add_arguments`` and ``run``
BUILDERS = {
    "image-search": "edgecart.vision.build",
    "recommendations": "edgecart.recs.build",
    "text": "edgecart.text.build",
}


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def add_parser(sub: argparse._SubParsersAction) -> None:
    here = {task: mod for task, mod in BUILDERS.items() if _present(mod)}
    if not here:
        return
    p = sub.add_parser("build", help="build a verified bundle from your own data: " + ", ".join(here))
    tasks = p.add_subparsers(dest="build_task", required=True, metavar="TASK")
    for task, mod in here.items():
        m = importlib.import_module(mod)
        tp = tasks.add_parser(task, help=(m.__doc__ or task).strip().splitlines()[0])
        m.add_arguments(tp)
        tp.set_defaults(func=m.run)
