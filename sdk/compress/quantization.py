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
        raise ConfigError(f"quantize() simulates PT2E recipes; {typed.name} is applied by the ONNX exporter only")
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


def quantizable_layers(model: Any) -> list[str]:
    from torch import nn

    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def _fused_followers(graph: Any) -> dict[str, tuple[str, ...]]:
    """conv module -> the BatchNorm module that consumes its output (exporters fold the two into one node)."""
    def owner(node: Any) -> str | None:
        stack = node.meta.get("nn_module_stack") or {}
        if not stack:
            return None
        path = str(list(stack.values())[-1][0])
        return path.replace("L['self'].", "").replace("L__self__", "").lstrip(".")

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
    first. ``layers`` defaults to every Conv/Linear module."""
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
    candidates = list(layers) if layers is not None else quantizable_layers(model)
    every = quantizable_layers(model)
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

QAT_FIT_LOSSES = ("cosine", "mse")


@dataclass(frozen=True)
class QATFineTune:
    """How :func:`quantize_aware` fine-tunes a fake-quantized model: ``steps`` Adam steps on mini-batches of
    ``batch_size`` TRAINING inputs, pulling the int8 model's outputs towards the float model's (``loss``: ``cosine``
    or ``mse``, plus ``relational`` x the batch's pairwise-similarity MSE), learning rate ``lr`` with cosine decay to
    zero. BatchNorm statistics stay the float model's (frozen) unless ``bn_update_steps`` > 0; the fake-quantizers'
    observers adjust the int8 ranges for the first ``observer_steps`` steps (default: a third), then the ranges are
    frozen, as torchao's PT2E QAT guide advises. Every ``eval_every`` steps (and at step 0 and the end) the converted
    int8 model is scored on a VALIDATION split; the best step is kept. The defaults are the schedule measured on the
    demo's Lite0 teacher (``benchmarks/results/compression/README.md``, QAT section)."""

    steps: int = 160
    batch_size: int = 16
    lr: float = 5e-5
    loss: str = "cosine"
    relational: float = 0.0
    eval_every: int = 20
    observer_steps: int | None = None
    bn_update_steps: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for k in ("steps", "batch_size", "eval_every"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"qat_fine_tune.{k} must be an integer >= 1, got {v!r}")
        for k in ("bn_update_steps", "seed") + (("observer_steps",) if self.observer_steps is not None else ()):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"qat_fine_tune.{k} must be an integer >= 0, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise ConfigError(f"qat_fine_tune.lr must lie in (0, 1), got {self.lr!r}")
        if self.loss not in QAT_FIT_LOSSES:
            raise ConfigError(f"qat_fine_tune.loss {self.loss!r} is unknown; known: {', '.join(QAT_FIT_LOSSES)}")
        if not (isinstance(self.relational, (int, float)) and self.relational >= 0):
            raise ConfigError("qat_fine_tune.relational must be a number >= 0")

    @property
    def frozen_observers_at(self) -> int:
        return self.steps // 3 if self.observer_steps is None else self.observer_steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QATFineTune:
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown qat_fine_tune option(s) {unknown}; known: {', '.join(known)}")
        return cls(**d)


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
    import torch

    x = example[:2] if len(example) >= 2 else torch.cat([example, example])
    batch = torch.export.Dim("batch", min=1, max=65536)
    with torch.no_grad():
        return torch.export.export(model.eval(), (x,), dynamic_shapes=({0: batch},)).module()


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


def _fit_loss(out: Any, ref: Any, cfg: QATFineTune) -> Any:
    import torch
    import torch.nn.functional as F  # noqa: N812

    o, r = out.flatten(1).float(), ref.flatten(1).float()
    loss = (1 - F.cosine_similarity(o, r, dim=1)).mean() if cfg.loss == "cosine" else F.mse_loss(o, r)
    if cfg.relational:
        on, rn = F.normalize(o, dim=1), F.normalize(r, dim=1)
        loss = loss + cfg.relational * F.mse_loss(on @ on.T, rn @ rn.T)
    return loss if isinstance(loss, torch.Tensor) else torch.as_tensor(loss)


def quantize_aware(model: Any, recipe: QAT | str, train_inputs: Any, calibration: Sequence[tuple[Any, ...]],
                   evaluate: Callable[[Any], float], fine_tune: QATFineTune | None = None,
                   progress: Callable[[str], None] | None = None) -> QATResult:
    """QAT that generalises beyond the calibration inputs: ``prepare_qat_pt2e`` on a dynamic-batch graph, the
    observers primed on ``calibration``, then :class:`QATFineTune` mini-batch steps over ``train_inputs`` (a tensor
    of TRAINING inputs, first axis = samples) matching the float model's outputs. ``evaluate(int8_model) -> score``
    (higher is better) must score a VALIDATION split; the converted model of the best-scoring step (step 0 =
    no fine-tune) is returned. The caller's model is not modified."""
    import torch
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    typed = resolve_recipe(recipe)
    if not isinstance(typed, QAT):
        raise ConfigError(f"quantize_aware() needs a QAT recipe, not {typed.name}")
    cfg = fine_tune or QATFineTune()
    if not isinstance(train_inputs, torch.Tensor) or len(train_inputs) < 2:
        raise ConfigError("quantize_aware() needs train_inputs: a tensor of at least 2 training inputs")
    if not calibration:
        raise ConfigError("quantize_aware() needs calibration inputs: a list of input tuples")
    say = progress or (lambda _m: None)
    torch.manual_seed(cfg.seed)
    # a copy: the exported graph shares its parameter tensors with the module it was exported from, and the
    # fine-tune below would otherwise train the caller's float weights
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        targets = torch.cat([model(train_inputs[i:i + 128]) for i in range(0, len(train_inputs), 128)])
    prepared = prepare_qat_pt2e(export_batched(model, train_inputs), _xnnpack_quantizer(typed))
    move_exported_model_to_eval(prepared)  # BatchNorm: the float model's statistics
    with torch.no_grad():
        for b in calibration:
            prepared(*b)

    def score() -> tuple[float, Any]:
        """The validation score of the int8 model as it stands, and that converted model (kept if best)."""
        was_training = cfg.bn_update_steps > 0 and getattr(prepared, "_exported_training", False)
        move_exported_model_to_eval(prepared)
        with torch.no_grad():
            converted = convert_pt2e(copy.deepcopy(prepared), fold_quantize=False)
            s = float(evaluate(converted))
        if was_training:
            move_exported_model_to_train(prepared)
        return s, converted

    best = (*score(), 0)
    history: list[dict[str, float]] = [{"step": 0, "score": best[0], "loss": math.nan}]
    say(f"QAT step 0: validation {best[0]:.4f}")
    params = [p for p in prepared.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps)
                                                                                   / cfg.steps)))
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(train_inputs), generator=gen)
    pos, losses = 0, []
    if cfg.bn_update_steps > 0:
        move_exported_model_to_train(prepared)
    for step in range(1, cfg.steps + 1):
        if pos + cfg.batch_size > len(order):
            order, pos = torch.randperm(len(train_inputs), generator=gen), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        opt.zero_grad()
        loss = _fit_loss(prepared(train_inputs[idx]), targets[idx], cfg)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
        if step == cfg.bn_update_steps:
            move_exported_model_to_eval(prepared)
        if step == cfg.frozen_observers_at:
            prepared.apply(disable_observer)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            s, converted = score()
            history.append({"step": step, "score": s, "loss": sum(losses) / len(losses)})
            say(f"QAT step {step}: loss {history[-1]['loss']:.5f}, validation {s:.4f}")
            losses = []
            if s > best[0]:
                best = (s, converted, step)
    for p in params:
        p.requires_grad_(False)
    return QATResult(best[1], best[2], best[0], history)


__all__ += ["QATFineTune", "QATResult", "export_batched", "quantize_aware", "quantize_batched"]
