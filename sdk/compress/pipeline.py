"""``export_compressed``: the float model in every format, then int8 per the recipe's quantize stage behind a quality
gate (with per-layer rescue), as one verified bundle whose manifest records the recipe actually applied."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from edgecart.exporters import (
    DEFAULT_FORMATS,
    EXPORTERS,
    BundleWriter,
    QATData,
    QualityGate,
    evaluate_artifact,
    export_artifact,
    export_int8_gated,
    golden_from_model,
    infer_io_spec,
)
from edgecart.exporters.export import DEFAULT_TOLERANCE, ParityTolerance
from edgecart.runtime.manifest import IOSpec, Manifest, Preprocessing

from .quantization import agreement_evaluator, gate_rescue
from .recipe import QuantizeStage, Recipe

Evaluate = Callable[[Any], dict[str, float]]


def export_compressed(model: Any, example_inputs: tuple[Any, ...], *, out: str | os.PathLike[str],
                      formats: Sequence[str] = DEFAULT_FORMATS, recipe: Recipe | None = None,
                      calibration: Sequence[tuple[Any, ...]] = (), validation: Sequence[tuple[Any, ...]] = (),
                      golden_inputs: Sequence[tuple[Any, ...]] = (), io_spec: IOSpec | None = None,
                      preprocessing: Preprocessing | None = None, name: str = "model", version: str = "0.1.0",
                      task: str = "generic", evaluate: Evaluate | None = None,
                      reference: dict[str, float] | None = None, record: dict[str, Any] | None = None,
                      tolerance: ParityTolerance = DEFAULT_TOLERANCE, overwrite: bool = False,
                      qat_data: QATData | None = None, progress: Callable[[str], None] | None = None) -> Manifest:
    """Write ``model`` (already pruned/distilled: see ``Recipe.apply``) to ``formats`` in fp32 and, when ``recipe``
    has a quantize stage, int8 behind its gate. The gate's metric comes from ``evaluate(session)`` with the float
    model's figures in ``reference``; by default it is the agreement (cosine, SQNR) of each artifact with the float
    model on ``validation`` inputs (falling back to the calibration inputs). ``record`` (e.g. from
    ``Recipe.apply``) joins the manifest's ``quality["compression"]``. ``qat_data``: training and validation inputs
    for the QAT fallback; without them QAT splits the calibration inputs (recorded in each QAT artifact's
    ``quantization.fine_tune``)."""
    say = progress or (lambda _m: None)
    if isinstance(formats, str) or not isinstance(formats, (list, tuple)):
        from edgecart.config import ConfigError

        raise ConfigError(f"formats must be a list of format names, e.g. formats=[\"onnx\"]; known: "
                          f"{EXPORTERS.names()}")
    if not formats:
        from edgecart.config import ConfigError

        raise ConfigError(f"no export formats given; name at least one of {EXPORTERS.names()}")
    for fmt in formats:
        EXPORTERS[fmt]
    model = model.eval()
    io = io_spec or getattr(model, "io_spec", None) or infer_io_spec(model, tuple(example_inputs))
    samples = list(golden_inputs) or [tuple(example_inputs)]
    golden = golden_from_model(model, samples, io)
    stage: QuantizeStage | None = recipe.quantize if recipe is not None else None
    compression: dict[str, Any] = dict(record or {})
    compression.setdefault("recipe", recipe.to_dict() if recipe else None)
    if stage is not None:
        calib = list(calibration)[: stage.calibration]
        if not calib:
            from edgecart.config import ConfigError

            raise ConfigError("the recipe quantizes: pass calibration inputs (calibration=[input tuples])")
        if evaluate is None:
            evaluate, reference = agreement_evaluator(model, list(validation) or calib)
        if reference is None or stage.gate_metric not in reference:
            from edgecart.config import ConfigError

            raise ConfigError(f"the gate metric {stage.gate_metric!r} is not among the reference metrics "
                              f"{sorted(reference or {})}; set quantize.gate_metric to one of them")
    with BundleWriter(out, name=name, version=version, task=task, inputs=io.inputs, outputs=io.outputs,
                      preprocessing=preprocessing, overwrite=overwrite) as w:
        w.set_golden(*golden)
        for fmt in formats:
            say(f"fp32 {fmt}")
            art = export_artifact(w, model, tuple(example_inputs), fmt, golden=golden, tolerance=tolerance)
            if evaluate is not None:
                w.update_artifact(art.name, quality=evaluate_artifact(w, art, evaluate))
        diagnoses: dict[str, Any] = {}
        if stage is not None:
            gate = QualityGate(stage.gate_metric, stage.max_drop)
            for fmt in formats:
                rescue = gate_rescue(model, tuple(example_inputs), calib, keep_float=stage.keep_float,
                                     qat=stage.qat, progress=say) if stage.rescue else None
                art = export_int8_gated(w, model, tuple(example_inputs), fmt, calibration=calib, golden=golden,
                                        evaluate=evaluate, reference=reference or {}, gate=gate,
                                        recipes=stage.recipes or None, rescue=rescue, tolerance=tolerance,
                                        qat_data=qat_data, progress=say)
                if rescue is not None and rescue.diagnosis:  # type: ignore[attr-defined]
                    diagnoses[fmt] = rescue.diagnosis  # type: ignore[attr-defined]
                say(f"int8 {fmt}: " + (art.quantization["gate"]["chosen"] if art and art.quantization
                                       else "rejected by the gate, fp32 only"))
        if diagnoses:
            compression["int8_diagnosis"] = {"method": "one layer quantized at a time (PT2E XNNPACK numerics), "
                                             "model-output SQNR in dB on the calibration inputs; worst first",
                                             "formats": diagnoses}
        compression["applied"] = {a.name: (a.quantization or {}).get("recipe", "fp32") for a in w.artifacts}
        w.quality["compression"] = compression
        w.commit()
        return w.manifest_on_disk()


__all__ = ["export_compressed"]
