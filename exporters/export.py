"""``export``: write a model to several formats as one verified bundle, with golden data and parity per artifact."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgecart.runtime.backends import backend_for_format
from edgecart.runtime.errors import BundleError, EdgecartError, EngineError, InputSpecError, ParityError
from edgecart.runtime.golden import compare
from edgecart.runtime.manifest import DTYPES, Artifact, IOSpec, Manifest, Parity, Preprocessing, TensorSpec
from edgecart.runtime.session import Session

from ._quiet import quiet_fds
from .base import (
    EXPORTERS,
    ExportRequest,
    QATData,
    ToolchainError,
    UnsupportedRecipeError,
    is_toolchain_error,
    supported_recipes,
)
from .bundle import BundleWriter
from .recipes import QuantRecipe, resolve_recipe

ExportInputError = InputSpecError  # what export raises for example inputs/outputs it cannot describe

DEFAULT_FORMATS = ("executorch", "onnx", "tflite")


@dataclass(frozen=True)
class ParityTolerance:
    """How far an artifact may stray from the eager float model on the golden inputs.

    ``max_abs`` is absolute; ``min_cosine`` is the worst per-sample cosine similarity of the flattened outputs.
    """

    fp32_max_abs: float = 1e-3
    fp32_min_cosine: float = 0.9999
    int8_max_abs: float | None = 0.5  # a bound on gross errors; the cosine is the finer gate (trust-b, issue 11)
    int8_min_cosine: float = 0.98

    def __post_init__(self) -> None:
        for v in (self.fp32_max_abs, self.int8_max_abs):
            if v is not None and v <= 0:
                raise ValueError("max_abs tolerances must be positive")
        for v in (self.fp32_min_cosine, self.int8_min_cosine):
            if not -1.0 <= v <= 1.0:
                raise ValueError("cosine tolerances lie in [-1, 1]")

    def for_precision(self, precision: str) -> tuple[float | None, float | None]:
        if precision == "int8":
            return self.int8_max_abs, self.int8_min_cosine
        return self.fp32_max_abs, self.fp32_min_cosine


DEFAULT_TOLERANCE = ParityTolerance()


def golden_from_model(model: Any, samples: Sequence[tuple[Any, ...]], io: IOSpec) -> tuple[dict, dict]:
    """Run the eager model on each sample; return stacked numpy inputs and outputs keyed by tensor name."""
    import torch

    ins: dict[str, list[np.ndarray]] = {s.name: [] for s in io.inputs}
    outs: dict[str, list[np.ndarray]] = {s.name: [] for s in io.outputs}
    with torch.no_grad():
        for sample in samples:
            y = model.eval()(*sample)
            ys = (y,) if isinstance(y, torch.Tensor) else tuple(y)
            for spec, t in zip(io.inputs, sample, strict=True):
                ins[spec.name].append(t.detach().cpu().numpy())
            for spec, t in zip(io.outputs, ys, strict=True):
                outs[spec.name].append(t.detach().cpu().numpy())
    return ({k: np.stack(v) for k, v in ins.items()}, {k: np.stack(v) for k, v in outs.items()})


def measure_parity(writer: BundleWriter, artifact: Artifact, golden_in: dict[str, np.ndarray],
                   golden_out: dict[str, np.ndarray], tolerance: ParityTolerance) -> Parity:
    """Run ``artifact`` from the staged bundle through the runtime on the golden inputs."""
    session = Session(writer.stage(), artifact, backend_for_format(artifact.format), threads=None)
    agree = compare(session.run, golden_in, golden_out, [s.name for s in writer.meta["outputs"]])
    tol_abs, tol_cos = tolerance.for_precision(artifact.precision)
    return Parity(max_abs_diff=agree.max_abs_diff, cosine=agree.cosine, max_abs_tolerance=tol_abs, min_cosine=tol_cos,
                  samples=agree.samples)


def export_artifact(writer: BundleWriter, model: Any, example_inputs: tuple[Any, ...], fmt: str, *,
                    precision: str = "fp32", recipe: QuantRecipe | str | None = None,
                    calibration: Sequence[tuple[Any, ...]] = (), name: str | None = None,
                    golden: tuple[dict, dict] | None = None, tolerance: ParityTolerance = DEFAULT_TOLERANCE,
                    check: bool = True, qat_data: QATData | None = None) -> Artifact:
    """Export one artifact into ``writer``, measure its parity, and refuse it (ParityError) when out of tolerance.

    ``recipe`` (int8 only): a typed recipe or a registered name (a misspelling raises UnknownNameError listing the
    known ones); the format must support it (UnsupportedRecipeError otherwise); default: the format's first int8
    recipe. ``qat_data``: training/validation inputs for a QAT recipe (default: its calibration inputs split). A
    conversion failure inside the toolchain raises ToolchainError; any failure leaves no file of this artifact in the
    staging folder.
    """
    exporter = EXPORTERS[fmt]
    io = IOSpec(writer.meta["inputs"], writer.meta["outputs"])
    typed = resolve_recipe(recipe) if recipe is not None else None
    if precision == "int8":
        if not exporter.int8_recipes and typed is None:
            raise UnsupportedRecipeError(f"format {fmt!r} has no int8 path")
        typed = typed or exporter.int8_recipes[0]
        if not exporter.supports(typed):
            why = getattr(exporter, "why_not", lambda _r: None)(typed)
            raise UnsupportedRecipeError(
                f"format {fmt!r} cannot apply recipe {typed.name}" + (f" ({why})" if why else "")
                + f"; it supports: {', '.join(supported_recipes(fmt))}")
    name = name or f"{writer.meta['name']}.{precision}.{fmt}"
    rel = f"models/{writer.meta['name']}.{precision}{exporter.suffix}"
    if recipe is not None and typed is not None:
        rel = f"models/{writer.meta['name']}.{precision}.{typed.name}{exporter.suffix}"
    request = ExportRequest(model, _plain(example_inputs), tuple(s.name for s in io.inputs),
                            tuple(s.name for s in io.outputs), precision, typed,
                            tuple(_plain(b) for b in calibration), qat_data=qat_data)
    before = _staged(writer)
    try:
        try:
            with quiet_fds():
                files = exporter.write(request, writer.file_path(rel))
        except Exception as exc:
            if is_toolchain_error(exc):
                what = f"{fmt} {precision}" + (f" [{typed.name}]" if typed is not None else "")
                raise ToolchainError(f"{what}: the toolchain could not convert this model: "
                                     f"{type(exc).__name__}: {str(exc)[:800]}") from exc
            raise
        writer.add_file(rel, "model")
        sides = []
        for side in files.side_files:
            srel = side.relative_to(writer.staging).as_posix()
            writer.add_file(srel, "weights")
            sides.append(srel)
        art = Artifact(name=name, format=fmt, path=rel, precision=precision, delegate=files.delegate,
                       quantization=files.quantization, side_files=tuple(sides))
        writer.add_artifact(art)
    except BaseException:
        _remove_new(writer, before)
        raise
    if golden is None:
        return art
    try:
        parity = measure_parity(writer, art, golden[0], golden[1], tolerance)
    except BaseException as exc:
        writer.remove_artifact(name)
        if _engine_refused(exc):  # the toolchain wrote a file its own engine cannot run (e.g. a bad QDQ axis)
            raise ToolchainError(f"{name}: the exported file does not run on its engine: "
                                 f"{type(exc).__name__}: {str(exc)[:800]}") from exc
        raise
    art = writer.update_artifact(name, parity=parity)
    if check and not parity.within_tolerance():
        writer.remove_artifact(name)
        raise ParityError(
            f"{name}: parity outside tolerance (max abs diff {parity.max_abs_diff:.3g} vs "
            f"{parity.max_abs_tolerance}, worst cosine {parity.cosine:.6f} vs {parity.min_cosine}); "
            "the exported model does not reproduce the eager one — check for unsupported ops or loosen tolerance"
        )
    return art


def _engine_refused(exc: BaseException) -> bool:
    """An engine failure while running a fresh artifact: raised by the engine itself, or the runtime's typed wrapper
    of one (an EdgecartError that is not about the bundle or the inputs)."""
    if is_toolchain_error(exc) or isinstance(exc, EngineError):
        return True
    return isinstance(exc, EdgecartError) and not isinstance(exc, (BundleError, InputSpecError))


def _plain(tensors: Sequence[Any]) -> tuple[Any, ...]:
    """Row-major copies with freshly computed strides: a numpy view given a new axis carries a 0 stride (which
    ExecuTorch refuses) and a channels-last tensor would be read as NHWC by some converters."""
    out = []
    for t in tensors:
        if hasattr(t, "new_empty") and hasattr(t, "copy_"):
            out.append(t.new_empty(tuple(t.shape)).copy_(t))
        else:
            out.append(t)
    return tuple(out)


def _staged(writer: BundleWriter) -> set[Path]:
    return set(writer.staging.rglob("*"))


def _remove_new(writer: BundleWriter, before: set[Path]) -> None:
    """Delete what appeared in the staging folder since ``before`` (files first, then emptied folders)."""
    new = sorted(set(writer.staging.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True)
    for p in new:
        if p.is_file() or p.is_symlink():
            p.unlink(missing_ok=True)
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def infer_io_spec(model: Any, example_inputs: tuple[Any, ...], input_names: Sequence[str] | None = None,
                  output_names: Sequence[str] | None = None) -> IOSpec:
    """The I/O spec of ``model`` from one eager run on ``example_inputs``: names ``input_0…``/``output_0…`` unless
    given, dtypes and static shapes from the tensors. Used when the model declares no ``io_spec``."""
    import torch

    with torch.no_grad():
        y = model(*example_inputs)
    outs = (y,) if isinstance(y, torch.Tensor) else tuple(y) if isinstance(y, (tuple, list)) else None
    if outs is None:
        raise ExportInputError(f"the model returns {type(y).__name__}; export needs a tensor or a tuple of tensors")
    bad = [(i, t) for i, t in enumerate(outs) if not isinstance(t, torch.Tensor)]
    if bad:
        i, t = bad[0]
        raise ExportInputError(f"the model returns a {type(y).__name__} whose output {i} is "
                               f"{_article(type(t).__name__)} {type(t).__name__}, not a tensor; export needs a "
                               "tensor or a tuple of tensors (return only the tensors)")
    ins = tuple(example_inputs)
    if not all(isinstance(t, torch.Tensor) for t in ins):
        raise ExportInputError("example inputs must be a tuple of tensors")
    in_names = list(input_names or [f"input_{i}" for i in range(len(ins))])
    out_names = list(output_names or [f"output_{i}" for i in range(len(outs))])
    if len(in_names) != len(ins) or len(out_names) != len(outs):
        raise ExportInputError(f"{len(in_names)} input / {len(out_names)} output names for a model with {len(ins)} "
                               f"inputs and {len(outs)} outputs")
    return IOSpec(tuple(_spec(n, t) for n, t in zip(in_names, ins)),
                  tuple(_spec(n, t) for n, t in zip(out_names, outs)))


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _spec(name: str, t: Any) -> TensorSpec:
    dtype = str(t.dtype).replace("torch.", "")
    if dtype not in DTYPES:
        raise ExportInputError(f"tensor {name!r} has dtype {dtype}; bundles carry {', '.join(DTYPES)}")
    return TensorSpec(name, dtype, tuple(int(d) for d in t.shape))


def export(model: Any, example_inputs: tuple[Any, ...], formats: Sequence[str] = DEFAULT_FORMATS, *,
           out: str | os.PathLike[str], io_spec: IOSpec | None = None, preprocessing: Preprocessing | None = None,
           name: str = "model", version: str = "0.1.0", task: str = "generic",
           golden_inputs: Sequence[tuple[Any, ...]] | None = None, tolerance: ParityTolerance = DEFAULT_TOLERANCE,
           overwrite: bool = False, archive: bool = False,
           progress: Callable[[str], None] | None = None) -> Manifest:
    """Export ``model`` (fp32) to every format in ``formats`` as one bundle at ``out``.

    Each artifact is loaded back through the runtime and compared with the eager model on the golden inputs
    (``golden_inputs``, default: the example inputs); one outside ``tolerance`` aborts the export (ParityError)
    and leaves nothing at ``out``. ``io_spec`` defaults to ``model.io_spec``, else it is inferred from a run on the
    example inputs (names ``input_0…``/``output_0…``).
    """
    io = io_spec or getattr(model, "io_spec", None)
    if io is None:
        io = infer_io_spec(model.eval(), tuple(example_inputs))
    for fmt in formats:
        EXPORTERS[fmt]  # unknown names fail before any work, listing the known ones
    samples = list(golden_inputs) if golden_inputs else [tuple(example_inputs)]
    golden = golden_from_model(model, samples, io)
    with BundleWriter(out, name=name, version=version, task=task, inputs=io.inputs, outputs=io.outputs,
                      preprocessing=preprocessing, overwrite=overwrite) as writer:
        writer.set_golden(*golden)
        for fmt in formats:
            if progress:
                progress(f"exporting {fmt}")
            export_artifact(writer, model, example_inputs, fmt, golden=golden, tolerance=tolerance)
        writer.commit(archive=archive)
        return writer.manifest_on_disk()


__all__ = ["DEFAULT_FORMATS", "IOSpec", "ParityTolerance", "export", "export_artifact", "golden_from_model",
           "infer_io_spec", "measure_parity"]
