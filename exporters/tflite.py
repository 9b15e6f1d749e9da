"""TFLite / LiteRT exporter: ``litert_torch.convert``. int64 I/O becomes int32 (the runtime casts).

int8 recipes use litert-torch's PT2E quantizer (static, dynamic; modules may be kept in float; not QAT, see
``TFLiteExporter.why_not``); a static int8
result has int8 input/output tensors, which the runtime quantises and dequantises with each tensor's scale and
zero-point.
"""

from __future__ import annotations

from pathlib import Path

from .base import EXPORTERS, ExportedFiles, ExportRequest
from .calibrate import keep_in_float, pt2e_quantize, pt2e_record, pt2e_supports, quantization_config
from .executorch import _with
from .recipes import QAT, QuantRecipe, StaticInt8, WeightOnlyInt8


class TFLiteExporter:
    format = "tflite"
    suffix = ".tflite"
    #: Tried in order by the gate. LiteRT has no QAT fallback (see ``why_not``), so the last resort keeps the
    #: activations in float and only the weights in int8 (dynamic range): a smaller file where static int8 of the
    #: activations loses too much (e.g. attention and layer norms of a small sequence model).
    int8_recipes: tuple[QuantRecipe, ...] = (StaticInt8(), StaticInt8(per_channel=False), WeightOnlyInt8())

    def supports(self, recipe: QuantRecipe) -> bool:
        if isinstance(recipe, QAT):
            return False  # see why_not
        return isinstance(recipe, WeightOnlyInt8) or pt2e_supports(recipe)

    def why_not(self, recipe: QuantRecipe) -> str | None:
        if isinstance(recipe, QAT):
            return ("litert-torch's PT2E quantizer cannot prepare a model for QAT with the installed torchao (its "
                    "conv-bn QAT annotator passes a function where torch.export wants a module: ValueError, measured "
                    "on a one-layer model too); use QAT on ExecuTorch, or a static recipe with layers kept in float")
        return None

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
        recipe = request.recipe or self.int8_recipes[0]
        if isinstance(recipe, WeightOnlyInt8):
            return _dynamic_range(model, request, path, recipe)
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig

        quantizer = PT2EQuantizer().set_global(quantization_config(recipe, get_symmetric_quantization_config))
        keep_in_float(quantizer, getattr(recipe, "exclude", ()))
        info: dict = {}
        converted = pt2e_quantize(model, _with(request, recipe), quantizer, fold_quantize=False, info=info)
        with torch.no_grad():
            edge = litert_torch.convert(converted, tuple(request.example_inputs),
                                        quant_config=QuantConfig(pt2e_quantizer=quantizer))
            edge.export(str(path))
        quant = pt2e_record(recipe, "litert_torch PT2EQuantizer", len(request.calibration), info)
        quant["io"] = "int8 tensors where the graph starts/ends quantized; the runtime converts with scale/zero-point"
        return ExportedFiles(path, delegate="xnnpack", quantization=quant)


def _dynamic_range(model: object, request: ExportRequest, path: Path, recipe: WeightOnlyInt8) -> ExportedFiles:
    """The float model converted, then its weights quantized to int8 by ai-edge-quantizer's dynamic-range recipe
    (float inputs and outputs; no calibration)."""
    import tempfile

    import litert_torch
    import torch
    from ai_edge_quantizer import quantizer as aeq
    from ai_edge_quantizer import recipe as aeq_recipe

    from .recipes import recipe_to_dict

    with tempfile.TemporaryDirectory(prefix="edgecart-drq-") as tmp:
        float_path = Path(tmp) / "float.tflite"
        with torch.no_grad():
            litert_torch.convert(model, tuple(request.example_inputs)).export(str(float_path))
        q = aeq.Quantizer(str(float_path), aeq_recipe.dynamic_wi8_afp32())
        result = q.quantize(enable_progress_report=False)
        result.export_model(str(path), overwrite=True)
    quant = {"recipe": recipe.name, "config": recipe_to_dict(recipe), "method": "ai-edge-quantizer dynamic range",
             "weights": "int8 symmetric per-channel", "activations": "float in and out; quantized on the fly inside "
             "the dynamic-range kernels", "calibration_samples": 0}
    return ExportedFiles(path, delegate="xnnpack", quantization=quant)


EXPORTERS.register("tflite", TFLiteExporter())
