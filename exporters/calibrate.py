"""PT2E calibration shared by the ExecuTorch and LiteRT int8 paths."""

from __future__ import annotations

from typing import Any

from .base import ExportRequest


def pt2e_quantize(model: Any, request: ExportRequest, quantizer: Any, fold_quantize: bool = True) -> Any:
    """Prepare ``model`` with ``quantizer``, run the calibration inputs through it, convert; returns the module."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    with torch.no_grad():
        graph = torch.export.export(model.eval(), tuple(request.example_inputs)).module()
        prepared = prepare_pt2e(graph, quantizer)
        for batch in request.calibration:
            prepared(*batch)
        return convert_pt2e(prepared, fold_quantize=fold_quantize)
