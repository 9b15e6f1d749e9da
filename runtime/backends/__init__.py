"""Inference engines, one module each, registered by name.

A backend module imports its engine only inside ``open`` (and, for a backend with ``requires``, when asked whether
it is available); when the engine is missing it raises :class:`~edgecart.runtime.errors.BackendUnavailableError`
naming the extra to install.

Engines get the model's bytes, never its path: the session reads each file once, checks those bytes against the
manifest's size and sha256 and hands the same bytes over, so a file swapped after verification cannot be loaded.
Every engine failure surfaces as an :class:`~edgecart.runtime.errors.EngineError` naming the artifact
(:meth:`Backend.open` wraps load failures; the session wraps run failures).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np

from ..errors import BackendUnavailableError, EdgecartError, ModelLoadError
from ..manifest import Artifact, TensorSpec
from ..registry import Registry


class Engine(Protocol):
    """An opened artifact. ``run`` takes arrays in the manifest's input order, already of ``input_dtypes``,
    and returns float (dequantised) or integer arrays in the manifest's output order."""

    input_dtypes: list[np.dtype]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class OpenRequest:
    """Everything a backend needs to open one artifact. ``model_bytes`` are the verified contents of ``model_path``
    and ``side_files`` the verified ``(path relative to the model's folder, bytes)`` of its side files; engines load
    from these, never from the path (which only names the artifact in messages)."""

    model_path: Path
    artifact: Artifact
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    threads: int | None = None
    options: tuple[tuple[str, str], ...] = ()
    model_bytes: bytes = b""
    side_files: tuple[tuple[str, bytes], ...] = ()

    def data(self) -> bytes:
        """The model's bytes (read from ``model_path`` only when a caller built the request without them)."""
        return self.model_bytes or self.model_path.read_bytes()


@dataclass(frozen=True)
class Backend:
    """A registered backend: the format it runs, the module it needs, and its opener.

    ``requires``: the modules opening an artifact imports, when finding ``module`` is not enough to know it can (an
    engine whose bindings import another package, as ExecuTorch's import torch); :meth:`available` then imports them.
    """

    name: str
    format: str
    module: str
    extra: str
    opener: Callable[[OpenRequest], Engine]
    requires: tuple[str, ...] = ()

    def available(self) -> bool:
        return self.missing() is None

    def missing(self) -> BaseException | None:
        """Why the engine cannot be opened here (the import error), or None when it can. Without ``requires`` only
        whether ``module`` can be found is asked (nothing is imported); with it, each of those modules is imported."""
        if self.requires:
            for mod in self.requires:
                try:
                    importlib.import_module(mod)
                except Exception as exc:  # ImportError, or whatever a broken install raises (OSError, ...)
                    return exc
            return None
        try:
            if importlib.util.find_spec(self.module) is None:
                return ModuleNotFoundError(f"No module named {self.module!r}")
        except (ImportError, ValueError) as exc:
            return exc
        return None

    def unavailable_error(self, cause: BaseException | None = None) -> BackendUnavailableError:
        if cause is None and self.requires:
            cause = self.missing()
        why = f" ({_first_line(cause)})" if cause else ""
        need = (f"the Python module {self.module!r}" if not self.requires else
                "the Python modules " + ", ".join(repr(m) for m in self.requires))
        return BackendUnavailableError(
            f"backend {self.name!r} needs {need}, which cannot be imported here{why}; "
            f"install it with: pip install 'edgecart[{self.extra}]'"
        )

    def open(self, request: OpenRequest) -> Engine:
        """Open ``request``'s artifact; any failure of the engine becomes a :class:`ModelLoadError`."""
        try:
            return self.opener(request)
        except EdgecartError:
            raise
        except Exception as exc:  # engines raise RuntimeError, ValueError, MemoryError (a bad_alloc) ...: one type
            raise ModelLoadError(
                f"{request.artifact.path}: {self.name} could not load artifact {request.artifact.name!r} "
                f"({type(exc).__name__}: {_first_line(exc)}); the file is corrupt, was replaced, or needs a newer "
                f"engine — re-export the bundle or upgrade {self.module}") from exc


BACKENDS: Registry[Backend] = Registry("backend")
#: Default order when ``backend="auto"`` and the bundle records no measured preference for this platform: the two
#: engines that need only numpy first, LiteRT before ONNX Runtime because it was the fastest engine on every image
#: student measured so far, fp32 and int8 (benchmarks/results/README.md; results/image_search/*/summary.md). Whether
#: int8 pays on ONNX Runtime depends on the model (0.57-1.22x on the small students of
#: benchmarks/results/compression/ort_int8.md, 1.6x on the grocery student): measure a bundle with ``edgecart prefer``.
AUTO_ORDER = ("litert", "onnxruntime", "executorch")



def register(backend: Backend) -> Backend:
    return BACKENDS.register(backend.name, backend)


def backend_for_format(fmt: str) -> Backend:
    for name in BACKENDS:
        if BACKENDS[name].format == fmt:
            return BACKENDS[name]
    known = ", ".join(sorted({BACKENDS[n].format for n in BACKENDS}))
    from ..errors import UnknownNameError

    raise UnknownNameError(f"no backend runs format {fmt!r}; formats with a backend: {known}")


def _first_line(exc: BaseException, limit: int = 500) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


E = TypeVar("E")


class PerThread(Generic[E]):
    """One engine object per thread, made on first use in that thread, for engines that are not thread-safe."""

    def __init__(self, factory: Callable[[], E]) -> None:
        self._factory = factory
        self._local = threading.local()
        self.first = factory()  # made eagerly in the opening thread so load errors surface at load time
        self._local.obj = self.first

    def get(self) -> E:
        obj = getattr(self._local, "obj", None)
        if obj is None:
            obj = self._local.obj = self._factory()
        return obj


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    with np.errstate(over="ignore"):  # values beyond the range saturate, as the engines' own quantizers do
        q = np.round(x.astype(np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


from . import executorch as _executorch  # noqa: E402,F401  (registers itself; imports no engine)
from . import litert as _litert  # noqa: E402,F401
from . import onnxruntime as _onnxruntime  # noqa: E402,F401
