"""Results of the emulated ARM64 target: one :class:`EmulatedResult` per artifact and CPU model, the verdict
(:func:`judge`: golden outputs within the exporter's tolerance, outputs and top-10 close to this machine's), and the
views of a check (text, harness results). Emulated results never carry a latency figure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TARGET_NAME = "qemu-arm64"
FP32_TOLERANCE = 1e-4
MIN_TOP10_AGREEMENT = 0.95


@dataclass(frozen=True)
class EmulatedResult:
    """One artifact on one emulated CPU model. ``origin`` is always ``emulated``; there is no latency field."""

    cpu: str
    artifact: str
    backend: str
    precision: str
    status: str  # ok | failed | skipped
    reason: str | None = None
    golden_max_abs_diff: float | None = None
    golden_cosine: float | None = None
    golden_tolerance: float | None = None
    golden_min_cosine: float | None = None
    golden_ok: bool | None = None
    task: str | None = None
    task_samples: int = 0
    x86_max_abs_diff: float | None = None
    x86_tolerance: float | None = None
    x86_min_cosine: float | None = None
    test_vectors: str | None = None
    top10_agreement: float | None = None
    origin: str = "emulated"
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        head = f"  [{self.cpu}] {self.artifact:<32} {self.backend:<11}"
        if self.status == "skipped" or self.golden_max_abs_diff is None:
            return f"{head} {self.status}: {self.reason}"
        agree = "" if self.top10_agreement is None else f"  top-10 {self.top10_agreement:.1%}"
        agree += "" if self.test_vectors is None else f"  test vectors {self.test_vectors}"
        x86 = "" if self.x86_max_abs_diff is None else f"  vs x86 max|Δ| {self.x86_max_abs_diff:.1e}"
        verdict = "ok" if self.ok else f"FAILED: {self.reason}"
        return (f"{head} golden max|Δ| {self.golden_max_abs_diff:.1e} cos {self.golden_cosine:.6f}{x86}{agree}  "
                f"{verdict} (emulated)")


@dataclass(frozen=True)
class EmulatedCheck:
    """All results of one emulated check, with how it ran and how long the emulation took (not a latency)."""

    bundle: str
    target: str
    runner: str
    cpus: tuple[str, ...]
    results: tuple[EmulatedResult, ...]
    wall_s: float

    @property
    def ok(self) -> bool:
        return all(r.status != "failed" for r in self.results) and any(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "target": self.target, "origin": "emulated", "runner": self.runner,
                "cpus": list(self.cpus), "wall_s": round(self.wall_s, 1),
                "note": "emulated: parity and top-10 agreement only, no latency figures",
                "results": [r.to_dict() for r in self.results]}


def judge(cpu: str, art: Any, backend: str, guest: dict[str, Any], host: dict[str, Any], task: str | None,
           env: dict[str, Any], np: Any) -> EmulatedResult:
    base = dict(cpu=cpu, artifact=art.name, backend=backend, precision=art.precision, environment=env)
    if "error" in guest:
        return EmulatedResult(status="failed", reason=f"guest: {guest['error']}", **base)
    if "error" in host:
        status = "skipped" if host["error"].startswith("BackendUnavailableError") else "failed"
        return EmulatedResult(status=status, reason=f"no x86 reference here: {host['error']}", **base)
    if "golden" not in guest:
        return EmulatedResult(status="failed", reason="the guest returned no result for this artifact", **base)
    par = art.parity
    g_tol = par.max_abs_tolerance if par is not None else (FP32_TOLERANCE if art.precision == "fp32" else None)
    g_cos = par.min_cosine if par is not None else None
    gd, gc = guest["golden"]["max_abs_diff"], guest["golden"]["cosine"]
    golden_ok = (g_tol is None or gd <= g_tol) and (g_cos is None or gc >= g_cos)
    # vs x86: fp32 within 1e-4; int8 within the gate's tolerance (max|Δ| and/or cosine), 1e-4 when it has none
    x86_tol = FP32_TOLERANCE if art.precision == "fp32" or (g_tol is None and g_cos is None) else g_tol
    x86_cos_min = g_cos if art.precision != "fp32" else None
    reasons = [] if golden_ok else [f"golden outputs out of tolerance (max|Δ| {gd:.2e}, cosine {gc:.6f}; "
                                    f"tolerance {g_tol}, min cosine {g_cos})"]
    x86_diff = x86_cos = agree = None
    n = 0
    if "outputs" in guest and "outputs" in host:
        go, ho = np.asarray(guest["outputs"], np.float64), np.asarray(host["outputs"], np.float64)
        finite = np.isfinite(ho) & np.isfinite(go)
        x86_diff = float(np.max(np.abs(go[finite] - ho[finite]))) if finite.any() else 0.0
        if (np.isfinite(ho) != np.isfinite(go)).any():
            x86_diff = float("inf")
        gz, hz = np.where(finite, go, 0.0), np.where(finite, ho, 0.0)
        den = np.linalg.norm(gz, axis=1) * np.linalg.norm(hz, axis=1)
        x86_cos = float(np.min(np.where(den > 0, (gz * hz).sum(axis=1) / np.maximum(den, 1e-300), 1.0)))
        n = len(go)
        if x86_tol is not None and x86_diff > x86_tol:
            reasons.append(f"outputs differ from x86 by {x86_diff:.2e} > {x86_tol:.0e}")
        if x86_cos_min is not None and x86_cos < x86_cos_min:
            reasons.append(f"cosine with x86 {x86_cos:.6f} < {x86_cos_min}")
    tv = guest.get("test_vectors") or []
    tv_note = None
    if tv:
        def _tv_ok(row: dict[str, Any]) -> bool:
            return bool(row["input_ok"]) and (g_tol is None or row["output_max_abs_diff"] <= g_tol) and (
                g_cos is None or row["output_cosine"] >= g_cos)
        bad = [row["name"] for row in tv if not _tv_ok(row)]
        tv_note = f"{len(tv) - len(bad)}/{len(tv)} ok"
        if bad:
            reasons.append(f"test vectors out of tolerance: {', '.join(bad)}")
    elif "test_vectors_error" in guest:
        tv_note = f"not run: {guest['test_vectors_error']}"
    if task and "top" in guest and "top" in host:
        gt, ht = guest["top"], host["top"]
        agree = float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(gt, ht, strict=True)]))
        if agree < MIN_TOP10_AGREEMENT:
            reasons.append(f"top-10 agreement {agree:.1%} < {MIN_TOP10_AGREEMENT:.0%}")
    return EmulatedResult(status="failed" if reasons else "ok", reason="; ".join(reasons) or None,
                          golden_max_abs_diff=gd, golden_cosine=gc, golden_tolerance=g_tol, golden_min_cosine=g_cos,
                          golden_ok=golden_ok, task=task, task_samples=n, x86_max_abs_diff=x86_diff,
                          x86_tolerance=x86_tol, x86_min_cosine=x86_cos, top10_agreement=agree,
                          test_vectors=tv_note, **base)


def format_check(c: EmulatedCheck) -> str:
    lines = [f"{TARGET_NAME}: {c.runner}; cpus {', '.join(c.cpus)} — emulated: parity and top-10 agreement only, "
             "no latency"]
    lines += [r.line() for r in c.results]
    n_ok = sum(r.ok for r in c.results)
    n_fail = sum(r.status == "failed" for r in c.results)
    lines.append(f"  {n_ok} ok, {n_fail} failed, {len(c.results) - n_ok - n_fail} skipped "
                 f"(emulation took {c.wall_s:.0f} s)")
    return "\n".join(lines)


def to_bench_results(c: EmulatedCheck) -> list[Any]:
    """The check as harness results: status ``skipped`` for latency (emulated), parity/agreement attached."""
    from .result import BenchResult

    out = []
    for r in c.results:
        why = r.reason if r.status != "ok" else None
        reason = f"emulated ({r.cpu}): no latency figure; {'correctness ' + r.status}" + (f": {why}" if why else "")
        out.append(BenchResult(target=f"{TARGET_NAME}:{r.cpu}", origin="emulated", status="skipped",
                               backend=r.backend, threads=1, artifact=r.artifact, precision=r.precision,
                               reason=reason, environment={**r.environment, "runner": c.runner},
                               parity=None if r.golden_max_abs_diff is None else {
                                   "max_abs_diff": r.golden_max_abs_diff, "cosine": r.golden_cosine,
                                   "within_tolerance": r.golden_ok, "x86_max_abs_diff": r.x86_max_abs_diff},
                               quality={} if r.top10_agreement is None else {
                                   "top10_agreement_with_x86": r.top10_agreement, "task": r.task,
                                   "samples": r.task_samples}))
    return out
