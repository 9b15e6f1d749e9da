"""Quantization recipes as typed, frozen configurations, registered by name.

A recipe says *what* to quantize and how (static or dynamic activations, per-channel weights, calibration, layers
kept in float, quantization-aware fine-tuning); each exporter says which recipes it can apply
(``exporter.supports(recipe)``) and applies them with its own toolchain. A recipe is data: it round-trips through
JSON (``recipe_to_dict`` / ``recipe_from_dict``) and the manifest records the one applied.

Names: ``RECIPES[name]`` looks up a ready-made recipe (``static-int8-per-channel``, ``dynamic-int8``, ...) and the
names earlier edgecart versions wrote (``pt2e-xnnpack-per-channel``, ``ort-static-qdq-per-channel-minmax``, ...);
an unknown name raises :class:`~edgecart.runtime.errors.UnknownNameError` listing the known ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from edgecart.config import ConfigError, from_dict, to_dict
from edgecart.runtime.registry import Registry

#: Calibration methods: ``auto`` is each toolchain's default (ONNX Runtime: MinMax; PT2E: histogram observer).
CALIBRATIONS = ("auto", "minmax", "percentile", "entropy", "histogram")
#: Activation types of static int8 (``auto``: the toolchain's default, see StaticInt8).
ACTIVATIONS = ("auto", "int8", "uint8")
#: Op kinds a recipe may restrict quantization to (empty = every op the toolchain quantizes).
OP_KINDS = ("conv", "linear")


def module_names(where: str, names: Any) -> tuple[str, ...]:
    """``names`` as a tuple of module names (``features.0``), for ``exclude`` here and pruning's ``ignore``: a plain
    string (which would be split into characters), a non-iterable or an item that is not a name is a ConfigError
    naming ``where``."""
    if isinstance(names, str):
        raise ConfigError(f"{where} is a list of module names, e.g. [{names!r}], not the string {names!r}")
    try:
        out = tuple(names)
    except TypeError:
        raise ConfigError(f"{where} is a list of module names, e.g. ['features.0'], got {names!r}") from None
    bad = [n for n in out if not isinstance(n, str) or not n or n != n.strip()]
    if bad:
        raise ConfigError(f"{where}: {bad} are not module names such as 'features.0'")
    return out


def check_module_names(names: Sequence[str], known: Sequence[str], where: str = "exclude") -> None:
    """A ConfigError listing the ``names`` that match none of the module names ``known`` (a name covers its
    submodules) and a few known ones: a misspelt name must not leave every layer quantized (or pruned) without a
    word. Pruning and the ONNX path call it with ``[n for n, _ in model.named_modules()]``."""
    known = [k for k in known if k]
    unknown = [n for n in names if not any(k == n or k.startswith(n + ".") for k in known)]
    if unknown:
        raise ConfigError(f"{where} names modules the model does not have (or in which no op runs): {unknown}; "
                          f"its modules include {known[:8]}")


def _exclude(kind: str, names: Any) -> tuple[str, ...]:
    return module_names(f"{kind}.exclude", names)


@dataclass(frozen=True)
class StaticInt8:
    """int8 weights and int8 activations with ranges calibrated on sample inputs (post-training).

    ``exclude``: module names (``features.0``; a name covers its submodules) kept in float; a name that is no module
    of the model is refused when the recipe is applied (PT2E paths). ``ops``: quantize only
    these op kinds (``conv``, ``linear``), keeping the rest (gathers, adds, norms, softmax) in float.
    ``activations``: ``int8`` (symmetric), ``uint8`` (asymmetric; lets ONNX Runtime fold ReLU/ReLU6 clips into the
    quantized convs) or ``auto`` (each toolchain's fastest measured choice: uint8 on ONNX Runtime, int8 on PT2E).
    """

    per_channel: bool = True
    calibration: str = "auto"
    exclude: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    activations: str = "auto"
    kind: ClassVar[str] = "static_int8"

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", _exclude("static_int8", self.exclude))
        object.__setattr__(self, "ops", tuple(self.ops))
        if not isinstance(self.per_channel, bool):
            raise ConfigError("static_int8.per_channel must be true or false")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"static_int8.calibration {self.calibration!r} is unknown; known: {list(CALIBRATIONS)}")
        if self.activations not in ACTIVATIONS:
            raise ConfigError(f"static_int8.activations {self.activations!r} unknown; known: {list(ACTIVATIONS)}")
        bad = [o for o in self.ops if o not in OP_KINDS]
        if bad:
            raise ConfigError(f"static_int8.ops {bad} unknown; known: {list(OP_KINDS)}")

    @property
    def name(self) -> str:
        parts = ["static-int8", "per-channel" if self.per_channel else "per-tensor"]
        if self.calibration != "auto":
            parts.append(self.calibration)
        if self.activations != "auto":
            parts.append(f"{self.activations}-activations")
        if self.ops:
            parts.append("-".join(self.ops) + "-only")
        if self.exclude:
            parts.append(f"float{len(self.exclude)}")
        return "-".join(parts)


@dataclass(frozen=True)
class DynamicInt8:
    """int8 weights; activations quantized on the fly per inference (no calibration ranges). Linear/MatMul layers."""

    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    kind: ClassVar[str] = "dynamic_int8"

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", _exclude("dynamic_int8", self.exclude))
        if not isinstance(self.per_channel, bool):
            raise ConfigError("dynamic_int8.per_channel must be true or false")

    @property
    def name(self) -> str:
        return "dynamic-int8-" + ("per-channel" if self.per_channel else "per-tensor") + (
            f"-float{len(self.exclude)}" if self.exclude else "")


#: Losses for QAT fine-tuning: name -> fn(int8_output, float_output) -> scalar tensor (outputs: a tensor or a tuple
#: of tensors, first axis = samples). Register your own by name before building a ``QAT`` that names it.
QAT_LOSSES: Registry[Any] = Registry("QAT loss")


def _pairs(out: Any, ref: Any) -> list[tuple[Any, Any]]:
    import torch

    outs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
    refs = (ref,) if isinstance(ref, torch.Tensor) else tuple(ref)
    return list(zip(outs, refs, strict=True))


def _match_float(out: Any, ref: Any) -> Any:
    import torch

    return sum(torch.nn.functional.mse_loss(o.float(), r.float()) for o, r in _pairs(out, ref))


def _cosine(out: Any, ref: Any) -> Any:
    """1 - cosine similarity per sample (outputs flattened after the first axis), averaged; summed over outputs."""
    import torch.nn.functional as F  # noqa: N812

    return sum((1 - F.cosine_similarity(o.flatten(1).float(), r.flatten(1).float(), dim=1)).mean()
               for o, r in _pairs(out, ref))


QAT_LOSSES.register("cosine", _cosine)
QAT_LOSSES.register("mse", _match_float)
QAT_LOSSES.register("match_float", _match_float)  # the name earlier edgecart versions wrote


def _int_at_least(where: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{where} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class QAT:
    """Quantization-aware training, the fallback when post-training quantization misses the quality gate.

    ``prepare_qat_pt2e`` inserts fake-quantization; the observers are primed on the calibration inputs; then
    ``steps`` Adam steps on mini-batches of ``batch_size`` TRAINING inputs pull the int8 model's outputs towards the
    float model's (``loss``: a name in ``QAT_LOSSES``, plus ``relational`` x the batch's pairwise-similarity MSE),
    learning rate ``lr`` with cosine decay to zero. BatchNorm keeps the float model's statistics unless
    ``bn_update_steps`` > 0; the observers adjust the int8 ranges for the first ``observer_steps`` steps (None: a
    third of the steps), then the ranges are frozen. ``ema`` > 0 scores (and keeps) an exponential moving average of
    the weights (decay ``ema``) instead of the raw weights. Every ``eval_every`` steps (and at step 0 and the end)
    the converted int8 model is scored on VALIDATION inputs and the best step is kept (step 0 = no fine-tune).
    Without separate training inputs, the calibration inputs are split: a ``holdout`` share (at least one input) picks
    the step, the rest is fine-tuned on (see ``QATData.from_calibration``). The procedure lives in
    ``edgecart.exporters.calibrate.qat_fine_tune``; ``edgecart.compress.quantize_aware`` runs it on a torch model.
    """

    per_channel: bool = True
    steps: int = 160
    batch_size: int = 16
    lr: float = 5e-5
    loss: str = "cosine"
    relational: float = 0.0
    eval_every: int = 20
    observer_steps: int | None = None
    bn_update_steps: int = 0
    ema: float = 0.0
    holdout: float = 0.25
    exclude: tuple[str, ...] = ()
    seed: int = 0
    kind: ClassVar[str] = "qat"

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", _exclude("qat", self.exclude))
        if not isinstance(self.per_channel, bool):
            raise ConfigError("qat.per_channel must be true or false")
        for k in ("steps", "batch_size", "eval_every"):
            _int_at_least(f"qat.{k}", getattr(self, k), 1)
        for k in ("bn_update_steps", "seed") + (("observer_steps",) if self.observer_steps is not None else ()):
            _int_at_least(f"qat.{k}", getattr(self, k), 0)
        if not (isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) and 0 < self.lr < 1):
            raise ConfigError(f"qat.lr must lie in (0, 1), got {self.lr!r}")
        if not isinstance(self.loss, str) or self.loss not in QAT_LOSSES:
            raise ConfigError(f"qat.loss {self.loss!r} is unknown; known: {', '.join(QAT_LOSSES.names())} "
                              "(register more in edgecart.exporters.recipes.QAT_LOSSES)")
        if not (isinstance(self.relational, (int, float)) and self.relational >= 0):
            raise ConfigError(f"qat.relational must be a number >= 0, got {self.relational!r}")
        if not (isinstance(self.ema, (int, float)) and 0 <= self.ema < 1):
            raise ConfigError(f"qat.ema must lie in [0, 1) (0 = no averaging), got {self.ema!r}")
        if not (isinstance(self.holdout, (int, float)) and 0 < self.holdout < 1):
            raise ConfigError(f"qat.holdout must lie in (0, 1), got {self.holdout!r}")

    @property
    def name(self) -> str:
        return "qat-int8-" + ("per-channel" if self.per_channel else "per-tensor") + (
            f"-float{len(self.exclude)}" if self.exclude else "")

    @property
    def frozen_observers_at(self) -> int:
        """The step after which the int8 ranges stop moving."""
        return self.steps // 3 if self.observer_steps is None else self.observer_steps

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QAT:
        return from_dict(cls, {k: v for k, v in data.items() if k != "kind"}, "qat")


@dataclass(frozen=True)
class WeightOnlyInt8:
    """int8 weights (symmetric, per output channel), float activations: no calibration, files about 4x smaller.

    Offered where a backend runs it correctly: LiteRT (dynamic-range quantization through ai-edge-quantizer: int8
    weights; its kernels quantize activations on the fly, inputs and outputs stay float) and ONNX Runtime (dynamic
    quantization: int8 weights, activations quantized per inference). ExecuTorch refuses it
    (``UnsupportedRecipeError``): its PT2E weight-only path measured cosine 0.85 to the float model.
    """

    kind: ClassVar[str] = "weight_only_int8"

    @property
    def name(self) -> str:
        return "weight-only-int8"


QuantRecipe = StaticInt8 | DynamicInt8 | QAT | WeightOnlyInt8
RECIPE_TYPES: tuple[type, ...] = (StaticInt8, DynamicInt8, QAT, WeightOnlyInt8)

#: Recipe kinds by their ``kind`` field, for ``{"kind": "static_int8", ...}`` documents.
RECIPE_KINDS: Registry[type] = Registry("quantization recipe kind")
for _t in RECIPE_TYPES:
    RECIPE_KINDS.register(_t.kind, _t)

#: Ready-made recipes by name (new names, then the names older edgecart versions wrote into manifests).
RECIPES: Registry[QuantRecipe] = Registry("quantization recipe")
for _r in (StaticInt8(), StaticInt8(per_channel=False), StaticInt8(calibration="percentile"),
           StaticInt8(calibration="minmax"), StaticInt8(per_channel=False, calibration="minmax"),
           StaticInt8(calibration="minmax", ops=("conv", "linear")), DynamicInt8(), DynamicInt8(per_channel=False),
           QAT(), WeightOnlyInt8()):
    RECIPES.register(_r.name, _r)
for _old, _r in {
    "pt2e-xnnpack-per-channel": StaticInt8(), "pt2e-xnnpack-per-tensor": StaticInt8(per_channel=False),
    "pt2e-litert-per-channel": StaticInt8(), "pt2e-litert-per-tensor": StaticInt8(per_channel=False),
    "ort-static-qdq-per-channel-minmax": StaticInt8(calibration="minmax", activations="int8"),
    "ort-static-qdq-per-channel-percentile": StaticInt8(calibration="percentile", activations="int8"),
    "ort-static-qdq-per-channel-minmax-weights-only-ops": StaticInt8(calibration="minmax", ops=("conv", "linear"),
                                                                     activations="int8"),
    "ort-static-qdq-per-tensor-minmax": StaticInt8(per_channel=False, calibration="minmax", activations="int8"),
}.items():
    RECIPES.register(_old, _r)


def recipe_to_dict(recipe: QuantRecipe) -> dict[str, Any]:
    """``{"kind": ..., fields...}``: the JSON form the manifest records and ``recipe_from_dict`` reads."""
    return {"kind": recipe.kind, **to_dict(recipe)}


def recipe_from_dict(data: dict[str, Any]) -> QuantRecipe:
    if not isinstance(data, dict) or "kind" not in data:
        raise ConfigError(f"a recipe is a table with a 'kind' (one of {RECIPE_KINDS.names()}), got {data!r}")
    body = dict(data)
    cls = RECIPE_KINDS[body.pop("kind")]
    return from_dict(cls, body, cls.kind)


def resolve_recipe(recipe: Any) -> QuantRecipe:
    """A typed recipe from a recipe, a registered name, or a ``{"kind": ...}`` dict; anything else is refused."""
    if isinstance(recipe, RECIPE_TYPES):
        return recipe  # type: ignore[return-value]
    if isinstance(recipe, str):
        return RECIPES[recipe]
    if isinstance(recipe, dict):
        return recipe_from_dict(recipe)
    raise ConfigError(f"not a quantization recipe: {recipe!r}; pass one of {[t.__name__ for t in RECIPE_TYPES]}, "
                      f"a name ({', '.join(RECIPES.names())}) or a {{'kind': ...}} table")


__all__ = ["CALIBRATIONS", "OP_KINDS", "QAT", "QAT_LOSSES", "RECIPES", "RECIPE_KINDS", "RECIPE_TYPES", "DynamicInt8",
           "QuantRecipe", "StaticInt8", "WeightOnlyInt8", "recipe_from_dict", "recipe_to_dict", "resolve_recipe"]
