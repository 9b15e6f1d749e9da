"""What every format exporter provides, and the registry they join."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgecart.runtime.registry import Registry


@dataclass(frozen=True)
class ExportRequest:
    """One artifact to write: the model, example inputs (tuple of tensors), names, precision and calibration."""

    model: Any  # torch.nn.Module (kept as Any so this module imports without torch)
    example_inputs: tuple[Any, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    precision: str = "fp32"
    recipe: str | None = None
    calibration: Sequence[tuple[Any, ...]] = ()

    def __post_init__(self) -> None:
        if self.precision == "int8" and not self.calibration:
            raise ValueError("int8 export needs calibration inputs: pass calibration=[(tensor, ...), ...]")


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
    int8_recipes: tuple[str, ...]

    def write(self, request: ExportRequest, path: Path) -> ExportedFiles: ...


EXPORTERS: Registry[Exporter] = Registry("export format")


def toolchain_versions() -> dict[str, str]:
    """Versions of the libraries that shaped a bundle, for its manifest."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("edgecart", "torch", "executorch", "torchao", "onnx", "onnxscript", "onnxruntime", "litert-torch",
                "ai-edge-litert", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
