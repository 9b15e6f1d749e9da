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
class ExportRequest:
    """One artifact to write: the model, example inputs (tuple of tensors), names, precision, recipe, calibration.

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
