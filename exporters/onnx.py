"""ONNX exporter: ``torch.onnx.export(dynamo=True)`` with weights embedded, checked with the full ONNX checker.

int8 recipes use ONNX Runtime's static QDQ quantization, calibrated on the request's calibration inputs.
"""

from __future__ import annotations

from pathlib import Path

from .base import EXPORTERS, ExportedFiles, ExportRequest


class OnnxExporter:
    format = "onnx"
    suffix = ".onnx"
    #: In order. ``-weights-only-ops`` quantizes only Conv/MatMul/Gemm and keeps the rest (embedding gathers, adds,
    #: normalisation, attention softmax) in float: the fallback for sequence models, where ONNX Runtime cannot run
    #: the per-channel QDQ made for an embedding table and per-tensor loses too much.
    int8_recipes = ("ort-static-qdq-per-channel-minmax", "ort-static-qdq-per-channel-percentile",
                    "ort-static-qdq-per-channel-minmax-weights-only-ops", "ort-static-qdq-per-tensor-minmax")

    def write(self, request: ExportRequest, path: Path) -> ExportedFiles:
        import onnx
        import torch

        float_path = path if request.precision == "fp32" else path.with_name(path.stem + ".float.tmp.onnx")
        with torch.no_grad():
            program = torch.onnx.export(
                request.model.eval(), tuple(request.example_inputs), dynamo=True, external_data=False,
                input_names=list(request.input_names), output_names=list(request.output_names), verbose=False,
            )
        program.save(str(float_path), external_data=False)
        onnx.checker.check_model(str(float_path), full_check=True)
        if request.precision == "fp32":
            return ExportedFiles(path)
        if request.precision != "int8":
            raise ValueError(f"onnx exporter supports fp32 and int8, not {request.precision!r}")
        from ._ort_quant import quantize_static_qdq

        recipe = request.recipe or self.int8_recipes[0]
        try:
            quant = quantize_static_qdq(float_path, path, request, recipe)
        finally:
            float_path.unlink(missing_ok=True)
        onnx.checker.check_model(str(path), full_check=True)
        return ExportedFiles(path, quantization=quant)


EXPORTERS.register("onnx", OnnxExporter())
