"""``load`` a bundle and ``run`` one of its artifacts with inputs checked against the manifest's I/O spec.

Opening reads the artifact's file (and side files) once, checks those bytes against the manifest's size and sha256,
and hands the same bytes to the engine. Running checks the inputs (names, shape, dtype, NaN/Inf) before the engine
and the outputs (count, size, NaN/Inf) after it; every engine failure is an
:class:`~edgecart.runtime.errors.EngineError` that names the artifact.
"""

from __future__ import annotations

import math
import os
import posixpath
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .backends import BACKENDS, Backend, OpenRequest
from .bundle import Bundle, open_bundle
from .errors import (
    ArtifactNotFoundError,
    BackendUnavailableError,
    EdgecartError,
    InferenceError,
    InputSpecError,
    NonFiniteOutputError,
)
from .manifest import Artifact, Manifest, TensorSpec
from .preference import preferred_order

Inputs = np.ndarray | Mapping[str, np.ndarray] | Sequence[np.ndarray]
#: Without an explicit ``precision`` the first match in this order is opened: int8 artifacts in a bundle have
#: passed the exporter's quality gate and are what a device should run.
PRECISION_ORDER = ("int8", "fp16", "fp32")
#: ``load`` refuses more than this many threads per core (``os.cpu_count()``): beyond the cores they only contend.
THREADS_PER_CORE = 4


class Session:
    """One artifact of a verified bundle, opened on one backend. ``run`` is safe to call from several threads."""

    def __init__(self, bundle: Bundle, artifact: Artifact, backend: Backend, threads: int | None,
                 check_finite: bool = True, options: Mapping[str, str] | None = None) -> None:
        self.bundle = bundle
        self.artifact = artifact
        self.backend = backend
        self.threads = threads
        self.check_finite = check_finite
        m = bundle.manifest
        model_dir = posixpath.dirname(artifact.path)
        sides = tuple((posixpath.relpath(rel, model_dir or "."), read_verified(bundle, rel))
                      for rel in artifact.side_files)
        request = OpenRequest(bundle.path(artifact.path), artifact, m.inputs, m.outputs, threads,
                              tuple(sorted((options or {}).items())), read_verified(bundle, artifact.path), sides)
        self.engine = backend.open(request)
        self._in_plans = [(spec, np.dtype(spec.dtype), np.dtype(dt))
                          for spec, dt in zip(m.inputs, self.engine.input_dtypes, strict=True)]
        self._out_plans = [(spec, np.dtype(spec.dtype), int(np.prod(spec.shape))) for spec in m.outputs]
        # one input: (name, shape, engine dtype, is it float) for run()'s fast path
        self._fast = None
        if len(self._in_plans) == 1:
            spec, want, engine_dtype = self._in_plans[0]
            self._fast = (spec.name, spec.shape, engine_dtype, want.kind == "f")

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.manifest.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.manifest.outputs

    def prepare(self, inputs: Inputs) -> list[np.ndarray]:
        """Check ``inputs`` against the spec and convert them to what the engine takes."""
        arrays = _as_list(inputs, self.inputs)
        feeds = []
        for x, plan in zip(arrays, self._in_plans, strict=True):
            spec, want, engine_dtype = plan
            if x.dtype == engine_dtype and x.shape == spec.shape and x.flags.c_contiguous:
                if self.check_finite and want.kind == "f" and not _all_finite(x):
                    raise _not_finite(spec.name)
                feeds.append(x)  # nothing to convert
            else:
                feeds.append(_check_one(x, spec, engine_dtype, self.check_finite))
        return feeds

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Run the model. Returns ``{output name: array}``; quantised outputs come back as float32."""
        fast, feeds = self._fast, None
        if fast is not None:  # one input already in the engine's dtype and shape: check it and hand it over
            x = inputs.get(fast[0]) if type(inputs) is dict and len(inputs) == 1 else inputs
            if type(x) is np.ndarray and x.dtype == fast[2] and x.shape == fast[1] and x.flags.c_contiguous:
                if fast[3] and self.check_finite and not _all_finite(x):
                    raise _not_finite(fast[0])
                feeds = [x]
        if feeds is None:
            feeds = self.prepare(inputs)
        try:
            outs = self.engine.run(feeds)
        except EdgecartError:
            raise
        except Exception as exc:  # the engine's own error types: one typed error naming the artifact
            text = str(exc).strip().replace("\n", " ")[:500]
            raise InferenceError(f"{self.artifact.path}: {self.backend.name} failed running artifact "
                                 f"{self.artifact.name!r} ({type(exc).__name__}: {text})") from exc
        return self._check_outputs(outs)

    def _check_outputs(self, outs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs in the manifest's shapes and dtypes; a wrong count or size, or NaN/Inf, is an InferenceError."""
        if len(outs) != len(self._out_plans):
            raise InferenceError(f"{self.artifact.path}: the engine returned {len(outs)} outputs, the manifest "
                                 f"declares {len(self._out_plans)}; re-export the bundle")
        result = {}
        for (spec, want, size), y in zip(self._out_plans, outs, strict=True):
            y = np.asarray(y)
            if y.size != size:
                raise InferenceError(f"{self.artifact.path}: output {spec.name!r} has shape {y.shape} "
                                     f"({y.size} values), the manifest declares {spec.shape}; re-export the bundle")
            if y.dtype != want and want.kind == "f":
                y = y.astype(want)
            if self.check_finite and y.dtype.kind == "f" and not _all_finite(y):
                raise NonFiniteOutputError(
                    f"{self.artifact.path}: output {spec.name!r} holds NaN or Inf (the inputs were finite: they are "
                    "outside what the model handles, e.g. far larger than its training data); check the inputs, or "
                    "load with check_finite=False to get them anyway")
            result[spec.name] = y.reshape(spec.shape) if y.shape != spec.shape else y
        return result

    def __repr__(self) -> str:
        return (f"Session(bundle={self.manifest.name!r}, artifact={self.artifact.name!r}, "
                f"backend={self.backend.name!r}, threads={self.threads})")


def load(path: str | os.PathLike[str] | Bundle, backend: str = "auto", *, artifact: str | None = None,
         precision: str | None = None, threads: int | None = None, check_finite: bool = True,
         strict: bool = True, options: Mapping[str, str] | None = None, public_key: object = None,
         self_test: bool = False) -> Session:
    """Verify a bundle and open one of its artifacts.

    ``backend``: ``"auto"`` or a registered backend name (``onnxruntime``, ``litert``, ``executorch``).
    ``artifact`` picks an artifact by name; otherwise ``precision`` (or int8, then fp32) and the backend decide.
    ``public_key``: refuse a bundle not signed by this Ed25519 key (PEM path, PEM bytes or PEM text); see
    edgecart.runtime.signing.
    ``threads``: the engine's thread count, an integer from 1 to :func:`max_threads` (4 per core); None (the
    default) leaves it to the engine. Anything else is an :class:`InputSpecError`, raised before the bundle is read.
    ``check_finite``: refuse NaN/Inf inputs (InputSpecError) and outputs (NonFiniteOutputError).
    ``self_test``: run the bundle's golden inputs once and refuse (ParityError) an artifact that does not reproduce
    the golden outputs within its recorded parity tolerance — what catches a model file changed together with its
    hash in the manifest when no signature key is at hand (it costs one inference per golden sample).
    """
    threads = check_threads(threads)  # before anything is opened: a bad count fails fast, whatever the bundle
    bundle = path if isinstance(path, Bundle) else open_bundle(Path(path), strict=strict, public_key=public_key)
    if isinstance(path, Bundle) and public_key is not None:
        from .signing import verify_manifest_signature

        verify_manifest_signature(bundle.manifest, public_key)
    art, be = select(bundle.manifest, backend, artifact, precision)
    session = Session(bundle, art, be, threads, check_finite=check_finite, options=options)
    if self_test:
        from .golden import check_golden

        check_golden(session, require=True)
    return session


def max_threads() -> int:
    """The largest ``threads`` :func:`load` accepts: :data:`THREADS_PER_CORE` per core of this machine
    (``os.cpu_count()``; one core when it is unknown)."""
    return THREADS_PER_CORE * (os.cpu_count() or 1)


def check_threads(threads: object) -> int | None:
    """``threads`` as an ``int`` (or None), refused with :class:`InputSpecError` unless it is an integer from 1 to
    :func:`max_threads`. More threads than cores only add contention, and the engines do not cope with absurd counts
    (ONNX Runtime hung with 1,000 threads and ran out of memory with 100,000), so the count is checked here, before
    any engine sees it."""
    if threads is None:
        return None
    cores, top = os.cpu_count(), max_threads()
    machine = f"this machine has {cores} cores" if cores else "this machine's core count is unknown: 1 assumed"
    want = (f"threads must be an integer from 1 to {top} ({THREADS_PER_CORE} per core; {machine}), or None (omit "
            "it) for the engine's default")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise InputSpecError(f"{want}; got {threads!r} ({type(threads).__name__})")
    n = int(threads)
    if not 1 <= n <= top:
        raise InputSpecError(f"{want}; got {n}")
    return n


def select(manifest: Manifest, backend: str = "auto", artifact: str | None = None,
           precision: str | None = None) -> tuple[Artifact, Backend]:
    """Choose the artifact and backend ``load`` would open."""
    arts = list(manifest.artifacts)
    if artifact is not None:
        arts = [manifest.artifact(artifact)]
    if precision is not None:
        arts = [a for a in arts if a.precision == precision]
    else:
        arts.sort(key=lambda a: PRECISION_ORDER.index(a.precision))
    if backend == "auto":
        order = [BACKENDS[n] for n in preferred_order(manifest) if n in BACKENDS]  # per-platform, else default
        formats = {a.format for a in arts}
        candidates = [b for b in order if b.format in formats]
        if not candidates:
            raise _not_found(manifest, artifact, precision, None)
        for b in candidates:  # asked in order, and only as far as the first usable one (ExecuTorch's check imports
            if b.available():  # torch: never done to open an engine that comes first)
                return next(a for a in arts if a.format == b.format), b
        raise candidates[0].unavailable_error()
    be = BACKENDS[backend]
    for a in arts:
        if a.format == be.format:
            if not be.available():
                raise be.unavailable_error()
            return a, be
    raise _not_found(manifest, artifact, precision, be)


def _not_found(m: Manifest, artifact: str | None, precision: str | None, be: Backend | None) -> ArtifactNotFoundError:
    want = []
    if artifact:
        want.append(f"name {artifact!r}")
    if precision:
        want.append(f"precision {precision!r}")
    if be:
        want.append(f"format {be.format!r} (backend {be.name!r})")
    have = ", ".join(f"{a.name} [{a.format}, {a.precision}]" for a in m.artifacts) or "(none)"
    return ArtifactNotFoundError(f"bundle {m.name!r} has no artifact with {' and '.join(want) or 'a runnable format'}; "
                                 f"it has: {have}")


# _all_finite's quick sum of squares overflows (to Inf, and then the exact check decides) for elements beyond
# ~1e19; numpy's warning about it is noise. Only warnings raised from this module with that message are hidden.
warnings.filterwarnings("ignore", message="overflow encountered in dot", category=RuntimeWarning,
                        module=__name__.replace(".", r"\."))


def _all_finite(x: np.ndarray) -> bool:
    """No NaN or Inf in ``x``. The sum of squares (one BLAS dot) is NaN or Inf whenever an element is; only when it
    is (or overflows, for elements beyond ~1e19) is every element looked at."""
    v = x.ravel()
    return math.isfinite(v.dot(v)) or bool(np.isfinite(x).all())


def _not_finite(name: str) -> InputSpecError:
    return InputSpecError(f"input {name!r} holds NaN or Inf; clean the input (or load with check_finite=False)")


def _as_list(inputs: Inputs, specs: tuple[TensorSpec, ...]) -> list[np.ndarray]:
    names = [s.name for s in specs]
    if isinstance(inputs, np.ndarray):
        if len(specs) != 1:
            raise InputSpecError(f"the model takes {len(specs)} inputs {names}; pass a dict name -> array")
        return [inputs]
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        extra = sorted(set(inputs) - set(names))
        if missing or extra:
            raise InputSpecError(f"inputs must be exactly {names}; missing {missing}, unexpected {extra}")
        return [np.asarray(inputs[n]) for n in names]
    if isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
        if len(inputs) != len(specs):
            raise InputSpecError(f"expected {len(specs)} inputs {names}, got {len(inputs)}")
        return [np.asarray(x) for x in inputs]
    raise InputSpecError(f"inputs must be an array, a dict name -> array, or a list of arrays; got "
                         f"{type(inputs).__name__}")


def _check_one(x: np.ndarray, spec: TensorSpec, engine_dtype: np.dtype, check_finite: bool) -> np.ndarray:
    want = np.dtype(spec.dtype)
    if tuple(x.shape) != spec.shape:
        raise InputSpecError(f"input {spec.name!r}: shape {tuple(x.shape)}, the model takes {spec.shape}"
                             + (f" ({spec.layout})" if spec.layout else ""))
    if np.issubdtype(want, np.floating):
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise InputSpecError(f"input {spec.name!r}: dtype {x.dtype}, expected {want} (numbers)")
        x = x.astype(want, copy=False)
        if check_finite and not _all_finite(x):
            raise _not_finite(spec.name)
    elif np.issubdtype(want, np.integer):
        if not np.issubdtype(x.dtype, np.integer):
            raise InputSpecError(f"input {spec.name!r}: dtype {x.dtype}, expected integers ({want})")
        info = np.iinfo(engine_dtype if np.issubdtype(engine_dtype, np.integer) else want)
        if x.size and (x.min() < info.min or x.max() > info.max):
            raise InputSpecError(f"input {spec.name!r}: values outside the {info.dtype} range")
    elif x.dtype != want:
        raise InputSpecError(f"input {spec.name!r}: dtype {x.dtype}, expected {want}")
    return np.ascontiguousarray(x, dtype=engine_dtype)


def read_verified(bundle: Bundle, rel: str) -> bytes:
    """Read a listed file once and check those bytes against the manifest's size and sha256 (a file replaced after
    the bundle was verified is caught here, and the engine gets exactly the bytes that were checked). Delegates to
    :meth:`Bundle.read_verified`, which opens every folder on the way without following links and never blocks on
    a fifo."""
    return bundle.read_verified(rel)


def available_backends() -> list[str]:
    """Names of the registered backends whose engine is importable here."""
    return [n for n in BACKENDS if BACKENDS[n].available()]


__all__ = ["Session", "load", "select", "available_backends", "check_threads", "max_threads",
           "BackendUnavailableError"]
