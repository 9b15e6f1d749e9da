"""ONNX exporter: ``torch.onnx.export(dynamo=True)`` with weights embedded, checked with the full ONNX checker.

int8 recipes use ONNX Runtime's quantizer on the exported float model: static QDQ (per-channel or per-tensor; MinMax,
percentile or entropy calibration on the request's calibration inputs; optionally only Conv/MatMul/Gemm) and dynamic
int8; modules may be kept in float (``exclude`` → ``nodes_to_exclude``, matched through the exporter's name scopes).
"""

from __future__ import annotations

from pathlib import Path

from .base import EXPORTERS, ExportedFiles, ExportRequest
from .recipes import DynamicInt8, QuantRecipe, StaticInt8, WeightOnlyInt8


class OnnxExporter:
    format = "onnx"
    suffix = ".onnx"
    #: In order. The Conv/Linear-only recipe quantizes only Conv/MatMul/Gemm and keeps the rest (embedding gathers,
    #: adds, normalisation, attention softmax) in float: the fallback for sequence models, where ONNX Runtime cannot
    #: run the per-channel QDQ made for an embedding table and per-tensor loses too much.
    int8_recipes: tuple[QuantRecipe, ...] = (
        StaticInt8(calibration="minmax"), StaticInt8(calibration="percentile"),
        StaticInt8(calibration="minmax", ops=("conv", "linear")), StaticInt8(per_channel=False, calibration="minmax"))

    def supports(self, recipe: QuantRecipe) -> bool:
        if isinstance(recipe, StaticInt8):
            return recipe.calibration != "histogram"
        return isinstance(recipe, (DynamicInt8, WeightOnlyInt8))

    def write(self, request: ExportRequest, path: Path) -> ExportedFiles:
        import onnx
        import torch

        if request.precision not in ("fp32", "int8"):
            raise ValueError(f"onnx exporter supports fp32 and int8, not {request.precision!r}")
        float_path = path if request.precision == "fp32" else path.with_name(path.stem + ".float.tmp.onnx")
        try:
            with torch.no_grad():
                program = torch.onnx.export(
                    request.model.eval(), tuple(request.example_inputs), dynamo=True, external_data=False,
                    input_names=list(request.input_names), output_names=list(request.output_names), verbose=False,
                )
            program.save(str(float_path), external_data=False)
            onnx.checker.check_model(str(float_path), full_check=True)
            if request.precision == "fp32":
                return ExportedFiles(path)
            from ._ort_quant import quantize_onnx

            recipe = request.recipe or self.int8_recipes[0]
            quant = quantize_onnx(float_path, path, request, recipe)
        finally:
            if float_path != path:
                float_path.unlink(missing_ok=True)
        onnx.checker.check_model(str(path), full_check=True)
        return ExportedFiles(path, quantization=quant)


EXPORTERS.register("onnx", OnnxExporter())
