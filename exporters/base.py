"""What every format exporter provides, the registry they join, and the errors an export can raise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgecart.runtime.errors import EdgecartError
from edgecart.runtime.registry import Registry

from .recipes import QuantRecipe, resolve_recipe


class ToolchainError(EdgecartError):
    """The conversion toolchain (torch.export, a quantizer, a lowering, ONNX Runtime's quantizer, litert-torch) could
    not apply this format or recipe to this model. The quality gate treats it as a failed attempt; other exceptions
    (bugs) propagate."""


class UnsupportedRecipeError(EdgecartError, ValueError):
    """A format was asked to apply a quantization recipe it does not implement."""


#: Top-level packages whose exceptions count as toolchain failures (see :func:`is_toolchain_error`).
TOOLCHAIN_PACKAGES = ("torch", "torchao", "executorch", "onnx", "onnxscript", "onnxruntime", "litert_torch",
                      "ai_edge_litert", "ai_edge_quantizer", "jax", "jaxlib", "tensorflow", "flatbuffers", "sympy",
                      "google", "ml_dtypes", "torch_pruning")


def is_toolchain_error(exc: BaseException) -> bool:
    """True when ``exc`` was raised inside a conversion library (its innermost traceback frame belongs to one of
    ``TOOLCHAIN_PACKAGES``, or its class is defined there). An exception raised by edgecart's own code — an
    exporter bug, a wrong argument we passed and checked ourselves — is not a toolchain error."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, MemoryError, EdgecartError)):
        return False
    mod = type(exc).__module__.split(".")[0]
    if mod in TOOLCHAIN_PACKAGES:
        return True
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return False
    # a C extension raises from the Python frame that called it: that frame's package decides
    return str(last.tb_frame.f_globals.get("__name__", "")).split(".")[0] in TOOLCHAIN_PACKAGES


@dataclass(frozen=True)
class QATData:
    """Inputs for quantization-aware fine-tuning (the ``QAT`` recipe): ``train``, input tuples the fine-tune draws
    its mini-batches from (a TRAINING split), and ``validation``, input tuples on which the int8 model's agreement
    with the float model picks the step (a split the fine-tune never sees). Each is a sequence of input tuples in the
    form of calibration inputs (one tensor per model input, first axis = samples, usually 1). ``source``: how the
    inputs were obtained, recorded in the manifest's quantization entry."""

    train: Sequence[tuple[Any, ...]]
    validation: Sequence[tuple[Any, ...]]
    source: str = "training and validation inputs given by the caller"

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", tuple(tuple(b) for b in self.train))
        object.__setattr__(self, "validation", tuple(tuple(b) for b in self.validation))
        if len(self.train) < 2:
            raise QATDataError(f"QATData.train holds {len(self.train)} input(s); QAT needs at least 2 training inputs")
        if not self.validation:
            raise QATDataError("QATData.validation is empty; give validation inputs (they pick the fine-tune step)")
        arity = {len(b) for b in (*self.train, *self.validation)}
        if len(arity) != 1 or 0 in arity:
            raise QATDataError(f"QATData: every input tuple must hold one tensor per model input; got sizes "
                               f"{sorted(arity)}")

    @classmethod
    def from_calibration(cls, calibration: Sequence[tuple[Any, ...]], holdout: float = 0.25,
                         seed: int = 0) -> QATData:
        """Split calibration inputs deterministically (a permutation seeded by ``seed``): ``ceil(holdout * n)``
        inputs (at least 1) pick the step, the others are fine-tuned on. Needs at least 3 inputs."""
        import math

        import numpy as np

        items = [tuple(b) for b in calibration]
        n = len(items)
        if n < 3:
            raise QATDataError(f"QAT on calibration inputs alone needs at least 3 of them (2 to fine-tune on, 1 held "
                               f"out to pick the step), got {n}; pass more calibration inputs or QATData")
        held = min(n - 2, max(1, math.ceil(holdout * n)))
        order = np.random.default_rng(seed).permutation(n)
        val = sorted(int(i) for i in order[:held])
        train = sorted(int(i) for i in order[held:])
        return cls([items[i] for i in train], [items[i] for i in val],
                   source=f"no training inputs given: the {n} calibration inputs split deterministically (seed "
                          f"{seed}) into {len(train)} fine-tuned on and {len(val)} held out to pick the step")

    def describe(self) -> dict[str, Any]:
        return {"train_samples": len(self.train), "validation_samples": len(self.validation), "source": self.source}


class QATDataError(EdgecartError, ValueError):
    """QAT was given too few or ill-formed training/validation inputs; the message says what it needs."""


@dataclass(frozen=True)
class ExportRequest:
    """One artifact to write: the model, example inputs (tuple of tensors), names, precision, recipe, calibration,
    and for a QAT recipe optionally its training/validation inputs (``qat_data``).

    ``recipe`` may be a typed recipe, a registered name (misspellings raise, listing the known names) or a
    ``{"kind": ...}`` table; it is stored typed.
    """

    model: Any  # torch.nn.Module (kept as Any so this module imports without torch)
    example_inputs: tuple[Any, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    precision: str = "fp32"
    recipe: QuantRecipe | None = None
    calibration: Sequence[tuple[Any, ...]] = ()
    #: training/validation inputs for a QAT recipe (None: QAT splits the calibration inputs)
    qat_data: QATData | None = None

    def __post_init__(self) -> None:
        if self.recipe is not None:
            object.__setattr__(self, "recipe", resolve_recipe(self.recipe))
        needs_calibration = getattr(self.recipe, "kind", None) != "weight_only_int8"
        if self.precision == "int8" and not self.calibration and needs_calibration:
            raise ValueError("int8 export needs calibration inputs: pass calibration=[(tensor, ...), ...]")
        if self.precision != "int8" and self.recipe is not None:
            raise ValueError(f"a quantization recipe ({self.recipe.name}) needs precision='int8'")


@dataclass(frozen=True)
class ExportedFiles:
    """What an exporter wrote: the model file and any side files (paths inside the staging folder)."""

    path: Path
    side_files: tuple[Path, ...] = ()
    delegate: str | None = None
    quantization: dict[str, Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class Exporter(Protocol):
    format: str
    suffix: str
    #: int8 recipes in the order a quality gate should try them; empty when the format has no int8 path.
    int8_recipes: tuple[QuantRecipe, ...]

    def supports(self, recipe: QuantRecipe) -> bool: ...

    def write(self, request: ExportRequest, path: Path) -> ExportedFiles: ...


EXPORTERS: Registry[Exporter] = Registry("export format")


def supported_recipes(fmt: str) -> list[str]:
    """Names of the registered recipes format ``fmt`` can apply (for error messages and ``edgecart export``)."""
    from .recipes import RECIPES

    exporter = EXPORTERS[fmt]
    seen: list[str] = []
    for name in RECIPES.names():
        r = RECIPES[name]
        if exporter.supports(r) and r.name == name:
            seen.append(name)
    return seen


def toolchain_versions() -> dict[str, str]:
    """Versions of the libraries that shaped a bundle, for its manifest."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("edgecart", "torch", "executorch", "torchao", "onnx", "onnxscript", "onnxruntime", "litert-torch",
                "ai-edge-litert", "torch-pruning", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
