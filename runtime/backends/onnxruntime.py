"""ONNX Runtime backend (``.onnx``). Needs only numpy and onnxruntime. Sessions are thread-safe."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import Backend, OpenRequest, register

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
    "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


class OrtEngine:
    def __init__(self, request: OpenRequest) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BACKEND.unavailable_error(exc) from None
        opts = ort.SessionOptions()
        if request.threads:
            opts.intra_op_num_threads = int(request.threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        options = dict(request.options)
        providers = options.get("providers", "CPUExecutionProvider").split(",")
        self.session = ort.InferenceSession(str(request.model_path), sess_options=opts, providers=providers)
        graph_inputs = self.session.get_inputs()
        self._in_names = [i.name for i in graph_inputs]
        names = [s.name for s in request.inputs]
        if sorted(names) == sorted(self._in_names):  # bind by name where the graph kept them
            order = [self._in_names.index(n) for n in names]
        else:
            order = list(range(len(graph_inputs)))
        self._in_names = [graph_inputs[i].name for i in order]
        self.input_dtypes = [np.dtype(_ORT_TYPES.get(graph_inputs[i].type, np.float32)) for i in order]
        self._out_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        outs = self.session.run(self._out_names, dict(zip(self._in_names, feeds, strict=True)))
        return [np.asarray(o) for o in outs]


BACKEND = register(Backend("onnxruntime", "onnx", "onnxruntime", "onnx", OrtEngine))
