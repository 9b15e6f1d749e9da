"""ExecuTorch exporter: ``torch.export`` → edge dialect lowered to XNNPACK → ``.pte``.

int8 recipes use PT2E with ``XNNPACKQuantizer``: static (per-channel or per-tensor), dynamic, QAT; modules may be kept
in float.
"""

from __future__ import annotations

from pathlib import Path

from .base import EXPORTERS, ExportedFiles, ExportRequest
from .calibrate import keep_in_float, pt2e_quantize, pt2e_record, pt2e_supports, quantization_config
from .recipes import QuantRecipe, StaticInt8


class ExecuTorchExporter:
    format = "executorch"
    suffix = ".pte"
    int8_recipes: tuple[QuantRecipe, ...] = (StaticInt8(), StaticInt8(per_channel=False))

    def supports(self, recipe: QuantRecipe) -> bool:
        return pt2e_supports(recipe)

    def why_not(self, recipe: QuantRecipe) -> str | None:
        """Why a recipe is refused, where there is more to say than "not implemented"."""
        if recipe.kind == "weight_only_int8":
            return ("ExecuTorch's XNNPACK path has no int8-weight/float-activation kernels, and the PT2E weight-only "
                    "export measured cosine 0.85 to the float model; use dynamic-int8 (int8 weights, activations "
                    "quantized per inference) or static-int8-per-channel on ExecuTorch")
        return None

    def write(self, request: ExportRequest, path: Path) -> ExportedFiles:
        import torch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        model = request.model.eval()
        quant = None
        if request.precision == "int8":
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )

            recipe = request.recipe or self.int8_recipes[0]
            quantizer = XNNPACKQuantizer().set_global(quantization_config(recipe, get_symmetric_quantization_config))
            keep_in_float(quantizer, getattr(recipe, "exclude", ()))
            info: dict = {}
            model = pt2e_quantize(model, _with(request, recipe), quantizer, info=info)
            quant = pt2e_record(recipe, "XNNPACKQuantizer", len(request.calibration), info)
        elif request.precision != "fp32":
            raise ValueError(f"executorch exporter supports fp32 and int8, not {request.precision!r}")
        with torch.no_grad():
            ep = torch.export.export(model, tuple(request.example_inputs))
            program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
        path.write_bytes(program.buffer)
        return ExportedFiles(path, delegate="xnnpack", quantization=quant)


def _with(request: ExportRequest, recipe: QuantRecipe) -> ExportRequest:
    import dataclasses

    return request if request.recipe is recipe else dataclasses.replace(request, recipe=recipe)


EXPORTERS.register("executorch", ExecuTorchExporter())
