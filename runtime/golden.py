"""Check a session against the bundle's golden inputs/outputs (on-device parity), numpy only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BundleError


@dataclass(frozen=True)
class Agreement:
    """Worst-case agreement of a session's outputs with reference outputs over ``samples`` samples."""

    max_abs_diff: float
    cosine: float
    samples: int


def compare(run: object, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
            output_order: list[str]) -> Agreement:
    """Feed sample ``i`` of every input to ``run`` (a Session.run) and compare with sample ``i`` of ``outputs``."""
    n = next(iter(inputs.values())).shape[0]
    worst_cos, max_abs = 1.0, 0.0
    for i in range(n):
        got = run({k: v[i] for k, v in inputs.items()})  # type: ignore[operator]
        ref = np.concatenate([outputs[k][i].ravel().astype(np.float64) for k in output_order])
        out = np.concatenate([np.asarray(got[k]).ravel().astype(np.float64) for k in output_order])
        max_abs = max(max_abs, float(np.max(np.abs(out - ref))) if ref.size else 0.0)
        denom = float(np.linalg.norm(out) * np.linalg.norm(ref))
        cos = float(out @ ref / denom) if denom > 0 else float(np.allclose(out, ref))
        worst_cos = min(worst_cos, cos)
    return Agreement(max_abs, worst_cos, n)


def check_golden(session: object) -> Agreement:
    """Run a :class:`~edgecart.runtime.Session` on its bundle's golden inputs and compare with the golden outputs."""
    bundle = session.bundle  # type: ignore[attr-defined]
    golden = bundle.manifest.golden
    if golden is None:
        raise BundleError(f"bundle {bundle.manifest.name!r} carries no golden data; re-export it with golden inputs")
    ins = {k: bundle.load_npy(p) for k, p in golden.inputs.items()}
    outs = {k: bundle.load_npy(p) for k, p in golden.outputs.items()}
    return compare(session.run, ins, outs, [s.name for s in bundle.manifest.outputs])  # type: ignore[attr-defined]
