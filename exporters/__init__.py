"""Exporters: one module per format (executorch, onnx, tflite), registered by name, and the bundle writer."""

from __future__ import annotations

from . import executorch as _executorch  # noqa: F401  (registers; imports torch only when used)
from . import onnx as _onnx  # noqa: F401
from . import tflite as _tflite  # noqa: F401
from .base import EXPORTERS, ExportedFiles, Exporter, ExportRequest, toolchain_versions
from .bundle import BundleWriter, pack
from .export import DEFAULT_FORMATS, IOSpec, ParityTolerance, export, export_artifact, golden_from_model
from .gate import QualityGate, evaluate_artifact, export_int8_gated

__all__ = ["DEFAULT_FORMATS", "EXPORTERS", "BundleWriter", "ExportRequest", "ExportedFiles", "Exporter", "IOSpec",
           "ParityTolerance", "QualityGate", "evaluate_artifact", "export", "export_artifact", "export_int8_gated",
           "golden_from_model", "pack", "toolchain_versions"]
