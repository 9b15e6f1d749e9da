"""ONNX Runtime backend (``.onnx``). Needs only numpy and onnxruntime. Sessions are thread-safe.

The model is loaded from its verified bytes; external weights resolve only in a private temporary folder holding the
verified side files (never against the current directory)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import Backend, OpenRequest, register
from ._precheck import check_onnx

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
        data = request.data()
        check_onnx(data, request.artifact.path)
        opts = ort.SessionOptions()
        if request.threads:
            opts.intra_op_num_threads = int(request.threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        options = dict(request.options)
        providers = options.get("providers", "CPUExecutionProvider").split(",")
        self.session = _load(ort, request, data, opts, providers)
        graph_inputs = self.session.get_inputs()
        self._in_names = [i.name for i in graph_inputs]
        names = [s.name for s in request.inputs]
        if sorted(names) == sorted(self._in_names):  # bind by name where the graph kept them
            order = [self._in_names.index(n) for n in names]
        elif len(graph_inputs) == len(names):
            order = list(range(len(graph_inputs)))
        else:
            from ..errors import ModelLoadError

            raise ModelLoadError(f"{request.artifact.path}: the graph has {len(graph_inputs)} inputs, the manifest "
                                 f"declares {len(names)}; re-export the bundle")
        self._in_names = [graph_inputs[i].name for i in order]
        self.input_dtypes = [np.dtype(_ORT_TYPES.get(graph_inputs[i].type, np.float32)) for i in order]
        self._out_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        outs = self.session.run(self._out_names, dict(zip(self._in_names, feeds, strict=True)))
        return [np.asarray(o) for o in outs]


def _load(ort: Any, request: OpenRequest, data: bytes, opts: Any, providers: list[str]) -> Any:
    """Load from the verified bytes. External weights resolve in a private, fresh temporary folder that holds only
    the verified side files (under the names the model uses) — without it ONNX Runtime resolves them against the
    current directory, reading files nobody verified."""
    with tempfile.TemporaryDirectory(prefix="edgecart-onnx-") as tmp:
        root = Path(tmp).resolve()
        for name, blob in request.side_files:
            target = (root / name).resolve()
            if not target.is_relative_to(root):
                from ..errors import UnsafePathError

                raise UnsafePathError(f"{request.artifact.path}: side file {name!r} is not beside the model or below "
                                      "its folder; re-export the bundle")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path", str(root))
        return ort.InferenceSession(data, sess_options=opts, providers=providers)


BACKEND = register(Backend("onnxruntime", "onnx", "onnxruntime", "onnx", OrtEngine))
