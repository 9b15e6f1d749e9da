"""ONNX Runtime static QDQ quantization of an exported float ONNX model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .base import ExportRequest

#: The op types the ``-weights-only-ops`` recipes quantize; every other op stays float.
WEIGHT_OPS = ("Conv", "MatMul", "Gemm")


def quantize_static_qdq(float_path: Path, out_path: Path, request: ExportRequest, recipe: str) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    per_channel = "per-channel" in recipe
    ops = list(WEIGHT_OPS) if recipe.endswith("-weights-only-ops") else None
    method = CalibrationMethod.Percentile if "percentile" in recipe else CalibrationMethod.MinMax
    names = list(request.input_names)
    batches = [[np.asarray(t.detach().cpu().numpy()) for t in batch] for batch in request.calibration]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self._it, None)
            return None if b is None else dict(zip(names, b, strict=True))

    with tempfile.TemporaryDirectory(prefix="edgecart-ortq-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(out_path), _Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=method,
            extra_options={"ActivationSymmetric": True} if "percentile" not in recipe else {},
            op_types_to_quantize=ops,
        )
    return {"recipe": recipe, "method": "ONNX Runtime static QDQ", "weights": "int8 symmetric "
            + ("per-channel" if per_channel else "per-tensor"), "activations": "int8 static",
            "calibration": method.name, "calibration_samples": len(batches),
            "quantized_op_types": ops or "all that ONNX Runtime supports"}
