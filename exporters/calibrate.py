"""PT2E quantization shared by the ExecuTorch and LiteRT int8 paths: a quantizer configured from a typed recipe,
layers kept in float, calibration, and quantization-aware fine-tuning (:func:`qat_fine_tune`, the one QAT procedure:
the exporters' QAT recipe and ``edgecart.compress.quantize_aware`` both run it)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._pt2e_patterns import reused_pattern_graphs
from .base import ExportRequest, QATData, UnsupportedRecipeError, is_toolchain_error
from .recipes import QAT, QAT_LOSSES, DynamicInt8, QuantRecipe, StaticInt8, check_module_names

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


def _clean(path: str) -> str:
    # torch.export writes "L['self'].features.0" or "features.0" depending on the version
    return path.replace("L['self'].", "").replace("L__self__", "").lstrip(".")


def module_filter(names: Sequence[str]) -> Callable[[Any], bool]:
    """True for an FX node created inside one of the modules ``names`` (a name covers its submodules)."""
    wanted = tuple(names)

    def inside(node: Any) -> bool:
        for entry in (node.meta.get("nn_module_stack") or {}).values():
            path = _clean(str(entry[0]))
            if any(path == n or path.startswith(n + ".") for n in wanted):
                return True
        return False

    return inside


def graph_module_names(graph_module: Any) -> list[str]:
    """The modules the ops of an exported graph ran in, in graph order (each node's ``nn_module_stack``): the names
    an ``exclude`` can use, for a torch module and for a ``.pt2`` alike."""
    seen: dict[str, None] = {}
    for node in graph_module.graph.nodes:
        for entry in (node.meta.get("nn_module_stack") or {}).values():
            path = _clean(str(entry[0]))
            if path:
                seen[path] = None
    return list(seen)


def keep_in_float(quantizer: Any, names: Sequence[str]) -> Any:
    """Make ``quantizer`` leave every op of the modules ``names`` in float: those nodes are marked as annotated
    with an empty annotation before the quantizer's own annotation runs (its pattern annotators skip annotated
    nodes), so no observer is placed on them. A name that matches no module of the graph raises ConfigError."""
    if not names:
        return quantizer
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    inside = module_filter(names)
    inner = quantizer.annotate

    def annotate(model: Any) -> Any:
        check_module_names(names, graph_module_names(model), "the recipe's exclude")
        for node in model.graph.nodes:
            if node.op == "call_function" and inside(node):
                node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
        return inner(model)

    quantizer.annotate = annotate  # an instance attribute: the quantizer keeps its type for the converters
    return quantizer


def pt2e_quantize(model: Any, request: ExportRequest, quantizer: Any, fold_quantize: bool = True,
                  info: dict[str, Any] | None = None) -> Any:
    """Prepare ``model`` with ``quantizer``, calibrate, convert. For a QAT recipe: :func:`qat_fine_tune` on
    ``request.qat_data`` (default: the calibration inputs split by ``QATData.from_calibration``); what it did (data,
    step picked, history) goes into ``info`` when given."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    recipe = request.recipe
    if isinstance(recipe, QAT):
        data = request.qat_data or QATData.from_calibration(request.calibration, recipe.holdout, recipe.seed)
        result = qat_fine_tune(model, quantizer, recipe, request.example_inputs, request.calibration, data)
        if info is not None:
            info.update(result.record())
        return convert_qat(result.prepared, fold_quantize=fold_quantize)
    with torch.no_grad():
        graph = torch.export.export(model.eval(), tuple(request.example_inputs)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in request.calibration:
            prepared(*batch)
        return convert_pt2e(prepared, fold_quantize=fold_quantize)


# --- quantization-aware fine-tuning ---------------------------------------------------------------------------------


@dataclass
class QATOutcome:
    """What :func:`qat_fine_tune` did: the prepared (fake-quantized) graph of the best validation step, ready for
    ``convert_pt2e``; that step and its score; every evaluation (``history``: step, score, mean training loss since
    the previous evaluation); the data it used; whether mini-batches ran as one batch or sample by sample."""

    prepared: Any
    best_step: int
    best_score: float
    history: list[dict[str, float]]
    data: QATData
    score_name: str
    batched: bool

    def record(self) -> dict[str, Any]:
        return {"fine_tune": {**self.data.describe(), "step_picked_on": f"validation inputs ({self.score_name})",
                              "best_step": self.best_step, "best_score": round(self.best_score, 6),
                              "mini_batches": "one batched graph" if self.batched else "sample by sample (the model "
                              "does not export with a dynamic batch)",
                              "history": [{k: _finite(v) for k, v in h.items()} for h in self.history]}}


def _finite(v: Any) -> Any:
    """A number for the manifest (which holds finite numbers only): rounded floats, None for nan/inf (the loss
    of step 0, before any training)."""
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else None
    return v


def stack_inputs(samples: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Input tuples → one tuple of tensors with the samples concatenated on the first axis."""
    import torch

    return tuple(torch.cat([s[i] for s in samples]) for i in range(len(samples[0])))


def export_batched(model: Any, example_inputs: tuple[Any, ...]) -> Any:
    """``torch.export`` of ``model`` with a dynamic first (batch) axis on every input, so that an int8 graph prepared
    from it trains on mini-batches and evaluates in batches."""
    import torch

    ex = tuple(t[:2] if len(t) >= 2 else torch.cat([t, t]) for t in example_inputs)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with torch.no_grad():
        return torch.export.export(model.eval(), ex, dynamic_shapes=tuple({0: batch} for _ in ex)).module()


def agreement_score(reference: Any, validation: tuple[Any, ...], run: Callable[[Any, tuple[Any, ...]], Any]
                    ) -> tuple[Callable[[Any], float], str]:
    """score(int8_model) = SQNR in dB of its outputs against the float model's on ``validation`` (stacked inputs),
    higher is better; ``run(model, inputs)`` feeds a model (batched or sample by sample)."""
    import torch

    with torch.no_grad():
        ref = [o.double() for o in _as_tuple(run(reference, validation))]
    power = sum(float((r ** 2).sum()) for r in ref)

    def score(model: Any) -> float:
        with torch.no_grad():
            got = [o.double() for o in _as_tuple(run(model, validation))]
        noise = sum(float(((r - g) ** 2).sum()) for r, g in zip(ref, got, strict=True))
        return 200.0 if noise == 0 else min(200.0, 10 * math.log10(max(power, 1e-30) / noise))

    return score, "SQNR in dB of the int8 outputs against the float model's"


def _as_tuple(y: Any) -> tuple[Any, ...]:
    import torch

    return (y,) if isinstance(y, torch.Tensor) else tuple(y)


def convert_qat(prepared: Any, fold_quantize: bool = False) -> Any:
    """``convert_pt2e`` of a QAT-prepared graph (such as :attr:`QATOutcome.prepared`), its conv-bn pattern
    graphs reused across calls (see ``_pt2e_patterns``)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    with reused_pattern_graphs(), torch.no_grad():
        return convert_pt2e(prepared, fold_quantize=fold_quantize)


def qat_fine_tune(model: Any, quantizer: Any, recipe: QAT, example_inputs: tuple[Any, ...],
                  calibration: Sequence[tuple[Any, ...]], data: QATData,
                  evaluate: Callable[[Any], float] | None = None, score_name: str | None = None,
                  progress: Callable[[str], None] | None = None) -> QATOutcome:
    """The QAT procedure of the ``QAT`` recipe (see its docstring): ``prepare_qat_pt2e`` with ``quantizer`` on a
    dynamic-batch graph of a COPY of ``model`` (a static one, fed sample by sample, when the model does not export
    with a dynamic batch), observers primed on ``calibration``, mini-batches of ``data.train`` matched to the float
    model's outputs, and the best of the evaluations on ``data.validation`` kept. ``evaluate(converted_int8_model)
    -> score`` (higher is better) replaces the default score, the SQNR of the int8 outputs against the float model's
    on ``data.validation``. The torchao pattern graphs of the train/eval switches and of each validation step's
    conversion are exported once per process (``_pt2e_patterns``)."""
    with reused_pattern_graphs():
        return _qat_fine_tune(model, quantizer, recipe, example_inputs, calibration, data, evaluate, score_name,
                              progress)


def _qat_fine_tune(model: Any, quantizer: Any, recipe: QAT, example_inputs: tuple[Any, ...],
                   calibration: Sequence[tuple[Any, ...]], data: QATData, evaluate: Callable[[Any], float] | None,
                   score_name: str | None, progress: Callable[[str], None] | None) -> QATOutcome:
    import torch
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    say = progress or (lambda _m: None)
    loss_fn = QAT_LOSSES[recipe.loss]
    torch.manual_seed(recipe.seed)
    # a copy: the exported graph shares its parameter tensors with the module it was exported from, and the
    # fine-tune would otherwise train the caller's float weights
    model = copy.deepcopy(model).eval()
    train, val = stack_inputs(data.train), stack_inputs(data.validation)
    try:
        graph, batched = export_batched(model, tuple(example_inputs)), True
    except Exception as exc:  # a model that cannot take a dynamic batch: its static graph, fed one sample at a time
        if not is_toolchain_error(exc):
            raise
        with torch.no_grad():
            graph, batched = torch.export.export(model, tuple(example_inputs)).module(), False
    step_rows = int(example_inputs[0].shape[0]) if not batched else 0

    def run(m: Any, inputs: tuple[Any, ...], chunk: int = 128) -> Any:
        rows = step_rows or chunk
        outs = [_as_tuple(m(*(t[i:i + rows] for t in inputs))) for i in range(0, len(inputs[0]), rows)]
        cat = tuple(torch.cat([o[k] for o in outs]) for k in range(len(outs[0])))
        return cat[0] if len(cat) == 1 else cat

    with torch.no_grad():
        targets = _as_tuple(run(model, train))
    if evaluate is None:
        evaluate, score_name = agreement_score(model, val, run)
    prepared = prepare_qat_pt2e(graph, quantizer)
    move_exported_model_to_eval(prepared)  # BatchNorm: the float model's statistics
    with torch.no_grad():
        # QAT observers keep a moving average of min/max (weight 0.01 per batch after the first): fed one
        # calibration input at a time, the ranges would be the first input's. A batched graph sees the whole
        # calibration set as its first batch, so the ranges start from all of it, as static PTQ's do.
        for b in ([stack_inputs(calibration)] if batched else calibration):
            prepared(*b)
    params = [p for p in prepared.parameters() if p.is_floating_point()]
    ema = [p.detach().clone() for p in params] if recipe.ema > 0 else None

    def score() -> tuple[float, Any]:
        """The validation score of the int8 model as it stands (the EMA weights with ``ema``), and a copy of
        the prepared graph in that state (kept when best)."""
        was_training = recipe.bn_update_steps > 0 and getattr(prepared, "_exported_training", False)
        move_exported_model_to_eval(prepared)
        snapshot = copy.deepcopy(prepared)
        if ema is not None:
            with torch.no_grad():
                for p, e in zip([p for p in snapshot.parameters() if p.is_floating_point()], ema, strict=True):
                    p.copy_(e)
        with torch.no_grad():
            s = float(evaluate(convert_qat(copy.deepcopy(snapshot))))
        if was_training:
            move_exported_model_to_train(prepared)
        return s, snapshot

    first, snap = score()
    best = (first, snap, 0)
    history: list[dict[str, float]] = [{"step": 0, "score": first, "loss": math.nan}]
    say(f"QAT step 0: validation {first:.4f}")
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=recipe.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, recipe.steps) / recipe.steps)))
    gen = torch.Generator().manual_seed(recipe.seed)
    n = len(train[0])
    order, pos, losses = torch.randperm(n, generator=gen), 0, []
    batch = min(recipe.batch_size, n)
    if recipe.bn_update_steps > 0:
        move_exported_model_to_train(prepared)
    if recipe.frozen_observers_at == 0:
        prepared.apply(disable_observer)
    for step in range(1, recipe.steps + 1):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos:pos + batch]
        pos += batch
        opt.zero_grad()
        xb, yb = tuple(t[idx] for t in train), tuple(t[idx] for t in targets)
        if batched:
            loss = _fit_loss(loss_fn, prepared(*xb), yb, recipe.relational)
            loss.backward()
        else:  # the same mean loss, accumulated sample by sample
            loss = 0.0
            for i in range(0, batch, step_rows):
                part = _fit_loss(loss_fn, prepared(*(t[i:i + step_rows] for t in xb)),
                                 tuple(t[i:i + step_rows] for t in yb), recipe.relational) * (step_rows / batch)
                part.backward()
                loss = loss + float(part)
        opt.step()
        sched.step()
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema, params, strict=True):
                    e.mul_(recipe.ema).add_(p.detach(), alpha=1 - recipe.ema)
        losses.append(float(loss))
        if step == recipe.bn_update_steps:
            move_exported_model_to_eval(prepared)
        if step == recipe.frozen_observers_at:
            prepared.apply(disable_observer)
        if step % recipe.eval_every == 0 or step == recipe.steps:
            s, snap = score()
            history.append({"step": step, "score": s, "loss": sum(losses) / len(losses)})
            say(f"QAT step {step}: loss {history[-1]['loss']:.5f}, validation {s:.4f}")
            losses = []
            if s > best[0]:
                best = (s, snap, step)
    for p in params:
        p.requires_grad_(False)
    final = best[1]
    move_exported_model_to_eval(final)
    final.apply(disable_observer)
    return QATOutcome(final, best[2], best[0], history, data, score_name or "the caller's score", batched)


def _fit_loss(loss_fn: Callable[[Any, Any], Any], out: Any, ref: tuple[Any, ...], relational: float) -> Any:
    import torch.nn.functional as F  # noqa: N812

    outs = _as_tuple(out)
    loss = loss_fn(outs[0] if len(outs) == 1 else outs, ref[0] if len(ref) == 1 else ref)
    if relational:
        on, rn = F.normalize(outs[0].flatten(1).float(), dim=1), F.normalize(ref[0].flatten(1).float(), dim=1)
        loss = loss + relational * F.mse_loss(on @ on.T, rn @ rn.T)
    return loss


def pt2e_record(recipe: QuantRecipe, quantizer_name: str, calibration_samples: int,
                info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest's ``quantization`` entry for a PT2E recipe (``info``: what :func:`pt2e_quantize` reported)."""
    weights = "int8 symmetric " + ("per-channel" if getattr(recipe, "per_channel", True) else "per-tensor")
    if isinstance(recipe, DynamicInt8):
        method, acts = "PT2E dynamic", "int8 dynamic (ranges computed per inference)"
    elif isinstance(recipe, QAT):
        method = (f"PT2E QAT ({recipe.steps} steps x batch {recipe.batch_size}, lr {recipe.lr}, loss {recipe.loss}, "
                  "step picked on validation inputs)")
        acts = "int8 static (learned ranges)"
    else:
        method, acts = "PT2E static", "int8 static"
    return {"recipe": recipe.name, "config": _config(recipe), "method": method, "quantizer": quantizer_name,
            "weights": weights, "activations": acts, "calibration_samples": calibration_samples,
            "float_modules": list(getattr(recipe, "exclude", ())), **(info or {})}


def _config(recipe: QuantRecipe) -> dict[str, Any]:
    from .recipes import recipe_to_dict

    return recipe_to_dict(recipe)
