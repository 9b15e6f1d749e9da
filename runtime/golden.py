"""Check a session against the bundle's golden inputs/outputs (on-device parity), numpy only.

NaN and Inf never pass: a sample whose output (or reference) holds a non-finite value counts as the worst possible
agreement — ``max_abs_diff`` is Inf and ``cosine`` is -1 — so no tolerance accepts it. (``np.max(np.abs(out - ref))``
is NaN when ``out`` holds a NaN, and ``max(0.0, nan)`` is 0.0: a plain max would record a NaN output as perfect.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import BundleError, NonFiniteOutputError, ParityError


@dataclass(frozen=True)
class Agreement:
    """Worst-case agreement of a session's outputs with reference outputs over ``samples`` samples.

    ``non_finite`` counts samples whose output or reference held NaN or Inf (each makes ``max_abs_diff`` Inf and
    ``cosine`` -1)."""

    max_abs_diff: float
    cosine: float
    samples: int
    non_finite: int = 0

    def within(self, max_abs: float | None, min_cosine: float | None) -> bool:
        """True when every sample was finite and the agreement meets both bounds (None: not bounded)."""
        if self.non_finite or not (math.isfinite(self.max_abs_diff) and math.isfinite(self.cosine)):
            return False
        if max_abs is not None and not self.max_abs_diff <= max_abs:
            return False
        return min_cosine is None or self.cosine >= min_cosine


def sample_agreement(out: np.ndarray, ref: np.ndarray) -> tuple[float, float, bool]:
    """(max|out - ref|, cosine, finite) of two flat float64 vectors; non-finite gives (inf, -1.0, False)."""
    if out.shape != ref.shape:
        raise BundleError(f"outputs of {out.size} values cannot be compared with {ref.size} reference values")
    if not (np.isfinite(out).all() and np.isfinite(ref).all()):
        return math.inf, -1.0, False
    if not ref.size:
        return 0.0, 1.0, True
    max_abs = float(np.max(np.abs(out - ref)))
    norm_o, norm_r = float(np.linalg.norm(out)), float(np.linalg.norm(ref))
    if norm_o > 0 and norm_r > 0:
        cos = float(out @ ref) / (norm_o * norm_r)
    else:  # a zero vector agrees only with (nearly) zero
        cos = 1.0 if np.allclose(out, ref) else 0.0
    if not math.isfinite(max_abs) or not math.isfinite(cos):  # finite values whose difference overflows
        return math.inf, -1.0, False
    return max_abs, cos, True


def compare(run: object, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
            output_order: list[str]) -> Agreement:
    """Feed sample ``i`` of every input to ``run`` (a Session.run) and compare with sample ``i`` of ``outputs``.

    A run that raises because its outputs are NaN/Inf (:class:`NonFiniteOutputError` from a session with
    ``check_finite``) counts as a non-finite sample, not as a crash of the comparison."""
    n = next(iter(inputs.values())).shape[0]
    worst_cos, max_abs, bad = 1.0, 0.0, 0
    for i in range(n):
        ref = np.concatenate([outputs[k][i].ravel().astype(np.float64) for k in output_order])
        try:
            got = run({k: v[i] for k, v in inputs.items()})  # type: ignore[operator]
        except NonFiniteOutputError:
            bad += 1
            max_abs, worst_cos = math.inf, -1.0
            continue
        out = np.concatenate([np.asarray(got[k]).ravel().astype(np.float64) for k in output_order])
        d, cos, finite = sample_agreement(out, ref)
        bad += not finite
        max_abs, worst_cos = max(max_abs, d), min(worst_cos, cos)
    return Agreement(max_abs, worst_cos, n, bad)


def check_golden(session: object, *, require: bool = False) -> Agreement:
    """Run a :class:`~edgecart.runtime.Session` on its bundle's golden inputs and compare with the golden outputs.

    With ``require=True`` an agreement outside the artifact's recorded parity tolerance (or any NaN/Inf, or an
    artifact without recorded parity) raises :class:`ParityError` — the check an app can run at start-up to catch a
    model file that was changed together with its hash in the manifest (what only a signature proves otherwise)."""
    bundle = session.bundle  # type: ignore[attr-defined]
    golden = bundle.manifest.golden
    if golden is None:
        raise BundleError(f"bundle {bundle.manifest.name!r} carries no golden data; re-export it with golden inputs")
    ins = {k: bundle.load_npy(p) for k, p in golden.inputs.items()}
    outs = {k: bundle.load_npy(p) for k, p in golden.outputs.items()}
    agree = compare(session.run, ins, outs, [s.name for s in bundle.manifest.outputs])  # type: ignore[attr-defined]
    if require:
        art = session.artifact  # type: ignore[attr-defined]
        parity = art.parity
        if parity is None:
            raise ParityError(f"artifact {art.name!r} has no recorded parity tolerance; re-export the bundle")
        if not agree.within(parity.max_abs_tolerance, parity.min_cosine):
            raise ParityError(
                f"artifact {art.name!r} disagrees with the bundle's golden outputs on this machine: max|Δ| "
                f"{agree.max_abs_diff:.3g} (tolerance {parity.max_abs_tolerance}), worst cosine {agree.cosine:.6f} "
                f"(tolerance {parity.min_cosine}), {agree.non_finite} of {agree.samples} samples NaN/Inf; the model "
                "file differs from the one that was exported, or this engine computes differently — re-export or "
                "copy the bundle again")
    return agree
