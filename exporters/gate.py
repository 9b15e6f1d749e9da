"""int8 with a quality gate: try a format's int8 recipes in order, keep the first that loses at most
``max_drop`` of a quality metric against the float model, and record every attempt in the manifest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgecart.runtime.backends import backend_for_format
from edgecart.runtime.errors import ParityError
from edgecart.runtime.manifest import Artifact
from edgecart.runtime.session import Session

from .base import EXPORTERS
from .bundle import BundleWriter
from .export import DEFAULT_TOLERANCE, ParityTolerance, export_artifact

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


def export_int8_gated(writer: BundleWriter, model: Any, example_inputs: tuple[Any, ...], fmt: str, *,
                      calibration: Sequence[tuple[Any, ...]], golden: tuple[dict, dict], evaluate: Evaluate,
                      reference: dict[str, float], gate: QualityGate, recipes: Sequence[str] | None = None,
                      tolerance: ParityTolerance = DEFAULT_TOLERANCE,
                      progress: Callable[[str], None] | None = None) -> Artifact | None:
    """Export ``model`` to int8 ``fmt`` with the first recipe that passes ``gate``; None when none does.

    ``reference`` holds the float model's metrics (``reference[gate.metric]`` is the bar). Every attempt, its
    metric and the reason it was kept or dropped go into the artifact's ``quantization.gate`` — or, when no
    recipe passes, into the bundle's ``quality["int8_rejected"][fmt]``.
    """
    if gate.metric not in reference:
        raise ValueError(f"reference metrics {sorted(reference)} lack the gate metric {gate.metric!r}")
    bar = reference[gate.metric]
    tried: list[dict[str, Any]] = []
    name = f"{writer.meta['name']}.int8.{fmt}"
    for recipe in recipes or EXPORTERS[fmt].int8_recipes:
        if progress:
            progress(f"int8 {fmt} [{recipe}]")
        try:
            art = export_artifact(writer, model, example_inputs, fmt, precision="int8", recipe=recipe,
                                  calibration=calibration, name=name, golden=golden, tolerance=tolerance)
        except ParityError as exc:
            tried.append({"recipe": recipe, "passed": False, "reason": f"parity: {exc}"})
            continue
        except Exception as exc:  # a recipe the toolchain cannot apply to this model is a failed attempt
            tried.append({"recipe": recipe, "passed": False, "reason": f"{type(exc).__name__}: {exc}"[:500]})
            if name in {a.name for a in writer.artifacts}:
                writer.remove_artifact(name)
            continue
        metrics = evaluate_artifact(writer, art, evaluate)
        drop = bar - metrics[gate.metric]
        passed = drop <= gate.max_drop + 1e-12
        tried.append({"recipe": recipe, "passed": passed, gate.metric: metrics[gate.metric], "drop": drop,
                      "reason": "within the gate" if passed else f"lost {drop:.4f} {gate.metric} > {gate.max_drop}"})
        if passed:
            quant = dict(art.quantization or {})
            quant["gate"] = {"metric": gate.metric, "max_drop": gate.max_drop, "float": bar, "chosen": recipe,
                             "why": "first recipe in order whose drop is within the gate", "attempts": tried}
            return writer.update_artifact(name, quantization=quant, quality=metrics)
        writer.remove_artifact(name)
    writer.quality.setdefault("int8_rejected", {})[fmt] = {
        "metric": gate.metric, "max_drop": gate.max_drop, "float": bar, "attempts": tried,
        "why": "no int8 recipe kept the metric within the gate; ship the fp32 artifact for this format",
    }
    return None
