"""ONNX Runtime quantization (static QDQ, dynamic) of an exported float ONNX model, driven by a typed recipe."""

from __future__ import annotations

import ast
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import ExportRequest, UnsupportedRecipeError
from .recipes import DynamicInt8, QuantRecipe, StaticInt8, WeightOnlyInt8, recipe_to_dict

#: ONNX op types per recipe op kind.
OP_TYPES = {"conv": ("Conv",), "linear": ("MatMul", "Gemm")}


def nodes_in_modules(model_path: Path, modules: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes that the torch exporter created inside the modules ``modules`` (from each node's
    ``pkg.torch.onnx.name_scopes`` metadata; a name covers its submodules)."""
    import onnx

    if not modules:
        return []
    graph = onnx.load(str(model_path), load_external_data=False).graph
    out, seen = [], set()
    for node in graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        try:
            scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        except (ValueError, SyntaxError):
            scopes = []
        seen.update(str(s) for s in scopes)
        if any(s == m or str(s).startswith(m + ".") for s in scopes for m in modules):
            out.append(node.name)
    from .recipes import check_module_names

    check_module_names(modules, sorted(seen), "the recipe's exclude")  # a misspelt name must not pass unnoticed
    return out


def quantize_onnx(float_path: Path, out_path: Path, request: ExportRequest, recipe: QuantRecipe) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not isinstance(recipe, (WeightOnlyInt8, StaticInt8, DynamicInt8)):
        raise UnsupportedRecipeError(f"ONNX Runtime's quantizer cannot apply {recipe.name}")
    # Every recipe: int8 weights in a 7-bit range (reduce_range). On x86 without VNNI, ONNX Runtime's uint8 x int8
    # kernels add pairs of products in int16, which saturates with full-range weights (2 * 255 * 127 > 32767): a
    # 3-layer MLP's weight-only int8 fell to cosine 0.973 on such a CPU (AVX2 only), the grocery student's static
    # int8 to 0.907. The file must be right on whatever CPU runs it.
    weights = {"weight_type": QuantType.QInt8, "reduce_range": True}
    with tempfile.TemporaryDirectory(prefix="edgecart-ortq-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        if isinstance(recipe, WeightOnlyInt8):
            quantize_dynamic(str(pre), str(out_path), per_channel=True, **weights)
            return {"recipe": recipe.name, "config": recipe_to_dict(recipe), "method": "ONNX Runtime dynamic",
                    "weights": "int8 symmetric per-channel, 7-bit range",
                    "activations": "float in and out; quantized to uint8 per inference inside the integer kernels "
                    "(ONNX Runtime has no int8 weight-only CPU kernels)"}
        excluded = nodes_in_modules(float_path, recipe.exclude)
        base = {"recipe": recipe.name, "config": recipe_to_dict(recipe), "float_modules": list(recipe.exclude),
                "float_nodes": excluded, "weights": "int8 symmetric " + (
                    "per-channel" if recipe.per_channel else "per-tensor") + ", 7-bit range"}
        if isinstance(recipe, DynamicInt8):
            quantize_dynamic(str(pre), str(out_path), per_channel=recipe.per_channel, nodes_to_exclude=excluded,
                             **weights)
            return {**base, "method": "ONNX Runtime dynamic", "activations": "uint8 dynamic (per inference)"}
        ops = [t for k in recipe.ops for t in OP_TYPES[k]] or None
        method = {"auto": CalibrationMethod.MinMax, "minmax": CalibrationMethod.MinMax,
                  "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[recipe.calibration]
        names = list(request.input_names)
        batches = [[np.asarray(t.detach().cpu().numpy()) for t in batch] for batch in request.calibration]

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(batches)

            def get_next(self) -> dict[str, np.ndarray] | None:
                b = next(self._it, None)
                return None if b is None else dict(zip(names, b, strict=True))

        # uint8 activations (asymmetric) by default: ReLU/ReLU6 clips fold into QLinearConv's output range, and
        # ONNX Runtime runs U8S8 fastest on x86 (benchmarks/results/compression/ort_int8.md)
        unsigned = recipe.activations in ("auto", "uint8")
        symmetric = not unsigned and method == CalibrationMethod.MinMax
        quantize_static(
            str(pre), str(out_path), _Reader(), quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel,
            activation_type=QuantType.QUInt8 if unsigned else QuantType.QInt8, calibrate_method=method,
            extra_options={"ActivationSymmetric": True} if symmetric else {}, op_types_to_quantize=ops,
            nodes_to_exclude=excluded, **weights,
        )
    acts = "uint8 static, asymmetric" if unsigned else "int8 static" + (", symmetric" if symmetric else "")
    return {**base, "method": "ONNX Runtime static QDQ", "activations": acts, "calibration": method.name,
            "calibration_samples": len(batches), "quantized_op_types": ops or "all that ONNX Runtime supports"}
