"""A user's model and data from files, for ``edgecart export`` / ``edgecart compress``: a ``torch.export``-saved
program (``.pt2``) or a Python factory (``package.module:function``) with an optional weights file, sample inputs
from ``.npz``, and preprocessing from JSON/TOML (a file or an inline string). Nothing here unpickles."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from edgecart.config import ConfigError, from_dict, load_file
from edgecart.runtime.manifest import ImagePreprocessing, Preprocessing, SequencePreprocessing


def load_model(spec: str, weights: str | None = None) -> tuple[Any, tuple[Any, ...] | None]:
    """(module in eval mode, the example inputs saved with it or None). ``spec``: a ``.pt2`` file written by
    ``torch.export.save``, or ``package.module:factory`` (a callable returning an ``nn.Module``) whose state dict
    ``weights`` (``.safetensors``, or a tensors-only ``.pt`` read with ``weights_only=True``) is loaded."""
    import torch

    if spec.endswith(".pt2"):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"{path}: no such file (save one with torch.export.save(torch.export.export(m, x), "
                              "'model.pt2'))")
        ep = torch.export.load(str(path))
        example = None
        saved = getattr(ep, "example_inputs", None)
        if saved is not None:
            args, kwargs = saved
            if not kwargs and all(isinstance(a, torch.Tensor) for a in args):
                example = tuple(a.detach().clone() for a in args)
        if weights:
            raise ConfigError("a .pt2 program carries its weights; drop the weights option")
        return _fixed_mode(ep.module()), example
    if ":" not in spec:
        raise ConfigError(f"model {spec!r}: give a .pt2 file or 'package.module:factory'")
    mod_name, fn_name = spec.split(":", 1)
    try:
        factory = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model {spec!r}: cannot import it ({exc})") from None
    model = factory()
    if weights:
        wp = Path(weights)
        if wp.suffix == ".safetensors":
            from safetensors.torch import load_file as load_st

            state = load_st(str(wp))
        else:
            state = torch.load(str(wp), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval(), None


def _fixed_mode(module: Any) -> Any:
    """The module of an exported program runs in the mode it was exported in (export it from ``model.eval()``);
    its ``train()``/``eval()`` raise NotImplementedError, so they become no-ops returning the module."""
    import types

    module.train = types.MethodType(lambda self, mode=True: self, module)
    module.eval = types.MethodType(lambda self: self, module)
    return module


def input_shapes(model: Any, example: tuple[Any, ...] | None) -> list[tuple[int, ...]] | None:
    """The static input shapes of an exported program's module (from its placeholders), else of ``example``."""
    if example is not None:
        return [tuple(t.shape) for t in example]
    io = getattr(model, "io_spec", None)
    if io is not None:
        return [tuple(s.shape) for s in io.inputs]
    graph = getattr(model, "graph", None)
    if graph is None:
        return None
    shapes = []
    for node in graph.nodes:
        if node.op == "placeholder" and "val" in node.meta and hasattr(node.meta["val"], "shape"):
            shapes.append(tuple(int(d) for d in node.meta["val"].shape))
    return shapes or None


def read_samples(path: str | Path, shapes: list[tuple[int, ...]] | None = None,
                 names: list[str] | None = None) -> list[tuple[Any, ...]]:
    """Sample inputs from an ``.npz``: one array per model input (named like the inputs, or ``input_0``…,
    ``arr_0``…, in the model's input order), the first axis counting samples. An array of shape ``(N, *shape)``
    gives N samples of ``shape``; when the input's batch is 1, ``(N, *shape[1:])`` works too."""
    import numpy as np
    import torch

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such file")
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if not arrays:
        raise ConfigError(f"{p}: holds no arrays")
    order = names if names and all(n in arrays for n in names) else sorted(arrays, key=_natural)
    cols = []
    for i, key in enumerate(order):
        a = np.ascontiguousarray(arrays[key])
        shape = shapes[i] if shapes and i < len(shapes) else None
        if shape is not None and a.ndim == len(shape) + 1 and tuple(a.shape[1:]) == shape:
            cols.append([a[j] for j in range(a.shape[0])])
        elif shape is not None and shape[0] == 1 and tuple(a.shape[1:]) == shape[1:]:
            cols.append([a[j:j + 1] for j in range(a.shape[0])])
        elif shape is None:
            cols.append([a[j] for j in range(a.shape[0])])
        else:
            raise ConfigError(f"{p}: array {key!r} has shape {a.shape}; the model's input {i} is {shape}: store "
                              f"(samples, *{shape})")
    counts = {len(c) for c in cols}
    if len(counts) != 1:
        raise ConfigError(f"{p}: arrays hold different numbers of samples {sorted(counts)}")
    if shapes and len(cols) != len(shapes):
        raise ConfigError(f"{p}: {len(cols)} arrays for a model with {len(shapes)} inputs")
    return [tuple(torch.from_numpy(np.ascontiguousarray(c[j])) for c in cols) for j in range(counts.pop())]


def _natural(key: str) -> tuple[str, int]:
    head = key.rstrip("0123456789")
    tail = key[len(head):]
    return head, int(tail) if tail else -1


def parse_preprocessing(value: str | dict[str, Any] | None) -> Preprocessing | None:
    """Preprocessing from a dict, a ``.json``/``.toml`` file, or an inline JSON string
    (``'{"kind": "image", "size": [224, 224], "color": "rgb"}'``)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--preprocessing: not valid JSON: {exc}") from None
        else:
            value = load_file(text)
    kinds = {"image": ImagePreprocessing, "sequence": SequencePreprocessing}
    if not isinstance(value, dict) or value.get("kind", "image") not in kinds:
        raise ConfigError(f"preprocessing.kind must be one of {sorted(kinds)}")
    cls = kinds[value.get("kind", "image")]
    try:
        return from_dict(cls, value, "preprocessing")
    except Exception as exc:  # ManifestError from the dataclass's own checks
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"preprocessing: {exc}") from None


__all__ = ["input_shapes", "load_model", "parse_preprocessing", "read_samples"]
