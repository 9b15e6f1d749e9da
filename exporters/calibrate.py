"""PT2E quantization shared by the ExecuTorch and LiteRT int8 paths: a quantizer configured from a typed recipe,
layers kept in float, calibration, and quantization-aware fine-tuning."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from .base import ExportRequest, UnsupportedRecipeError
from .recipes import QAT, QAT_LOSSES, DynamicInt8, QuantRecipe, StaticInt8

#: ``get_config(is_per_channel=..., is_qat=..., is_dynamic=...)`` of a PT2E quantizer module.
GetConfig = Callable[..., Any]

#: Calibration methods the PT2E paths implement (``auto`` = the quantizer's histogram observer).
PT2E_CALIBRATIONS = ("auto", "histogram", "minmax")


def pt2e_supports(recipe: QuantRecipe) -> bool:
    """Recipes the PT2E quantizers (XNNPACK, litert-torch) can apply: static/dynamic/QAT int8, with exclusions;
    no op-kind restriction (their annotators choose the patterns) and no percentile/entropy calibration."""
    if isinstance(recipe, StaticInt8):
        return recipe.calibration in PT2E_CALIBRATIONS and not recipe.ops and recipe.activations != "uint8"
    return isinstance(recipe, (DynamicInt8, QAT))


def quantization_config(recipe: QuantRecipe, get_config: GetConfig) -> Any:
    if isinstance(recipe, StaticInt8):
        cfg = get_config(is_per_channel=recipe.per_channel, is_qat=False, is_dynamic=False)
        if recipe.calibration == "minmax":
            from torchao.quantization.pt2e import MinMaxObserver

            act = cfg.input_activation
            obs = MinMaxObserver.with_args(eps=2**-12)
            act = dataclasses.replace(act, observer_or_fake_quant_ctr=obs)
            out = dataclasses.replace(cfg.output_activation, observer_or_fake_quant_ctr=obs)
            cfg = dataclasses.replace(cfg, input_activation=act, output_activation=out)
        return cfg
    if isinstance(recipe, DynamicInt8):
        return get_config(is_per_channel=recipe.per_channel, is_qat=False, is_dynamic=True)
    if isinstance(recipe, QAT):
        return get_config(is_per_channel=recipe.per_channel, is_qat=True, is_dynamic=False)
    raise UnsupportedRecipeError(f"the PT2E quantizers cannot apply {recipe.name}")


def module_filter(names: Sequence[str]) -> Callable[[Any], bool]:
    """True for an FX node created inside one of the modules ``names`` (a name covers its submodules)."""
    def clean(path: str) -> str:
        # torch.export writes "L['self'].features.0" or "features.0" depending on the version
        return path.replace("L['self'].", "").replace("L__self__", "").lstrip(".")

    wanted = tuple(names)

    def inside(node: Any) -> bool:
        for entry in (node.meta.get("nn_module_stack") or {}).values():
            path = clean(str(entry[0]))
            if any(path == n or path.startswith(n + ".") for n in wanted):
                return True
        return False

    return inside


def keep_in_float(quantizer: Any, names: Sequence[str]) -> Any:
    """Make ``quantizer`` leave every op of the modules ``names`` in float: those nodes are marked as annotated
    with an empty annotation before the quantizer's own annotation runs (its pattern annotators skip annotated
    nodes), so no observer is placed on them."""
    if not names:
        return quantizer
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    inside = module_filter(names)
    inner = quantizer.annotate

    def annotate(model: Any) -> Any:
        for node in model.graph.nodes:
            if node.op == "call_function" and inside(node):
                node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
        return inner(model)

    quantizer.annotate = annotate  # an instance attribute: the quantizer keeps its type for the converters
    return quantizer


def pt2e_quantize(model: Any, request: ExportRequest, quantizer: Any, fold_quantize: bool = True) -> Any:
    """Prepare ``model`` with ``quantizer`` (for QAT: fake-quantize and fine-tune), calibrate, convert."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    recipe = request.recipe
    with torch.no_grad():
        graph = torch.export.export(model.eval(), tuple(request.example_inputs)).module()
    if isinstance(recipe, QAT):
        import copy

        prepared = prepare_qat_pt2e(copy.deepcopy(graph), quantizer)  # never train the caller's weights
        _fine_tune(prepared, model, request.calibration, recipe)
    else:
        prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in request.calibration:
            prepared(*batch)
        return convert_pt2e(prepared, fold_quantize=fold_quantize)


def _fine_tune(prepared: Any, reference: Any, data: Sequence[tuple[Any, ...]], recipe: QAT) -> None:
    """``recipe.steps`` optimiser steps over the calibration batches, pulling the fake-quantized model's outputs
    towards the float model's (or whatever ``QAT_LOSSES[recipe.loss]`` measures)."""
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_eval

    loss_fn = QAT_LOSSES[recipe.loss]
    torch.manual_seed(recipe.seed)
    with torch.no_grad():
        targets = [reference.eval()(*b) for b in data]
    params = [p for p in prepared.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=recipe.lr)
    # BatchNorm and dropout stay in inference form: the statistics are the float model's, only weights and
    # quantization ranges adapt (train-mode BN would re-estimate statistics from a few calibration batches)
    move_exported_model_to_eval(prepared)
    for step in range(recipe.steps):
        i = step % len(data)
        opt.zero_grad()
        loss = loss_fn(prepared(*data[i]), targets[i])
        loss.backward()
        opt.step()
    move_exported_model_to_eval(prepared)
    for p in params:
        p.requires_grad_(False)


def pt2e_record(recipe: QuantRecipe, quantizer_name: str, calibration_samples: int) -> dict[str, Any]:
    """The manifest's ``quantization`` entry for a PT2E recipe."""
    weights = "int8 symmetric " + ("per-channel" if getattr(recipe, "per_channel", True) else "per-tensor")
    if isinstance(recipe, DynamicInt8):
        method, acts = "PT2E dynamic", "int8 dynamic (ranges computed per inference)"
    elif isinstance(recipe, QAT):
        method, acts = f"PT2E QAT ({recipe.steps} steps, loss {recipe.loss})", "int8 static (learned ranges)"
    else:
        method, acts = "PT2E static", "int8 static"
    return {"recipe": recipe.name, "config": _config(recipe), "method": method, "quantizer": quantizer_name,
            "weights": weights, "activations": acts, "calibration_samples": calibration_samples,
            "float_modules": list(getattr(recipe, "exclude", ()))}


def _config(recipe: QuantRecipe) -> dict[str, Any]:
    from .recipes import recipe_to_dict

    return recipe_to_dict(recipe)
