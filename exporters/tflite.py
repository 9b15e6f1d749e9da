"""TFLite / LiteRT exporter: ``litert_torch.convert``. int64 I/O becomes int32 (the runtime casts).

int8 recipes use litert-torch's PT2E quantizer; the result has int8 input/output tensors, which the runtime
quantises and dequantises with each tensor's scale and zero-point.
"""

from __future__ import annotations

from pathlib import Path

from .base import EXPORTERS, ExportedFiles, ExportRequest
from .calibrate import pt2e_quantize


class TFLiteExporter:
    format = "tflite"
    suffix = ".tflite"
    int8_recipes = ("pt2e-litert-per-channel", "pt2e-litert-per-tensor")

    def write(self, request: ExportRequest, path: Path) -> ExportedFiles:
        import litert_torch
        import torch

        model = request.model.eval()
        with torch.no_grad():
            if request.precision == "fp32":
                edge = litert_torch.convert(model, tuple(request.example_inputs))
                edge.export(str(path))
                return ExportedFiles(path, delegate="xnnpack")
            if request.precision != "int8":
                raise ValueError(f"tflite exporter supports fp32 and int8, not {request.precision!r}")
            from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
            from litert_torch.quantize.quant_config import QuantConfig

            recipe = request.recipe or self.int8_recipes[0]
            per_channel = recipe == "pt2e-litert-per-channel"
            quantizer = PT2EQuantizer().set_global(
                get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=False))
            converted = pt2e_quantize(model, request, quantizer, fold_quantize=False)
            edge = litert_torch.convert(converted, tuple(request.example_inputs),
                                        quant_config=QuantConfig(pt2e_quantizer=quantizer))
            edge.export(str(path))
        quant = {"recipe": recipe, "method": "PT2E static", "quantizer": "litert_torch PT2EQuantizer",
                 "weights": "int8 symmetric " + ("per-channel" if per_channel else "per-tensor"),
                 "activations": "int8 static", "io": "int8 tensors; runtime converts with scale/zero-point",
                 "calibration_samples": len(request.calibration)}
        return ExportedFiles(path, delegate="xnnpack", quantization=quant)


EXPORTERS.register("tflite", TFLiteExporter())
