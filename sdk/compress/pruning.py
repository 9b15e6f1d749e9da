"""Pruning: ``prune(model, config, example_inputs)`` returns a pruned copy of the model.

- :class:`StructuredPruning` removes whole channels (conv filters, linear units) through torch-pruning's dependency
  graph, so every coupled layer shrinks with them: the exported graph has fewer channels, fewer parameters and
  fewer MACs, and runs faster on every backend.
- :class:`MagnitudePruning` zeroes the smallest weights (unstructured) and makes the zeros permanent
  (``torch.nn.utils.prune.remove``). The tensors keep their shapes: files compress better (gzip), but dense kernels
  do the same arithmetic — no speed-up without sparse kernels. The report measures both.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from edgecart.config import ConfigError, from_dict, to_dict
from edgecart.exporters.recipes import check_module_names
from edgecart.exporters.recipes import module_names as _names
from edgecart.runtime.registry import Registry

IMPORTANCES = ("l2", "l1", "random")
MODULE_KINDS = ("conv", "linear")


def _unknown_names(where: str, names: Sequence[str], model: Any) -> None:
    check_module_names(names, [n for n, _m in model.named_modules()], where)


def _whole(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


@dataclass(frozen=True)
class StructuredPruning:
    """Remove ``ratio`` of the channels of every prunable layer group (or of the whole net with ``global_pruning``).

    ``ignore``: module names never pruned (a list of names; an unknown name is an error). The layers that produce the
    model's outputs (every one of them, for a model with several outputs) are always kept whole, so the I/O spec
    does not change; the output shapes are checked after pruning, and a changed shape is an error. ``round_to``:
    keep channel counts multiples of this (vector-friendly, e.g. 8); the kept count is rounded down, so a small
    layer may lose more than ``ratio`` (8 channels at ratio 0.3 and ``round_to`` 4 keep 4).
    ``heads``: ``(module name, number of heads)`` of each fused q/k/v projection of an attention layer: its output
    is pruned head by head (the same channels of every head, keeping the head count), and a ``head_dim`` attribute
    of the module that holds it is updated to the new per-head width. ``protect_outputs``: keep the layer that
    produces the output whole (default); set it false for a model whose output comes from a tied table (a
    recommender scoring against its item embeddings), where the last linear layer feeds a hidden width that may
    shrink — the output shapes are then checked to be unchanged.
    """

    ratio: float = 0.5
    importance: str = "l2"
    global_pruning: bool = False
    ignore: tuple[str, ...] = ()
    round_to: int | None = None
    iterative_steps: int = 1
    seed: int = 0
    heads: tuple[tuple[str, int], ...] = ()
    protect_outputs: bool = True
    kind: ClassVar[str] = "structured"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ignore", _names("structured.ignore", self.ignore))
        try:
            heads = tuple((str(n), h) for n, h in self.heads)
        except (TypeError, ValueError):
            raise ConfigError("structured.heads is a list of [module name, number of heads] pairs, e.g. "
                              "[['blocks.0.qkv', 2]]") from None
        if any(not n or not isinstance(h, int) or isinstance(h, bool) or h < 1 for n, h in heads):
            raise ConfigError(f"structured.heads {list(self.heads)}: each pair needs a module name and a head count "
                              ">= 1")
        object.__setattr__(self, "heads", heads)
        if not isinstance(self.protect_outputs, bool):
            raise ConfigError("structured.protect_outputs must be true or false")
        if not (isinstance(self.ratio, (int, float)) and not isinstance(self.ratio, bool) and 0 < self.ratio < 1):
            raise ConfigError("structured.ratio must lie in (0, 1), e.g. 0.5 removes half of the channels")
        if self.importance not in IMPORTANCES:
            raise ConfigError(f"structured.importance {self.importance!r} unknown; known: {list(IMPORTANCES)}")
        if self.round_to is not None and not _whole(self.round_to, 1):
            raise ConfigError(f"structured.round_to must be a whole number >= 1 (e.g. 8) or absent, got "
                              f"{self.round_to!r}")
        if not _whole(self.iterative_steps, 1):
            raise ConfigError(f"structured.iterative_steps must be a whole number >= 1, got {self.iterative_steps!r}")
        if not _whole(self.seed, 0):
            raise ConfigError(f"structured.seed must be a whole number >= 0, got {self.seed!r}")
        if not isinstance(self.global_pruning, bool):
            raise ConfigError(f"structured.global_pruning must be true or false, got {self.global_pruning!r}")


@dataclass(frozen=True)
class MagnitudePruning:
    """Zero the ``amount`` smallest-magnitude weights of the conv/linear layers (``scope``: per layer or global).
    ``ignore``: module names left dense (a name covers its submodules; an unknown name is an error)."""

    amount: float = 0.5
    scope: str = "layer"
    modules: tuple[str, ...] = MODULE_KINDS
    ignore: tuple[str, ...] = ()
    kind: ClassVar[str] = "magnitude"

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", tuple(self.modules))
        object.__setattr__(self, "ignore", _names("magnitude.ignore", self.ignore))
        if not (isinstance(self.amount, (int, float)) and 0 < self.amount < 1):
            raise ConfigError("magnitude.amount must lie in (0, 1)")
        if self.scope not in ("layer", "global"):
            raise ConfigError(f"magnitude.scope {self.scope!r} unknown; known: ['global', 'layer']")
        bad = [m for m in self.modules if m not in MODULE_KINDS]
        if bad or not self.modules:
            raise ConfigError(f"magnitude.modules {list(self.modules)}: choose from {list(MODULE_KINDS)}")


PruneConfig = StructuredPruning | MagnitudePruning

#: Pruning methods by ``kind``.
PRUNERS: Registry[type] = Registry("pruning method")
PRUNERS.register(StructuredPruning.kind, StructuredPruning)
PRUNERS.register(MagnitudePruning.kind, MagnitudePruning)


def prune_config_from_dict(data: dict[str, Any]) -> PruneConfig:
    if not isinstance(data, dict) or "kind" not in data:
        raise ConfigError(f"a pruning table needs a 'kind' (one of {PRUNERS.names()})")
    body = dict(data)
    cls = PRUNERS[body.pop("kind")]
    return from_dict(cls, body, f"prune ({cls.kind})")


def prune_config_to_dict(config: PruneConfig) -> dict[str, Any]:
    return {"kind": config.kind, **to_dict(config)}


def prune(model: Any, config: PruneConfig, example_inputs: tuple[Any, ...]) -> Any:
    """A pruned copy of ``model`` (the original is left untouched). ``example_inputs``: a tuple of tensors."""
    if isinstance(config, StructuredPruning):
        return _structured(model, config, tuple(example_inputs))
    if isinstance(config, MagnitudePruning):
        return _magnitude(model, config)
    raise ConfigError(f"not a pruning config: {config!r}; use one of {PRUNERS.names()}")


def _kinds(kinds: Sequence[str]) -> tuple[type, ...]:
    from torch import nn

    table = {"conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d), "linear": (nn.Linear,)}
    return tuple(t for k in kinds for t in table[k])


def output_layers(model: Any, example_inputs: tuple[Any, ...]) -> list[str]:
    """Names of the conv/linear modules whose output reaches a model output without passing another conv/linear
    (every output of a model with several): pruning them would change the I/O spec. Found by a forward pass with
    hooks recording the autograd node of each conv/linear output, then walking back the autograd graph from every
    output tensor, stopping at those nodes."""
    import torch
    from torch.utils._pytree import tree_leaves

    produced: dict[Any, list[str]] = {}  # autograd node of a module's output -> module names
    order: list[str] = []

    def hook(_m: Any, _i: Any, out: Any, n: str) -> None:
        order.append(n)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                produced.setdefault(t.grad_fn, []).append(n)

    hooks = [m.register_forward_hook(lambda m_, i_, o_, n=n: hook(m_, i_, o_, n))
             for n, m in model.named_modules() if isinstance(m, _kinds(MODULE_KINDS))]
    params = [p for p in model.parameters() if p.is_floating_point() and not p.requires_grad]
    for p in params:  # frozen weights still need an autograd graph to trace through
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            outs = [t for t in tree_leaves(model.eval()(*example_inputs)) if isinstance(t, torch.Tensor)]
            found: list[str] = []
            seen: set[Any] = set()
            stack = [t.grad_fn for t in outs if t.grad_fn is not None]
            while stack:
                fn = stack.pop()
                if fn is None or fn in seen:
                    continue
                seen.add(fn)
                if fn in produced:
                    found.extend(n for n in produced[fn] if n not in found)
                    continue
                stack.extend(nxt for nxt, _ in fn.next_functions)
    finally:
        for h in hooks:
            h.remove()
        for p in params:
            p.requires_grad_(False)
    if not found and order and not any(t.grad_fn is not None for t in outs):
        return order[-1:]  # no autograd graph at all (outputs detached in forward): the last layer called
    return sorted(found, key=order.index)


def _structured(model: Any, cfg: StructuredPruning, example_inputs: tuple[Any, ...]) -> Any:
    import torch
    import torch_pruning as tp

    if not any(isinstance(m, _kinds(MODULE_KINDS)) for m in model.modules()):
        raise ConfigError(f"structured pruning found no {list(MODULE_KINDS)} layers to prune{_no_layers_hint(model)}")
    pruned = copy.deepcopy(model).eval()
    torch.manual_seed(cfg.seed)
    names = dict(pruned.named_modules())
    _unknown_names("structured.ignore", cfg.ignore, pruned)
    _unknown_names("structured.heads", [n for n, _h in cfg.heads], pruned)
    keep = set(cfg.ignore) | (set(output_layers(pruned, example_inputs)) if cfg.protect_outputs else set())
    before = _output_shapes(pruned, example_inputs)
    ignored = [names[n] for n in keep]
    num_heads = {names[n]: h for n, h in cfg.heads}
    kw: dict[str, Any] = {"num_heads": num_heads, "prune_head_dims": True, "prune_num_heads": False} \
        if num_heads else {}
    importance = {"l2": lambda: tp.importance.MagnitudeImportance(p=2),
                  "l1": lambda: tp.importance.MagnitudeImportance(p=1),
                  "random": tp.importance.RandomImportance}[cfg.importance]()
    pruner = tp.pruner.BasePruner(pruned, example_inputs, importance=importance, pruning_ratio=cfg.ratio,
                                  global_pruning=cfg.global_pruning, ignored_layers=ignored, round_to=cfg.round_to,
                                  iterative_steps=cfg.iterative_steps, **kw)
    params = sum(p.numel() for p in pruned.parameters())
    for _ in range(cfg.iterative_steps):
        pruner.step()
    if sum(p.numel() for p in pruned.parameters()) == params:
        raise ConfigError(f"structured pruning (ratio {cfg.ratio}) removed nothing: every conv/linear layer is "
                          "ignored, produces an output (kept whole) or has too few channels; prune another model or "
                          "drop the [prune] stage")
    for n, h in cfg.heads:  # the module holding the q/k/v projection splits its output by head_dim
        parent = names[n.rpartition(".")[0]] if "." in n else pruned
        if hasattr(parent, "head_dim"):
            parent.head_dim = names[n].out_features // 3 // h
    for p in pruned.parameters():
        p.requires_grad_(True)
    after = _output_shapes(pruned, example_inputs)
    if after != before:
        how = ("with protect_outputs=false changed the model's output shapes" if not cfg.protect_outputs else
               "changed the model's output shapes although the output layers were kept whole")
        fix = ("keep protect_outputs=true (or list the output layer in structured.ignore)" if not cfg.protect_outputs
               else "list the layers that produce the outputs in structured.ignore")
        raise ConfigError(f"structured pruning {how} {before} -> {after}; {fix}")
    return pruned


def _no_layers_hint(model: Any) -> str:
    """Why a model has no conv/linear modules and what to do: the module of a ``torch.export`` program (a
    ``.pt2``) keeps only its graph and weights, no ``nn.Conv2d``/``nn.Linear`` objects to prune."""
    if hasattr(model, "graph") and any(True for _ in model.parameters()):
        return (": a model loaded from a .pt2 (torch.export) has only its graph, no nn.Conv/nn.Linear modules, so it "
                "cannot be pruned; give the model as a factory 'package.module:function' returning the nn.Module "
                "(model = 'mypkg.models:build' with weights = 'model.safetensors' in compress.toml, or "
                "edgecart export mypkg.models:build --weights model.safetensors)")
    return ": pruning works on nn.Conv1d/2d/3d and nn.Linear modules; give a model built from them (a factory " \
           "'package.module:function')"


def _output_shapes(model: Any, example_inputs: tuple[Any, ...]) -> list[tuple[int, ...]]:
    import torch
    from torch.utils._pytree import tree_leaves

    with torch.no_grad():
        out = model.eval()(*example_inputs)
    return [tuple(o.shape) for o in tree_leaves(out) if isinstance(o, torch.Tensor)]


def _magnitude(model: Any, cfg: MagnitudePruning) -> Any:
    import torch.nn.utils.prune as tprune

    pruned = copy.deepcopy(model)
    _unknown_names("magnitude.ignore", cfg.ignore, pruned)
    targets = [(m, "weight") for n, m in pruned.named_modules()
               if isinstance(m, _kinds(cfg.modules)) and n not in cfg.ignore
               and not any(n.startswith(i + ".") for i in cfg.ignore)]
    if not targets:
        present = any(isinstance(m, _kinds(cfg.modules)) for m in pruned.modules())
        why = ": every one is in magnitude.ignore" if present else _no_layers_hint(pruned)
        raise ConfigError(f"magnitude pruning found no {list(cfg.modules)} layers to prune{why}")
    if cfg.scope == "global":
        tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=cfg.amount)
    else:
        for m, attr in targets:
            tprune.l1_unstructured(m, attr, amount=cfg.amount)
    for m, attr in targets:
        tprune.remove(m, attr)  # the mask is folded into the weight: plain tensors with zeros, nothing to re-apply
    return pruned


def sparsity(model: Any) -> dict[str, float]:
    """Parameter counts: total, non-zero, and the zero fraction."""
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    return {"params": total, "nonzero_params": nonzero, "sparsity": 1 - nonzero / total if total else 0.0}


__all__ = ["IMPORTANCES", "PRUNERS", "MagnitudePruning", "PruneConfig", "StructuredPruning", "output_layers",
           "prune", "prune_config_from_dict", "prune_config_to_dict", "sparsity"]
