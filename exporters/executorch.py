"""ExecuTorch exporter: ``torch.export`` → edge dialect lowered to XNNPACK → ``.pte``.

int8 recipes use PT2E with ``XNNPACKQuantizer`` (symmetric, per-channel weights, static activations).
"""

from __future__ import annotations

from pathlib import Path

from .base import EXPORTERS, ExportedFiles, ExportRequest
from .calibrate import pt2e_quantize


class ExecuTorchExporter:
    format = "executorch"
    suffix = ".pte"
    int8_recipes = ("pt2e-xnnpack-per-channel", "pt2e-xnnpack-per-tensor")

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
            per_channel = recipe == "pt2e-xnnpack-per-channel"
            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
            model = pt2e_quantize(model, request, quantizer)
            quant = {"recipe": recipe, "method": "PT2E static", "quantizer": "XNNPACKQuantizer",
                     "weights": "int8 symmetric " + ("per-channel" if per_channel else "per-tensor"),
                     "activations": "int8 static", "calibration_samples": len(request.calibration)}
        elif request.precision != "fp32":
            raise ValueError(f"executorch exporter supports fp32 and int8, not {request.precision!r}")
        with torch.no_grad():
            ep = torch.export.export(model, tuple(request.example_inputs))
            program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
        path.write_bytes(program.buffer)
        return ExportedFiles(path, delegate="xnnpack", quantization=quant)


EXPORTERS.register("executorch", ExecuTorchExporter())
