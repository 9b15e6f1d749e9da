"""Compression as a layer: one verb per stage, each taking a frozen, JSON-round-tripping config.

- ``prune(model, StructuredPruning(...) | MagnitudePruning(...), example_inputs)`` → a pruned copy;
- ``quantize(model, recipe, example_inputs, calibration)`` → the int8 model in torch (PT2E numerics); the exporters
  write int8 files from the same typed recipes (``StaticInt8``, ``DynamicInt8``, ``QAT``, ``WeightOnlyInt8``);
- ``diagnose_int8`` ranks layers by the error their quantization adds; ``rescue_plan`` keeps the worst in float;
- ``Recipe`` chains prune → distil → quantize (``load_recipe`` reads TOML/JSON); ``export_compressed`` writes the
  bundle and records the recipe applied; ``report`` measures each step.

Imports are lazy: ``import edgecart.compress`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# torch-free at import; imported eagerly so that ``edgecart.compress.distill`` is the function, not the module
from .distill import DistillConfig, DistillData, DistillError, DistillResult, distill
from .losses import LOSSES, MSE, Cosine, Hint, KLDivergence, LabelCE, LossTerm, RankingKD, Relational, loss_from_dict

_EXPORTS = {
    "prune": "pruning", "StructuredPruning": "pruning", "MagnitudePruning": "pruning", "sparsity": "pruning",
    "PRUNERS": "pruning",
    "quantize": "quantization", "diagnose_int8": "quantization", "rescue_plan": "quantization",
    "gate_rescue": "quantization", "quantize_aware": "quantization", "QATFineTune": "quantization",
    "quantize_batched": "quantization", "agreement_evaluator": "quantization", "LayerError": "quantization",
    "Recipe": "recipe", "DistillStage": "recipe", "QuantizeStage": "recipe", "load_recipe": "recipe",
    "register_stage": "recipe", "STAGE_RUNNERS": "recipe",
    "export_compressed": "pipeline",
    "model_stats": "report", "write_report": "report", "StepRow": "report",

    "StaticInt8": "_recipes", "DynamicInt8": "_recipes", "QAT": "_recipes", "WeightOnlyInt8": "_recipes",
    "RECIPES": "_recipes", "resolve_recipe": "_recipes",
}


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'edgecart.compress' has no attribute {name!r}")
    if mod == "_recipes":
        return getattr(importlib.import_module("edgecart.exporters.recipes"), name)
    return getattr(importlib.import_module(f"edgecart.compress.{mod}"), name)


__all__ = ["Cosine", "DistillConfig", "DistillData", "DistillError", "DistillResult", "DistillStage", "DynamicInt8",
           "Hint", "KLDivergence", "LOSSES", "LabelCE", "LayerError", "LossTerm", "MSE", "MagnitudePruning",
           "PRUNERS", "QAT", "QATFineTune", "QuantizeStage", "RECIPES", "RankingKD", "Recipe", "Relational",
           "STAGE_RUNNERS",
           "StaticInt8", "StepRow", "StructuredPruning", "WeightOnlyInt8", "agreement_evaluator", "diagnose_int8",
           "distill", "export_compressed", "gate_rescue", "load_recipe", "loss_from_dict", "model_stats", "prune",
           "quantize", "quantize_aware", "quantize_batched", "register_stage", "rescue_plan", "resolve_recipe",
           "sparsity", "write_report"]
