"""Reuse torchao's conv-bn pattern graphs across QAT calls instead of re-exporting them every time.

``convert_pt2e`` on a QAT graph folds each fake-quantized conv + batch-norm back into one conv. To find them, torchao
(0.18, ``qat_utils._fold_conv_bn_qat``) ``torch.export``s about a hundred small pattern functions, one per variant
(conv1d/conv2d/transposed, per-channel or not, bias or not, ...), on every call; the train/eval switches
(``move_exported_model_to_eval``/``_train``) do the same for their dropout and batch-norm patterns, and so does the
XNNPACK quantizer's conv-bn annotation in ``prepare_qat_pt2e``. A pattern graph depends only on which pattern
function it traces and the shapes of the example inputs, never on the model, so one export per variant and process
is enough. Measured on one EPYC core (``scripts/qat_convert_speed.py``,
``benchmarks/results/compression/qat-convert-epyc/``): one conversion of the demo's grocery student takes 36.9 s
with torchao's exporter and 2.0 s with the graphs reused, of the Lite0 teacher 41.5 s and 7.7 s. The QAT fine-tune
converts once per validation step.

:func:`reused_pattern_graphs` swaps torchao's pattern exporter for a memoised one while it is active; every caller
gets its own deep copy, so nothing a matcher does to a graph reaches the next caller. A pattern whose identity cannot
be read (not a plain function, or closing over an unhashable value) is exported as before. If torchao moves the
function, the context does nothing and conversions are only slower.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Iterator
from typing import Any

_GRAPHS: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.RLock()
_MODULES = ("torchao.quantization.pt2e.utils", "torchao.quantization.pt2e.qat_utils",
            "executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils")
_NAME = "_get_aten_graph_module_for_pattern"


def _shape(v: Any) -> Any:
    import torch

    if isinstance(v, torch.Tensor):
        return ("tensor", tuple(v.shape), v.dtype, v.device.type)
    return v


def pattern_key(pattern: Any, example_inputs: tuple[Any, ...], is_cuda: bool, kwargs: dict[str, Any]
                ) -> tuple[Any, ...] | None:
    """What a pattern graph depends on: the traced function's code, the values it closes over and its defaults,
    and the example inputs' shapes and dtypes. ``None`` when that cannot be told (the graph is then not reused)."""
    fn = getattr(pattern, "fn", pattern)  # torchao wraps pattern functions in a WrapperModule
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    key = (code, tuple(c.cell_contents for c in (fn.__closure__ or ())), fn.__defaults__,
           tuple(_shape(v) for v in example_inputs), bool(is_cuda),
           tuple(sorted((k, _shape(v)) for k, v in kwargs.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _memoised(export: Callable[..., Any]) -> Callable[..., Any]:
    def graph_for(pattern: Any, example_inputs: tuple[Any, ...], is_cuda: bool = False, **kwargs: Any) -> Any:
        key = pattern_key(pattern, example_inputs, is_cuda, kwargs)
        if key is None:
            return export(pattern, example_inputs, is_cuda, **kwargs)
        with _LOCK:
            if key not in _GRAPHS:
                _GRAPHS[key] = export(pattern, example_inputs, is_cuda, **kwargs)
            return copy.deepcopy(_GRAPHS[key])

    graph_for.edgecart_memoised = True  # type: ignore[attr-defined]
    return graph_for


@contextlib.contextmanager
def reused_pattern_graphs() -> Iterator[None]:
    """While active, torchao's QAT conv-bn folding and train/eval switches, and the XNNPACK quantizer's QAT
    annotation, reuse pattern graphs already exported in this process. Re-entrant; restores the original functions
    on exit."""
    import importlib

    swapped: list[tuple[Any, Any]] = []
    with _LOCK:
        for name in _MODULES:
            try:
                mod = importlib.import_module(name)
            except ImportError:
                continue
            original = getattr(mod, _NAME, None)
            if original is None or getattr(original, "edgecart_memoised", False):
                continue
            setattr(mod, _NAME, _memoised(original))
            swapped.append((mod, original))
    try:
        yield
    finally:
        with _LOCK:
            for mod, original in swapped:
                setattr(mod, _NAME, original)
