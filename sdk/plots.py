"""matplotlib for the reports, drawn without writing outside the paths a user gave.

matplotlib keeps a font cache and a config folder under ``~/.cache`` and ``~/.config`` (or ``MPLCONFIGDIR``). Unless
the user set ``MPLCONFIGDIR`` or imported matplotlib first, :func:`pyplot` points it at a temporary folder that is
removed when the process ends (the font list is then rebuilt once per process: about a second).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    if "matplotlib" not in sys.modules and "MPLCONFIGDIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="edgecart-matplotlib-")
        atexit.register(shutil.rmtree, folder, True)
        os.environ["MPLCONFIGDIR"] = folder
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
