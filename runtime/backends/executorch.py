"""ExecuTorch backend (``.pte``). Programs load with InternalConsistency verification. Needs torch (ExecuTorch's
Python bindings import it). A loaded method is not safe to share between threads: one program per thread."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import Backend, OpenRequest, PerThread, register


class ExecuTorchEngine:
    def __init__(self, request: OpenRequest) -> None:
        try:
            import torch
            from executorch.runtime import Runtime, Verification
        except ImportError as exc:
            raise BACKEND.unavailable_error(exc) from None
        self._torch = torch
        runtime = Runtime.get()
        data = request.model_path.read_bytes()
        if request.threads:
            _set_threadpool(int(request.threads))

        def make() -> Any:
            program = runtime.load_program(data, verification=Verification.InternalConsistency)
            return program.load_method("forward")

        self._method = PerThread(make)
        meta = self._method.first.metadata
        n_in = meta.num_inputs()
        if n_in != len(request.inputs):
            from ..errors import BundleError

            raise BundleError(f"{request.model_path.name}: has {n_in} inputs, the manifest declares "
                              f"{len(request.inputs)}; re-export the bundle")
        self.input_dtypes = [np.dtype(s.dtype) for s in request.inputs]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        tensors = [self._torch.from_numpy(np.ascontiguousarray(x)) for x in feeds]
        outs = self._method.get().execute(tensors)
        return [o.detach().numpy().copy() for o in outs]


def _set_threadpool(threads: int) -> None:
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError:
        return
    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    if reset is not None:
        reset(threads)


BACKEND = register(Backend("executorch", "executorch", "executorch", "executorch", ExecuTorchEngine))
