"""ExecuTorch backend (``.pte``). Needs torch (ExecuTorch's Python bindings import it): asking whether the backend is
available imports torch and ``executorch.runtime``, as opening a program does.

- Programs load from their verified bytes with InternalConsistency verification, after a structural check of the
  whole file (:func:`~edgecart.runtime.backends._precheck.check_pte`): ExecuTorch aborts the process on some malformed
  programs (it logs their strings through a callback that cannot fail), so those never reach it.
- A loaded method is not safe to share between threads: one program per thread.
- ExecuTorch's thread pool is process-wide. It is sized once per process, by the first session opened with
  ``threads``; a later session asking for a different count shares that pool (a warning says so) — resizing it while
  another session runs is unsafe.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import Backend, OpenRequest, PerThread, register
from ._precheck import check_pte

_POOL_LOCK = threading.Lock()
_pool_threads: int | None = None  # what this process sized ExecuTorch's thread pool to, once


class ExecuTorchEngine:
    def __init__(self, request: OpenRequest) -> None:
        try:  # exactly REQUIRES
            import torch
            from executorch.runtime import Runtime, Verification
        except ImportError as exc:
            raise BACKEND.unavailable_error(exc) from None
        self._torch = torch
        data = request.data()
        check_pte(data, request.artifact.path)
        runtime = Runtime.get()
        if request.threads:
            set_threadpool_once(int(request.threads))

        def make() -> Any:
            program = runtime.load_program(data, verification=Verification.InternalConsistency)
            return program.load_method("forward")

        self._method = PerThread(make)
        meta = self._method.first.metadata
        n_in, n_out = meta.num_inputs(), meta.num_outputs()
        if n_in != len(request.inputs) or n_out != len(request.outputs):
            from ..errors import ModelLoadError

            raise ModelLoadError(f"{request.artifact.path}: has {n_in} inputs / {n_out} outputs, the manifest declares "
                                 f"{len(request.inputs)} / {len(request.outputs)}; re-export the bundle")
        self.input_dtypes = [np.dtype(s.dtype) for s in request.inputs]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        tensors = [self._torch.from_numpy(np.ascontiguousarray(x)) for x in feeds]
        outs = self._method.get().execute(tensors)
        return [o.detach().numpy().copy() for o in outs]


def set_threadpool_once(threads: int) -> int | None:
    """Size ExecuTorch's process-wide thread pool the first time a session asks; returns the size in force."""
    global _pool_threads
    with _POOL_LOCK:
        if _pool_threads is None:
            try:
                from executorch.extension.pybindings import portable_lib
            except ImportError:
                return None
            reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
            if reset is None:
                return None
            reset(threads)
            _pool_threads = threads
        elif _pool_threads != threads:
            warnings.warn(f"ExecuTorch's thread pool is process-wide and already has {_pool_threads} threads; this "
                          f"session asked for {threads} and shares it", RuntimeWarning, stacklevel=3)
        return _pool_threads


#: What opening a program imports (ExecuTorch's bindings need torch); ``available()`` imports exactly these, so a
#: machine without torch does not list the backend.
REQUIRES = ("torch", "executorch.runtime")

BACKEND = register(Backend("executorch", "executorch", "executorch", "executorch", ExecuTorchEngine, REQUIRES))
