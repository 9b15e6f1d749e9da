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


def load_model(spec: str, weights: str | None = None,
               notes: list[str] | None = None) -> tuple[Any, tuple[Any, ...] | None]:
    """(module in eval mode, the example inputs saved with it or None). ``spec``: a ``.pt2`` file written by
    ``torch.export.save``, or ``package.module:factory`` (a callable returning an ``nn.Module``) whose state dict
    ``weights`` (``.safetensors``, or a tensors-only ``.pt`` read with ``weights_only=True``) is loaded.
    ``notes`` (when given) receives what the user should know, e.g. that a ``.pt2`` exported with dynamic shapes is
    exported here with the shapes of its example inputs (bundles hold static shapes)."""
    import torch

    if spec.endswith(".pt2"):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"{path}: no such file (save one with torch.export.save(torch.export.export(m, x), "
                              "'model.pt2'))")
        ep = _load_exported(path)
        example = None
        saved = getattr(ep, "example_inputs", None)
        if saved is not None:
            args, kwargs = saved
            if not kwargs and all(isinstance(a, torch.Tensor) for a in args):
                example = tuple(a.detach().clone() for a in args)
        if weights:
            raise ConfigError("a .pt2 program carries its weights; drop the weights option")
        dynamic = _dynamic_inputs(ep)
        if dynamic and notes is not None:
            fixed = ", ".join(str(tuple(t.shape)) for t in example) if example else "those of the sample inputs"
            notes.append(f"{path} was exported with dynamic shapes ({'; '.join(dynamic)}); a bundle holds static "
                         f"shapes, so it is exported with its example inputs' shapes: {fixed}. To ship another "
                         "batch size, export the .pt2 with an example of that size")
        return _fixed_mode(ep.module()), example
    if ":" not in spec:
        raise ConfigError(f"model {spec!r}: give a .pt2 file or 'package.module:factory'")
    mod_name, fn_name = spec.split(":", 1)
    try:
        factory = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model {spec!r}: cannot import it ({exc})") from None
    model = _build(spec, factory)
    if weights:
        _load_weights(spec, model, Path(weights))
    return model.eval(), None


def _build(spec: str, factory: Any) -> Any:
    """``factory()``, checked: a callable that takes no arguments and returns a ``torch.nn.Module``."""
    import inspect

    import torch

    if not callable(factory):
        raise ConfigError(f"model {spec!r}: {type(factory).__name__} {factory!r} is not callable; name a function "
                          "that takes no arguments and returns a torch.nn.Module")
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:
        raise ConfigError(f"model {spec!r}: the factory must take no arguments ({exc}); wrap it, e.g. "
                          "def build(): return MyModel(width=64)") from None
    except ValueError:  # no signature to inspect (some builtins): calling it tells
        pass
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model {spec!r}: the factory returned {type(model).__name__} {model!r:.80}, not a "
                          "torch.nn.Module; name a function that builds and returns the model")
    return model


def _load_weights(spec: str, model: Any, path: Path) -> None:
    """Load into ``model`` the state dict in ``path`` (``.safetensors``, else a tensors-only ``torch.save`` file);
    each problem is a ConfigError naming the file, the factory and how to write a fitting file."""
    import torch

    how = (f"save one from the model {spec!r} builds with torch.save(model.state_dict(), {str(path)!r}) "
           "(or safetensors.torch.save_file)")
    if not path.is_file():
        raise ConfigError(f"weights {path}: no such file; {how}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file as load_st

            state = load_st(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unpickling error, a bad zip, a header error: all the same to the user
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"weights {path}: not a state dict torch.load(weights_only=True) or safetensors can "
                          f"read ({type(exc).__name__}: {why[:200]}); {how}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"weights {path}: holds a {type(state).__name__}, not a state dict of tensors; {how}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        detail = "; ".join(lines[:4]) + (" ..." if len(lines) > 4 else "")
        raise ConfigError(f"weights {path} do not fit the model {spec!r} builds ({detail[:600]}); give the "
                          f"weights of that model: {how}") from None


def _dynamic_inputs(ep: Any) -> list[str]:
    """The user inputs of an exported program whose shape has symbolic (dynamic) dimensions, as "input I axes A"."""
    import torch

    user = set(getattr(ep.graph_signature, "user_inputs", ()))
    found, i = [], 0
    for node in ep.graph.nodes:
        if node.op != "placeholder" or (user and node.name not in user):
            continue
        shape = getattr(node.meta.get("val"), "shape", ())
        axes = [str(a) for a, d in enumerate(shape) if isinstance(d, torch.SymInt)]
        if axes:
            found.append(f"input {i} axis {', '.join(axes)}")
        i += 1
    return found


def _load_exported(path: Path) -> Any:
    """``torch.export.load`` of ``path``; a file that is not such an archive (truncated, empty, random bytes, a
    ``torch.save`` checkpoint) raises a ConfigError saying how to write one. torch logs its own traceback before
    raising; that log is kept out of the user's terminal and its last line goes into the message."""
    import logging

    import torch

    seen: list[str] = []

    def swallow(record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            seen.append(str(record.exc_info[1]).split(". This is an internal miniz error")[0])
        return False

    log = logging.getLogger("torch.export")
    log.addFilter(swallow)
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - zipfile.BadZipFile, RuntimeError, KeyError...: all the same to the user
        why = seen[-1] if seen else f"{type(exc).__name__}: {exc}".strip()
        raise ConfigError(f"{path}: not a torch.export.save archive ({why}); save one with "
                          f"torch.export.save(torch.export.export(model, example_inputs), {str(path)!r})") from None
    finally:
        log.removeFilter(swallow)


def _fixed_mode(module: Any) -> Any:
    """The module of an exported program runs in the mode it was exported in (export it from ``model.eval()``);
    its ``train()``/``eval()`` raise NotImplementedError, so they become no-ops returning the module."""
    import types

    module.train = types.MethodType(lambda self, mode=True: self, module)
    module.eval = types.MethodType(lambda self: self, module)
    return module


class InputShapes(list):
    """The model's input shapes (a list of tuples), carrying what :func:`read_samples` checks the samples against:
    ``dtypes`` (one ``torch.dtype`` or None per input) and ``float_dtype`` (the dtype of the model's floating
    parameters, used when an input's dtype is unknown)."""

    def __init__(self, shapes: Any = (), dtypes: Any = None, float_dtype: Any = None) -> None:
        super().__init__(shapes)
        self.dtypes = list(dtypes) if dtypes is not None else [None] * len(self)
        self.float_dtype = float_dtype


def input_shapes(model: Any, example: tuple[Any, ...] | None) -> InputShapes | None:
    """The static input shapes of an exported program's module (from its placeholders), else of ``example``; the
    result also carries the inputs' dtypes (``.dtypes``) for :func:`read_samples`. For a module whose inputs are
    not known, an empty list carrying only the parameters' float dtype (None for a module without float
    parameters)."""
    import torch

    floats = [p.dtype for p in model.parameters() if p.is_floating_point()] if hasattr(model, "parameters") else []
    float_dtype = floats[0] if floats else None
    if example is not None:
        return InputShapes([tuple(t.shape) for t in example], [getattr(t, "dtype", None) for t in example],
                           float_dtype)
    io = getattr(model, "io_spec", None)
    if io is not None:
        return InputShapes([tuple(s.shape) for s in io.inputs],
                           [getattr(torch, str(s.dtype), None) for s in io.inputs], float_dtype)
    graph = getattr(model, "graph", None)
    if graph is None:  # shapes unknown (a factory model); float64 samples are still brought to its float dtype
        return InputShapes([], float_dtype=float_dtype) if float_dtype is not None else None
    shapes, dtypes = [], []
    for node in graph.nodes:
        if node.op == "placeholder" and "val" in node.meta and hasattr(node.meta["val"], "shape"):
            shapes.append(tuple(int(d) for d in node.meta["val"].shape))
            dtypes.append(getattr(node.meta["val"], "dtype", None))
    return InputShapes(shapes, dtypes, float_dtype) if shapes else None


def read_samples(path: str | Path, shapes: list[tuple[int, ...]] | None = None,
                 names: list[str] | None = None, dtypes: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Sample inputs from an ``.npz``: one array per model input (named like the inputs, or ``input_0``…,
    ``arr_0``…, in the model's input order), the first axis counting samples. An array of shape ``(N, *shape)``
    gives N samples of ``shape``; when the input's batch is 1, ``(N, *shape[1:])`` works too. When the input shapes
    are not known (a factory model), ``(N, *input)`` gives N samples of shape ``(1, *input)``: a batch of one.

    ``dtypes`` (default: those :func:`input_shapes` put on ``shapes``): what each input takes. float64 samples
    for a float32 input are cast (no precision the model could use is lost); any other mismatch is a ConfigError
    naming the expected dtype. Object arrays and pickled files are refused, never unpickled."""
    import numpy as np
    import torch

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such file")
    arrays = _load_npz(p)
    if not arrays:
        raise ConfigError(f"{p}: holds no arrays")
    if dtypes is None:
        dtypes = getattr(shapes, "dtypes", None)
    float_dtype = getattr(shapes, "float_dtype", None)
    order = names if names and all(n in arrays for n in names) else sorted(arrays, key=_natural)
    cols = []
    for i, key in enumerate(order):
        a = np.ascontiguousarray(arrays[key])
        shape = shapes[i] if shapes and i < len(shapes) else None
        want = dtypes[i] if dtypes and i < len(dtypes) else None
        a = _checked_dtype(p, key, i, a, want, float_dtype)
        if a.ndim == 0:
            raise ConfigError(f"{p}: array {key!r} is a single number; store (samples, "
                              f"*{shape if shape is not None else 'input shape'})")
        if a.shape[0] == 0:
            raise ConfigError(f"{p} holds no samples: array {key!r} has shape {a.shape}; store (samples, "
                              f"*{shape if shape is not None else 'input shape'}) with samples >= 1")
        if shape is not None and a.ndim == len(shape) + 1 and tuple(a.shape[1:]) == shape:
            cols.append([a[j] for j in range(a.shape[0])])
        elif shape is not None and shape[0] == 1 and tuple(a.shape[1:]) == shape[1:]:
            cols.append([a[j:j + 1] for j in range(a.shape[0])])
        elif shape is None:  # the model's input shape is not known (a factory): each sample keeps a batch axis of 1
            cols.append([a[j:j + 1] for j in range(a.shape[0])])
        else:
            raise ConfigError(f"{p}: array {key!r} has shape {a.shape}; the model's input {i} is {shape}: store "
                              f"(samples, *{shape})")
    counts = {len(c) for c in cols}
    if len(counts) != 1:
        raise ConfigError(f"{p}: arrays hold different numbers of samples {sorted(counts)}")
    if shapes and len(cols) != len(shapes):
        raise ConfigError(f"{p}: {len(cols)} arrays for a model with {len(shapes)} inputs")
    return [tuple(torch.from_numpy(np.ascontiguousarray(c[j])) for c in cols) for j in range(counts.pop())]


def _load_npz(p: Path) -> dict[str, Any]:
    """The arrays of an ``.npz`` (``np.savez``), read with ``allow_pickle=False``; anything else is a ConfigError."""
    import zipfile

    import numpy as np

    how = "write one with numpy.savez(FILE, input_0=array) (numeric arrays, first axis = samples)"
    try:
        z = np.load(p, allow_pickle=False)
    except ValueError as exc:  # "Cannot load file containing pickled data when allow_pickle=False"
        if "pickle" in str(exc):
            raise ConfigError(f"{p}: not an .npz of arrays but a pickled file; pickles are never loaded: {how}") \
                from None
        raise ConfigError(f"{p}: not an .npz file ({exc}); {how}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{p}: not an .npz file ({type(exc).__name__}: {exc}); {how}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ConfigError(f"{p}: not an .npz file (a single .npy array); {how}")
    arrays = {}
    with z:
        for k in z.files:
            try:
                arrays[k] = z[k]
            except ValueError as exc:  # "Object arrays cannot be loaded when allow_pickle=False"
                if "bject arrays" in str(exc) or "pickle" in str(exc):
                    raise ConfigError(f"{p}: array {k!r} holds Python objects (an object array), which are never "
                                      f"unpickled; store numeric arrays: {how}") from None
                raise ConfigError(f"{p}: not a readable .npz file (array {k!r}: {exc}); {how}") from None
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ConfigError(f"{p}: not a readable .npz file (array {k!r}: {type(exc).__name__}: {exc}); "
                                  f"{how}") from None
    return arrays


def _checked_dtype(p: Path, key: str, i: int, a: Any, want: Any, float_dtype: Any) -> Any:
    """``a`` in the dtype the model's input ``i`` takes (``want``, a torch dtype or None when unknown)."""
    import numpy as np
    import torch

    if a.dtype.kind not in "biuf" or a.dtype.byteorder == ">":
        if a.dtype.kind in "biuf":
            return _checked_dtype(p, key, i, a.astype(a.dtype.newbyteorder("=")), want, float_dtype)
        raise ConfigError(f"{p}: array {key!r} has dtype {a.dtype}; store numeric arrays "
                          f"({_torch_name(want) if want is not None else 'float32'})")
    have = torch.from_numpy(a[:0]).dtype
    if want is None:  # not known: only the float64 of numpy's defaults is brought to the model's float dtype
        if have == torch.float64 and float_dtype == torch.float32:
            return a.astype(np.float32)
        return a
    if have == want:
        return a
    if have == torch.float64 and want == torch.float32:
        return a.astype(np.float32)
    raise ConfigError(f"{p}: array {key!r} has dtype {a.dtype}; the model's input {i} takes {_torch_name(want)}: "
                      f"store it as {_torch_name(want)} (e.g. array.astype(numpy.{_torch_name(want)}))")


def _torch_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


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


__all__ = ["InputShapes", "input_shapes", "load_model", "parse_preprocessing", "read_samples"]
