"""``export``: write a model to several formats as one verified bundle, with golden data and parity per artifact."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from edgecart.runtime.backends import backend_for_format
from edgecart.runtime.errors import ParityError
from edgecart.runtime.golden import compare
from edgecart.runtime.manifest import Artifact, IOSpec, Manifest, Parity, Preprocessing
from edgecart.runtime.session import Session

from ._quiet import quiet_fds
from .base import EXPORTERS, ExportRequest
from .bundle import BundleWriter

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
                    precision: str = "fp32", recipe: str | None = None, calibration: Sequence[tuple[Any, ...]] = (),
                    name: str | None = None, golden: tuple[dict, dict] | None = None,
                    tolerance: ParityTolerance = DEFAULT_TOLERANCE, check: bool = True) -> Artifact:
    """Export one artifact into ``writer``, measure its parity, and refuse it (ParityError) when out of tolerance."""
    exporter = EXPORTERS[fmt]
    io = IOSpec(writer.meta["inputs"], writer.meta["outputs"])
    name = name or f"{writer.meta['name']}.{precision}.{fmt}"
    rel = f"models/{writer.meta['name']}.{precision}{exporter.suffix}"
    if recipe is not None:
        rel = f"models/{writer.meta['name']}.{precision}.{recipe}{exporter.suffix}"
    request = ExportRequest(model, tuple(example_inputs), tuple(s.name for s in io.inputs),
                            tuple(s.name for s in io.outputs), precision, recipe, tuple(calibration))
    with quiet_fds():
        files = exporter.write(request, writer.file_path(rel))
    writer.add_file(rel, "model")
    sides = []
    for side in files.side_files:
        srel = side.relative_to(writer.staging).as_posix()
        writer.add_file(srel, "weights")
        sides.append(srel)
    art = Artifact(name=name, format=fmt, path=rel, precision=precision, delegate=files.delegate,
                   quantization=files.quantization, side_files=tuple(sides))
    writer.add_artifact(art)
    if golden is None:
        return art
    parity = measure_parity(writer, art, golden[0], golden[1], tolerance)
    art = writer.update_artifact(name, parity=parity)
    if check and not parity.within_tolerance():
        writer.remove_artifact(name)
        raise ParityError(
            f"{name}: parity outside tolerance (max abs diff {parity.max_abs_diff:.3g} vs "
            f"{parity.max_abs_tolerance}, worst cosine {parity.cosine:.6f} vs {parity.min_cosine}); "
            "the exported model does not reproduce the eager one — check for unsupported ops or loosen tolerance"
        )
    return art


def export(model: Any, example_inputs: tuple[Any, ...], formats: Sequence[str] = DEFAULT_FORMATS, *,
           out: str | os.PathLike[str], io_spec: IOSpec | None = None, preprocessing: Preprocessing | None = None,
           name: str = "model", version: str = "0.1.0", task: str = "generic",
           golden_inputs: Sequence[tuple[Any, ...]] | None = None, tolerance: ParityTolerance = DEFAULT_TOLERANCE,
           overwrite: bool = False, archive: bool = False,
           progress: Callable[[str], None] | None = None) -> Manifest:
    """Export ``model`` (fp32) to every format in ``formats`` as one bundle at ``out``.

    Each artifact is loaded back through the runtime and compared with the eager model on the golden inputs
    (``golden_inputs``, default: the example inputs); one outside ``tolerance`` aborts the export (ParityError)
    and leaves nothing at ``out``. ``io_spec`` defaults to ``model.io_spec``.
    """
    io = io_spec or getattr(model, "io_spec", None)
    if io is None:
        raise ValueError("pass io_spec=IOSpec(inputs, outputs) or give the model an io_spec attribute")
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
           "measure_parity"]
