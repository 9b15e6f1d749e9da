"""Quantization: ``quantize(model, recipe, example_inputs, calibration)`` simulates a typed int8 recipe in torch
(PT2E with the XNNPACK quantizer: the numerics ExecuTorch runs), ``diagnose_int8`` ranks layers by the error their
quantization adds, and ``rescue_plan`` turns a rejected recipe into the ones worth trying next (the worst layers in
float, then QAT). Writing int8 files is the exporters' job; they take the same typed recipes."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgecart.config import ConfigError
from edgecart.exporters.recipes import QAT, DynamicInt8, QuantRecipe, StaticInt8, resolve_recipe

DEFAULT_STATIC = StaticInt8()
DEFAULT_QAT = QAT()


def _xnnpack_quantizer(recipe: QuantRecipe) -> Any:
    from edgecart.exporters.calibrate import keep_in_float, quantization_config
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    q = XNNPACKQuantizer().set_global(quantization_config(recipe, get_symmetric_quantization_config))
    return keep_in_float(q, getattr(recipe, "exclude", ()))


def quantize(model: Any, recipe: QuantRecipe | str, example_inputs: tuple[Any, ...],
             calibration: Sequence[tuple[Any, ...]]) -> Any:
    """The int8 model of ``recipe`` as a torch module (fake-quantized PT2E graph: quantize/dequantize around int8
    ranges), for evaluating a recipe before exporting. ``recipe`` may be a registered name."""
    from edgecart.exporters.base import ExportRequest
    from edgecart.exporters.calibrate import pt2e_quantize, pt2e_supports

    typed = resolve_recipe(recipe)
    if not pt2e_supports(typed):
        from edgecart.exporters import EXPORTERS

        fmts = [f for f in EXPORTERS.names() if EXPORTERS[f].supports(typed)]
        who = (f"the {' and '.join(fmts)} exporter{'s' if len(fmts) > 1 else ''} only" if fmts
               else "no exporter")
        raise ConfigError(f"quantize() simulates PT2E recipes; {typed.name} is applied by {who} (export it with "
                          "edgecart.exporters.export and measure the file instead)")
    if not calibration:
        raise ConfigError("quantize() needs calibration inputs: a list of input tuples")
    req = ExportRequest(model, tuple(example_inputs), ("x",) * len(example_inputs), ("y",), "int8", typed,
                        tuple(calibration))
    return pt2e_quantize(model, req, _xnnpack_quantizer(typed), fold_quantize=False)


@dataclass(frozen=True)
class LayerError:
    """The model-output error when only ``layer`` is quantized: SQNR in dB (higher is better) and the worst
    per-sample cosine to the float output. ``with_modules``: modules that run fused with it (a BatchNorm after a
    conv) and must stay in float together with it."""

    layer: str
    sqnr_db: float
    cosine: float
    with_modules: tuple[str, ...] = ()


def _sqnr(ref: list[Any], got: list[Any]) -> tuple[float, float]:
    import torch

    r = torch.cat([t.flatten().double() for t in ref])
    g = torch.cat([t.flatten().double() for t in got])
    noise = float(((r - g) ** 2).sum())
    sqnr = math.inf if noise == 0 else 10 * math.log10(max(float((r ** 2).sum()), 1e-30) / noise)
    cos = min(float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))
              for a, b in zip(ref, got, strict=True))
    return sqnr, cos


def _outputs(model: Any, data: Sequence[tuple[Any, ...]]) -> list[Any]:
    import torch

    out = []
    with torch.no_grad():
        for b in data:
            y = model(*b)
            out.extend([y] if isinstance(y, torch.Tensor) else list(y))
    return out


#: aten ops of the layers the diagnosis ranks, for a model known only by its graph (a ``.pt2``).
_LAYER_OPS = ("conv1d", "conv2d", "convolution", "_convolution", "linear")


def _owner(node: Any) -> str | None:
    """The innermost module an FX node ran in (its ``nn_module_stack``), None for the root or without metadata."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path = str(list(stack.values())[-1][0])
    return path.replace("L['self'].", "").replace("L__self__", "").lstrip(".") or None


def quantizable_layers(model: Any) -> list[str]:
    """The Conv1d/Conv2d/Linear layers of ``model`` by module name. A module with none that carries a graph (a
    ``torch.export``'ed ``.pt2``: ``ep.module()`` keeps the weights, not the nn.Conv/nn.Linear objects) is read
    through its graph: the module each conv/linear op ran in (``nn_module_stack``), the name ``exclude`` matches."""
    from torch import nn

    found = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    if found or not hasattr(model, "graph"):
        return found
    out: dict[str, None] = {}
    for node in model.graph.nodes:
        target = str(node.target)
        if node.op != "call_function" or not target.startswith("aten.") or len(node.args) < 2:
            continue
        val = getattr(node.args[1], "meta", {}).get("val")  # the weight
        if target.split(".")[1] in _LAYER_OPS and (val is None or val.dim() <= 4):  # no Conv3d, as for a module
            name = _owner(node)
            if name:
                out[name] = None
    return list(out)


def _fused_followers(graph: Any) -> dict[str, tuple[str, ...]]:
    """conv module -> the BatchNorm module that consumes its output (exporters fold the two into one node)."""
    owner = _owner
    out: dict[str, tuple[str, ...]] = {}
    for node in graph.graph.nodes:
        if node.op == "call_function" and "conv" in str(node.target):
            for user in node.users:
                if "batch_norm" in str(user.target):
                    a, b = owner(node), owner(user)
                    if a and b and a != b:
                        out[a] = (*out.get(a, ()), b)
    return out


def diagnose_int8(model: Any, example_inputs: tuple[Any, ...], calibration: Sequence[tuple[Any, ...]],
                  recipe: QuantRecipe | str = DEFAULT_STATIC, layers: Sequence[str] | None = None,
                  progress: Callable[[str], None] | None = None) -> list[LayerError]:
    """Quantize one layer at a time with ``recipe`` (PT2E / XNNPACK numerics), run the calibration inputs and
    compare the model's outputs with the float model's: the layers whose quantization alone loses the most come
    first. ``layers`` defaults to every Conv/Linear module (of a ``.pt2``, found through its graph: see
    :func:`quantizable_layers`); a name in ``layers`` that is no module of the model raises ConfigError."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    typed = resolve_recipe(recipe)
    if isinstance(typed, QAT):
        typed = StaticInt8(per_channel=typed.per_channel)
    if not isinstance(typed, (StaticInt8, DynamicInt8)):
        raise ConfigError(f"diagnose_int8 needs a static or dynamic int8 recipe, not {typed.name}")
    if isinstance(typed, StaticInt8) and typed.calibration not in ("auto", "histogram", "minmax"):
        typed = dataclasses.replace(typed, calibration="auto")  # ORT-only calibrations: PT2E default instead
    typed = dataclasses.replace(typed, exclude=())
    if isinstance(typed, StaticInt8):
        typed = dataclasses.replace(typed, ops=())
    from edgecart.exporters.calibrate import keep_in_float, quantization_config
    from edgecart.exporters.recipes import check_module_names
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    cfg = quantization_config(typed, get_symmetric_quantization_config)
    model = model.eval()
    ref = _outputs(model, calibration)
    with torch.no_grad():
        graph = torch.export.export(model, tuple(example_inputs)).module()
    followers = _fused_followers(graph)
    every = quantizable_layers(model)
    candidates = list(layers) if layers is not None else every
    check_module_names(candidates, [*every, *(n for n, _m in model.named_modules())], "diagnose_int8 layers")
    results = []
    for name in candidates:
        if progress:
            progress(f"diagnose {name}")
        # only ``name`` (and the ops outside every conv/linear module) is quantized: the same exclusion mechanism
        # the exporters use, so what the diagnosis measures is what an ``exclude=`` recipe changes
        others = [n for n in every if n != name and not name.startswith(n + ".")]
        q = keep_in_float(XNNPACKQuantizer().set_global(cfg), others)
        prepared = prepare_pt2e(copy.deepcopy(graph), q)
        with torch.no_grad():
            for b in calibration:
                prepared(*b)
            converted = convert_pt2e(prepared)
        sqnr, cos = _sqnr(ref, _outputs(converted, calibration))
        results.append(LayerError(name, sqnr, cos, followers.get(name, ())))
    return sorted(results, key=lambda r: r.sqnr_db)


def rescue_plan(model: Any, example_inputs: tuple[Any, ...], calibration: Sequence[tuple[Any, ...]],
                failed: QuantRecipe | str, *, keep_float: int = 2, qat: QAT | None = DEFAULT_QAT,
                diagnosis: list[LayerError] | None = None) -> tuple[list[QuantRecipe], list[LayerError]]:
    """What to try after ``failed`` missed the gate: the same recipe with the 1…``keep_float`` worst layers (by
    :func:`diagnose_int8`) kept in float, then ``qat`` (quantization-aware fine-tuning) with the same layers in float.
    Returns (recipes in order, the diagnosis)."""
    typed = resolve_recipe(failed)
    diag = diagnosis if diagnosis is not None else diagnose_int8(model, example_inputs, calibration, typed)
    plans: list[QuantRecipe] = []
    excluded: tuple[str, ...] = ()
    for row in diag[:keep_float]:
        excluded = (*excluded, row.layer, *row.with_modules)
        if isinstance(typed, (StaticInt8, DynamicInt8, QAT)):
            plans.append(dataclasses.replace(typed, exclude=tuple(dict.fromkeys((*typed.exclude, *excluded)))))
    if qat is not None:
        plans.append(qat)
        if excluded:
            plans.append(dataclasses.replace(qat, exclude=excluded))
    return plans, diag


def gate_rescue(model: Any, example_inputs: tuple[Any, ...], calibration: Sequence[tuple[Any, ...]], *,
                keep_float: int = 2, qat: QAT | None = DEFAULT_QAT,
                progress: Callable[[str], None] | None = None) -> Callable[[list[dict[str, Any]]], list[QuantRecipe]]:
    """A ``rescue`` for :func:`edgecart.exporters.export_int8_gated`: diagnose the first recipe that ran and missed
    the gate, and propose :func:`rescue_plan`. The diagnosis is kept on the function (``.diagnosis``) for reports."""
    state: dict[str, Any] = {}

    def rescue(attempts: list[dict[str, Any]]) -> list[QuantRecipe]:
        from edgecart.exporters.recipes import recipe_from_dict

        ran = [a for a in attempts if "drop" in a or str(a.get("reason", "")).startswith("parity")]
        base = recipe_from_dict(ran[0]["config"]) if ran else StaticInt8()
        if "diagnosis" not in state:
            state["diagnosis"] = diagnose_int8(model, example_inputs, calibration, base, progress=progress)
        plans, _ = rescue_plan(model, example_inputs, calibration, base, keep_float=keep_float, qat=qat,
                               diagnosis=state["diagnosis"])
        rescue.diagnosis = [dataclasses.asdict(d) for d in state["diagnosis"]]  # type: ignore[attr-defined]
        return plans

    rescue.diagnosis = []  # type: ignore[attr-defined]
    return rescue


__all__ = ["LayerError", "diagnose_int8", "gate_rescue", "quantizable_layers", "quantize", "rescue_plan"]


def agreement_evaluator(reference: Any, inputs: Sequence[tuple[Any, ...]]) -> tuple[Callable[[Any], dict[str, float]],
                                                                                      dict[str, float]]:
    """A task-free quality figure for the int8 gate: the worst per-sample cosine and the SQNR (dB) of an artifact's
    outputs against the float model's on ``inputs`` (a validation split). Returns (evaluate(session), the float
    model's own figures: cosine 1.0)."""
    import numpy as np

    ref = _outputs(reference.eval(), inputs)

    def evaluate(session: Any) -> dict[str, float]:
        got = []
        for b in inputs:
            out = session.run([np.ascontiguousarray(t.detach().cpu().numpy()) for t in b])
            got.extend(out[s.name] for s in session.outputs)
        import torch

        sqnr, cos = _sqnr(ref, [torch.from_numpy(np.asarray(g)) for g in got])
        return {"cosine": cos, "sqnr_db": min(sqnr, 1e6)}

    return evaluate, {"cosine": 1.0, "sqnr_db": 1e6}


# --- QAT that generalises: mini-batches of training inputs, the step picked on validation -----------------------

#: The fine-tune settings of :func:`quantize_aware` are the ``QAT`` recipe's own (one config, one procedure:
#: ``edgecart.exporters.calibrate.qat_fine_tune``); this name stays for code written against the earlier API.
QATFineTune = QAT


@dataclass
class QATResult:
    """The converted int8 model of the best validation step, that step and its score, and every evaluation
    (``history``: step, score, mean training loss since the previous evaluation)."""

    model: Any
    best_step: int
    best_score: float
    history: list[dict[str, float]]


def export_batched(model: Any, example: Any) -> Any:
    """``torch.export`` of a one-input model with a dynamic batch dimension (so an int8 graph prepared from it
    trains on mini-batches and evaluates in batches)."""
    from edgecart.exporters.calibrate import export_batched as batched

    return batched(model, (example,))


def quantize_batched(model: Any, recipe: QuantRecipe | str, example: Any, calibration: Sequence[tuple[Any, ...]]
                     ) -> Any:
    """:func:`quantize` for a one-input model on a dynamic-batch graph: the same PT2E/XNNPACK numerics (static or
    dynamic int8, calibrated on ``calibration`` input by input), callable on any batch size."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    typed = resolve_recipe(recipe)
    if not isinstance(typed, (StaticInt8, DynamicInt8)):
        raise ConfigError(f"quantize_batched applies static or dynamic int8; for {typed.name} use quantize_aware()")
    if not calibration:
        raise ConfigError("quantize_batched() needs calibration inputs: a list of input tuples")
    prepared = prepare_pt2e(export_batched(model, example), _xnnpack_quantizer(typed))
    with torch.no_grad():
        for b in calibration:
            prepared(*b)
        return convert_pt2e(prepared, fold_quantize=False)


def quantize_aware(model: Any, recipe: QAT | str, train_inputs: Any, calibration: Sequence[tuple[Any, ...]],
                   evaluate: Callable[[Any], float], fine_tune: QAT | None = None,
                   progress: Callable[[str], None] | None = None, *,
                   validation_inputs: Any = None) -> QATResult:
    """The exporters' QAT procedure (:func:`edgecart.exporters.calibrate.qat_fine_tune`, XNNPACK numerics) on a
    one-input torch model: ``prepare_qat_pt2e`` on a dynamic-batch graph, observers primed on ``calibration``, then
    the ``recipe``'s mini-batch steps over ``train_inputs`` (a tensor of TRAINING inputs, first axis = samples)
    matching the float model's outputs. ``evaluate(int8_model) -> score`` (higher is better) must score a VALIDATION
    split; the converted model of the best-scoring step (step 0 = no fine-tune) is returned. ``fine_tune``: a ``QAT``
    whose training settings replace the recipe's (granularity and float layers stay the recipe's). The caller's
    model is not modified."""
    import torch
    from edgecart.exporters.base import QATData
    from edgecart.exporters.calibrate import convert_qat, qat_fine_tune

    typed = resolve_recipe(recipe)
    if not isinstance(typed, QAT):
        raise ConfigError(f"quantize_aware() needs a QAT recipe, not {typed.name}")
    if fine_tune is not None:
        typed = dataclasses.replace(fine_tune, per_channel=typed.per_channel, exclude=typed.exclude)
    if not isinstance(train_inputs, torch.Tensor) or len(train_inputs) < 2:
        raise ConfigError("quantize_aware() needs train_inputs: a tensor of at least 2 training inputs")
    if not calibration:
        raise ConfigError("quantize_aware() needs calibration inputs: a list of input tuples")
    val = validation_inputs if validation_inputs is not None else train_inputs[:1]
    data = QATData([(train_inputs[i:i + 1],) for i in range(len(train_inputs))],
                   [(val[i:i + 1],) for i in range(len(val))])
    out = qat_fine_tune(model, _xnnpack_quantizer(typed), typed, (train_inputs[:1],), calibration, data,
                        evaluate=evaluate, score_name="the caller's validation score", progress=progress)
    return QATResult(convert_qat(out.prepared, fold_quantize=False), out.best_step, out.best_score, out.history)


__all__ += ["QATFineTune", "QATResult", "export_batched", "quantize_aware", "quantize_batched"]
