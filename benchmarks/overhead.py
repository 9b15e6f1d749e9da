"""Our own overhead: ``edgecart.runtime`` ``Session.run`` against the bare engine on the same artifact, in the same
process, interleaved in blocks (order rotated each round).

Levels: ``session`` (Session.run: input checks, dtype conversion, output dict), ``engine`` (the backend engine's
``run`` on inputs prepared once), ``raw`` (ONNX Runtime's own ``InferenceSession.run`` on a prebuilt feed dict).
Overhead % = p50(session) / p50(engine or raw) − 1, with a bootstrap CI.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .jobs import pick_jobs
from .report import BenchReport, write_report
from .result import BenchResult, failed, from_raw
from .stats import block_ratio_ci, percentile, ratio_ci
from .targets_local import WorkerClient

#: The target of issue 4 for the image student: Session.run within 5 % of the bare engine at p50.
OVERHEAD_BUDGET_PCT = 5.0


def summarize_overhead(samples: dict[str, list[float]], config: Any,
                       by_round: dict[str, list[list[float]]] | None = None) -> dict[str, Any]:
    """p50 per level (ms) and the overhead of ``session`` over ``engine`` and ``raw`` in percent, with CIs (a block
    bootstrap over the interleaved rounds when ``by_round`` holds each level's samples round by round)."""
    p50 = {lvl: percentile(s, 50.0) * 1e3 for lvl, s in samples.items() if s}
    out: dict[str, Any] = {"p50_ms": p50, "n": {lvl: len(s) for lvl, s in samples.items()}}
    for base, key in (("engine", "overhead_pct"), ("raw", "overhead_vs_raw_pct")):
        if samples.get("session") and samples.get(base):
            if by_round and by_round.get("session") and by_round.get(base):
                r, lo, hi = block_ratio_ci(by_round["session"], by_round[base], 50.0, config.bootstrap)
            else:
                r, lo, hi = ratio_ci(samples["session"], samples[base], 50.0, config.bootstrap)
            out[key] = (r - 1.0) * 100.0
            out[key.replace("_pct", "_ms")] = p50["session"] - p50[base]
            out[key + "_ci"] = [(lo - 1.0) * 100.0, (hi - 1.0) * 100.0]
    if "overhead_pct" in out:
        out["budget_pct"] = OVERHEAD_BUDGET_PCT
        out["within_budget"] = bool(out["overhead_pct"] <= OVERHEAD_BUDGET_PCT)
    return out


def overhead(bundle: Path, config: Any, *, out: str | os.PathLike[str] | None = None, progress: bool = True,
             command: str | None = None) -> BenchReport:
    from edgecart.runtime import open_bundle
    from tqdm.auto import tqdm

    manifest = open_bundle(bundle).manifest
    per_round = max(1, math.ceil(config.iterations / config.rounds))
    seconds_per_round = config.seconds / config.rounds
    results: list[BenchResult] = []
    rows = []
    jobs = [j for t in config.threads for j in pick_jobs(manifest, config, t)]
    with tqdm(total=len(jobs) * config.rounds, desc="overhead", unit="round", disable=not progress,
              leave=False) as bar:
        for job in jobs:
            client = WorkerClient(bundle, job, warmup=config.warmup, mode="session", levels=("engine", "raw")
                                  if job.backend == "onnxruntime" else ("engine",), cpus=config.cpus,
                                  python=config.python, check_finite=config.check_finite)
            try:
                if client.error is not None:
                    results.append(failed("local", job.backend, client.error, artifact=job.artifact,
                                          threads=job.threads))
                    continue
                levels = list(client.info.get("levels", ["session", "engine"]))
                # levels alternate in blocks inside the one process, order rotated each round
                samples, by_round = client.run_interleaved(levels, config.rounds, per_round, seconds_per_round,
                                                           on_round=lambda: bar.update(1))
                done = client.finish()
            finally:
                client.close()
            summary = summarize_overhead(samples, config, by_round)
            rows.append({"artifact": job.artifact, "backend": job.backend, "threads": job.threads,
                         "rounds": config.rounds, "per_round": per_round, **summary})
            for lvl, s in samples.items():
                raw = {**client.info, "status": "ok", "mode": lvl, "samples_s": s,
                       "peak_rss_kb": done.get("peak_rss_kb")}
                results.append(from_raw(raw, "local", "local", config.bootstrap, config.keep_samples))
    report = BenchReport.create("overhead", manifest, config.to_dict(), results, target="local", command=command,
                                overhead=rows)
    if out is not None:
        write_report(report, Path(out))
    return report


__all__ = ["OVERHEAD_BUDGET_PCT", "overhead", "summarize_overhead"]
