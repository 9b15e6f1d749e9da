"""LiteRT / TFLite backend (``.tflite``). Uses ``ai_edge_litert``; falls back to ``tflite_runtime`` on devices that
only have that. Interpreters are not thread-safe: one per thread. Quantised (int8) I/O tensors are converted with the
tensor's own scale and zero-point, so callers always pass and get floats. The interpreter is built from the verified
bytes (``model_content``), after a check of the FlatBuffer identifier and root offset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import Backend, OpenRequest, PerThread, dequantize, quantize, register
from ._precheck import check_tflite


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as first:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            raise BACKEND.unavailable_error(first) from None
    return Interpreter


class LiteRTEngine:
    def __init__(self, request: OpenRequest) -> None:
        cls = _interpreter_class()
        data, threads = request.data(), request.threads
        check_tflite(data, request.artifact.path)

        def make() -> Any:
            it = cls(model_content=data, num_threads=threads) if threads else cls(model_content=data)
            it.allocate_tensors()
            return it

        self._interp = PerThread(make)
        first = self._interp.first
        self._inputs = first.get_input_details()
        self._outputs = first.get_output_details()
        if len(self._inputs) != len(request.inputs) or len(self._outputs) != len(request.outputs):
            from ..errors import ModelLoadError

            raise ModelLoadError(
                f"{request.model_path.name}: has {len(self._inputs)} inputs / {len(self._outputs)} outputs, the "
                f"manifest declares {len(request.inputs)} / {len(request.outputs)}; re-export the bundle"
            )
        self.input_dtypes = []
        for d, spec in zip(self._inputs, request.inputs, strict=True):
            scale, _zp = d["quantization"]
            quantized = scale != 0 and spec.dtype.startswith("float")
            self.input_dtypes.append(np.dtype(np.float32) if quantized else np.dtype(d["dtype"]))

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        it = self._interp.get()
        for d, x in zip(self._inputs, feeds, strict=True):
            scale, zp = d["quantization"]
            if scale != 0 and np.issubdtype(x.dtype, np.floating):
                x = quantize(x, scale, zp, d["dtype"])
            it.set_tensor(d["index"], np.ascontiguousarray(x, dtype=d["dtype"]))
        it.invoke()
        outs = []
        for d in self._outputs:
            y = it.get_tensor(d["index"])
            scale, zp = d["quantization"]
            outs.append(dequantize(y, scale, zp) if scale != 0 else np.array(y))
        return outs


BACKEND = register(Backend("litert", "tflite", "ai_edge_litert", "tflite", LiteRTEngine))
