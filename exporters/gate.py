"""int8 with a quality gate: try a format's int8 recipes in order, keep the first that loses at most
``max_drop`` of a quality metric against the float model, and record every attempt in the manifest.

:func:`export_formats_gated` is the loop every task's bundle writer runs over its formats: fp32, scored through the
runtime and recorded; then int8 behind the gate, recorded when kept."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgecart.runtime.backends import backend_for_format
from edgecart.runtime.errors import ParityError
from edgecart.runtime.manifest import Artifact
from edgecart.runtime.session import Session

from .base import EXPORTERS, QATData, ToolchainError
from .bundle import BundleWriter
from .export import DEFAULT_TOLERANCE, ParityTolerance, export_artifact
from .recipes import QAT, QuantRecipe, recipe_to_dict, resolve_recipe

Evaluate = Callable[[Session], dict[str, float]]


@dataclass(frozen=True)
class QualityGate:
    """Keep an int8 artifact only if ``metric`` drops by at most ``max_drop`` (absolute; 0.01 = 1 point)."""

    metric: str
    max_drop: float = 0.01

    def __post_init__(self) -> None:
        if not self.metric:
            raise ValueError("QualityGate.metric must name a metric, e.g. 'recall@10'")
        if self.max_drop < 0:
            raise ValueError("QualityGate.max_drop must be >= 0")


def evaluate_artifact(writer: BundleWriter, artifact: Artifact, evaluate: Evaluate) -> dict[str, float]:
    """Open ``artifact`` from the staged bundle on its format's backend and run ``evaluate`` on the session."""
    session = Session(writer.stage(), artifact, backend_for_format(artifact.format), threads=None)
    return {k: float(v) for k, v in evaluate(session).items()}


Rescue = Callable[[list[dict[str, Any]]], Sequence[Any]]


def export_int8_gated(writer: BundleWriter, model: Any, example_inputs: tuple[Any, ...], fmt: str, *,
                      calibration: Sequence[tuple[Any, ...]], golden: tuple[dict, dict], evaluate: Evaluate,
                      reference: dict[str, float], gate: QualityGate,
                      recipes: Sequence[QuantRecipe | str] | None = None, rescue: Rescue | None = None,
                      tolerance: ParityTolerance = DEFAULT_TOLERANCE, qat_data: QATData | None = None,
                      progress: Callable[[str], None] | None = None) -> Artifact | None:
    """Export ``model`` to int8 ``fmt`` with the first recipe that passes ``gate``; None when none does.

    ``recipes``: typed recipes or registered names, tried in order (default: the format's ``int8_recipes``); a
    misspelled name raises UnknownNameError before any work; a recipe the format cannot apply is recorded as skipped.
    ``rescue``: called with the attempts so far when every recipe missed the gate; it returns more recipes to try
    (e.g. the same recipe with the worst layers kept in float, then QAT) — see ``edgecart.compress.quantize``;
    :func:`qat_rescue` is the plain QAT fallback. ``qat_data``: the training inputs a QAT recipe fine-tunes on and the
    validation inputs that pick its step (:class:`~edgecart.exporters.base.QATData`); without it, QAT splits the
    calibration inputs (a held-out part picks the step) and the artifact's ``quantization.fine_tune`` says so.
    ``reference`` holds the float model's metrics (``reference[gate.metric]`` is the bar). Every attempt, its
    metric and the reason it was kept or dropped go into the artifact's ``quantization.gate`` — or, when no
    recipe passes, into the bundle's ``quality["int8_rejected"][fmt]``. Only toolchain failures
    (:class:`ToolchainError`) and parity failures count as failed attempts; any other exception propagates.
    """
    if gate.metric not in reference:
        raise ValueError(f"reference metrics {sorted(reference)} lack the gate metric {gate.metric!r}")
    exporter = EXPORTERS[fmt]
    plan = [resolve_recipe(r) for r in (recipes if recipes is not None else exporter.int8_recipes)]
    bar = reference[gate.metric]
    tried: list[dict[str, Any]] = []
    name = f"{writer.meta['name']}.int8.{fmt}"

    def attempt(recipe: QuantRecipe, stage: str) -> Artifact | None:
        record: dict[str, Any] = {"recipe": recipe.name, "config": recipe_to_dict(recipe), "stage": stage}
        if not exporter.supports(recipe):
            tried.append({**record, "passed": False, "reason": f"format {fmt} does not support this recipe"})
            return None
        if progress:
            progress(f"int8 {fmt} [{recipe.name}]")
        try:
            art = export_artifact(writer, model, example_inputs, fmt, precision="int8", recipe=recipe,
                                  calibration=calibration, name=name, golden=golden, tolerance=tolerance,
                                  qat_data=qat_data if isinstance(recipe, QAT) else None)
        except ParityError as exc:
            tried.append({**record, "passed": False, "reason": f"parity: {exc}"[:800]})
            return None
        except ToolchainError as exc:  # the toolchain cannot apply this recipe to this model: a failed attempt
            tried.append({**record, "passed": False, "reason": str(exc)[:800]})
            return None
        metrics = evaluate_artifact(writer, art, evaluate)
        drop = bar - metrics[gate.metric]
        passed = drop <= gate.max_drop + 1e-12
        tried.append({**record, "passed": passed, gate.metric: metrics[gate.metric], "drop": drop,
                      "reason": "within the gate" if passed else f"lost {drop:.4f} {gate.metric} > {gate.max_drop}"})
        if passed:
            quant = dict(art.quantization or {})
            quant["gate"] = {"metric": gate.metric, "max_drop": gate.max_drop, "float": bar, "chosen": recipe.name,
                             "why": "first recipe in order whose drop is within the gate", "attempts": list(tried)}
            return writer.update_artifact(name, quantization=quant, quality=metrics)
        writer.remove_artifact(name)
        return None

    for recipe in plan:
        art = attempt(recipe, "recipe")
        if art is not None:
            return art
    if rescue is not None:
        for recipe in rescue(list(tried)):
            art = attempt(resolve_recipe(recipe), "rescue")
            if art is not None:
                return art
    writer.quality.setdefault("int8_rejected", {})[fmt] = {
        "metric": gate.metric, "max_drop": gate.max_drop, "float": bar, "attempts": tried,
        "why": "no int8 recipe kept the metric within the gate; ship the fp32 artifact for this format",
    }
    return None


#: The QAT recipe of the default fallback (:func:`qat_rescue` without an argument), read when the fallback runs.
FALLBACK_QAT = QAT()


def qat_rescue(qat: QAT | None = None) -> Rescue:
    """A ``rescue`` that falls back to quantization-aware training: ``qat`` (default ``FALLBACK_QAT``) with the
    weight granularity of the first recipe that ran and missed the gate (per-channel when none ran)."""
    def rescue(attempts: list[dict[str, Any]]) -> list[QuantRecipe]:
        base = qat or FALLBACK_QAT
        ran = [a for a in attempts if "drop" in a or str(a.get("reason", "")).startswith("parity")]
        if qat is None and ran:
            per_channel = bool(ran[0].get("config", {}).get("per_channel", True))
            base = dataclasses.replace(base, per_channel=per_channel)
        return [base]

    return rescue


Record = Callable[[Artifact, dict[str, float]], Artifact]


@dataclass(frozen=True)
class GatedFormat:
    """What :func:`export_formats_gated` did for one format."""

    format: str
    fp32: Artifact
    reference: dict[str, float] | None  # the fp32 artifact's metrics through the runtime (None without ``evaluate``)
    int8: Artifact | None = None  # the kept int8 artifact; None when int8 was not tried or the gate rejected it
    gate: dict[str, Any] | None = None  # the kept recipe's gate record, or the rejection record; None: not tried


def export_formats_gated(writer: BundleWriter, model: Any, example_inputs: tuple[Any, ...], formats: Sequence[str],
                         *, golden: tuple[dict, dict], evaluate: Evaluate | None = None, int8: bool = False,
                         gate: QualityGate | None = None, calibration: Sequence[tuple[Any, ...]] = (),
                         gate_evaluate: Evaluate | None = None, reference: dict[str, float] | None = None,
                         record: Record | None = None, recipes: Sequence[QuantRecipe | str] | None = None,
                         fp32_first: bool = False, tolerance: ParityTolerance = DEFAULT_TOLERANCE,
                         qat_data: QATData | None = None, rescue: Rescue | None = None,
                         progress: Callable[[str], None] | None = None) -> dict[str, GatedFormat]:
    """The fp32 → int8 → gate → record loop of a bundle, for every format in ``formats``.

    Per format: export fp32 (parity-checked on ``golden``), score it through the runtime with ``evaluate`` (when
    given) and pass it to ``record(artifact, metrics)``, which may update the artifact and returns it. With ``int8``:
    :func:`export_int8_gated` behind ``gate``, scored with ``gate_evaluate`` (default ``evaluate``) against
    ``reference`` (default: this format's fp32 metrics); a kept int8 artifact goes to ``record`` with its gate metrics,
    a rejected one leaves its attempts in the bundle's ``quality["int8_rejected"][fmt]``. ``fp32_first``: every fp32
    artifact before the first int8 one (else fp32 and int8 alternate per format). ``qat_data``: the task's training
    and validation inputs; given it (and no ``rescue``), a format that can apply QAT and whose recipes all miss the
    gate falls back to QAT (:func:`qat_rescue`) on those inputs before settling for fp32. ``rescue``: see
    :func:`export_int8_gated`.
    """
    label = writer.meta["name"]
    say = progress or (lambda _m: None)
    if int8:
        if gate is None or (gate_evaluate or evaluate) is None:
            raise ValueError("int8 behind the gate needs a QualityGate and an evaluate function")
        if reference is None and evaluate is None:
            raise ValueError("int8 behind the gate needs reference metrics or an evaluate function for the fp32 model")
    done: dict[str, GatedFormat] = {}

    def fp32(fmt: str) -> None:
        say(f"{label}: fp32 {fmt}")
        art = export_artifact(writer, model, example_inputs, fmt, golden=golden, tolerance=tolerance)
        metrics = evaluate_artifact(writer, art, evaluate) if evaluate is not None else None
        if record is not None and metrics is not None:
            art = record(art, metrics)
        done[fmt] = GatedFormat(fmt, art, metrics)

    def quantized(fmt: str) -> None:
        ref = reference if reference is not None else done[fmt].reference
        fallback = rescue
        if fallback is None and qat_data is not None and EXPORTERS[fmt].supports(QAT()):
            fallback = qat_rescue()
        art = export_int8_gated(writer, model, example_inputs, fmt, calibration=calibration, golden=golden,
                                evaluate=gate_evaluate or evaluate, reference=ref, gate=gate,  # type: ignore[arg-type]
                                recipes=recipes, tolerance=tolerance, qat_data=qat_data,
                                rescue=fallback, progress=lambda m: say(f"{label}: {m}"))
        if art is None:
            say(f"{label}: int8 {fmt} rejected by the gate (see manifest quality.int8_rejected)")
            done[fmt] = dataclasses.replace(done[fmt], gate=writer.quality["int8_rejected"][fmt])
            return
        gate_record = (art.quantization or {}).get("gate")
        if record is not None:
            art = record(art, dict(art.quality or {}))
        done[fmt] = dataclasses.replace(done[fmt], int8=art, gate=gate_record)

    if fp32_first:
        for fmt in formats:
            fp32(fmt)
    for fmt in formats:
        if not fp32_first:
            fp32(fmt)
        if int8:
            quantized(fmt)
    return done
