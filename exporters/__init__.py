"""Exporters: one module per format (executorch, onnx, tflite), registered by name, and the bundle writer."""

from __future__ import annotations

from . import executorch as _executorch  # noqa: F401  (registers; imports torch only when used)
from . import onnx as _onnx  # noqa: F401
from . import tflite as _tflite  # noqa: F401
from .base import (
    EXPORTERS,
    ExportedFiles,
    Exporter,
    ExportRequest,
    QATData,
    QATDataError,
    ToolchainError,
    UnsupportedRecipeError,
    is_toolchain_error,
    supported_recipes,
    toolchain_versions,
)
from .bundle import BundleWriter, pack
from .export import (
    DEFAULT_FORMATS,
    IOSpec,
    ParityTolerance,
    export,
    export_artifact,
    golden_from_model,
    infer_io_spec,
)
from .gate import QualityGate, evaluate_artifact, export_int8_gated, qat_rescue
from .recipes import QAT, RECIPES, DynamicInt8, QuantRecipe, StaticInt8, WeightOnlyInt8, resolve_recipe

__all__ = ["DEFAULT_FORMATS", "EXPORTERS", "QAT", "RECIPES", "BundleWriter", "DynamicInt8", "ExportRequest",
           "ExportedFiles", "Exporter", "IOSpec", "ParityTolerance", "QATData", "QATDataError", "QualityGate",
           "QuantRecipe", "StaticInt8", "ToolchainError", "UnsupportedRecipeError", "WeightOnlyInt8",
           "evaluate_artifact", "export", "export_artifact", "export_int8_gated", "golden_from_model",
           "infer_io_spec", "is_toolchain_error", "pack", "qat_rescue", "resolve_recipe", "supported_recipes",
           "toolchain_versions"]
