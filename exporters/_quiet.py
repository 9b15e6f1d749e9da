"""Silence converters that print progress to the process's stdout/stderr (litert-torch, MLIR), at the fd level.

The captured text is re-emitted when the wrapped block raises, so failures keep their diagnostics.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_fds(enabled: bool = True) -> Iterator[None]:
    if not enabled or os.environ.get("EDGECART_VERBOSE"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        failed = False
        py_out, py_err = sys.stdout, sys.stderr  # Python-level writers too (a replaced sys.stdout skips fd 1)
        text = open(log.fileno(), "w", closefd=False, encoding="utf-8", errors="replace")  # noqa: SIM115
        sys.stdout = sys.stderr = text
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            text.flush()
            sys.stdout, sys.stderr = py_out, py_err
            text.close()
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:
                log.seek(0)
                tail = log.read()[-4000:].decode("utf-8", "replace")
                print(tail, file=sys.stderr)
