"""Side by side: ExecuTorch, ONNX Runtime and LiteRT on the same golden inputs and threads, measured in interleaved
rounds (each runtime in its own loaded worker process; every round runs a block on each, in a rotated order) so that
drift — thermal, frequency, neighbours — hits all of them alike. Reports ratios to the fastest with bootstrap CIs."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .jobs import pick_jobs
from .report import BenchReport, write_report
from .result import BenchResult, failed, from_raw
from .stats import block_ratio_ci, ratio_ci
from .targets_local import WorkerClient


def interleave(clients: list[WorkerClient], level: str, rounds: int, per_round: int, seconds_per_round: float,
               bar: Any = None, by_round: dict[int, list[list[float]]] | None = None,
               ) -> tuple[dict[int, list[float]], list[list[str]]]:
    """Run ``rounds`` rounds; in round r the clients go in order rotated by r. Returns samples per client index and
    the schedule actually run (``artifact · backend`` per round); ``by_round``, when given, receives each client's
    samples round by round (for the block bootstrap of :func:`ratios`)."""
    samples: dict[int, list[float]] = {i: [] for i in range(len(clients))}
    schedule: list[list[str]] = []
    live = [i for i, c in enumerate(clients) if c.error is None]
    for r in range(rounds):
        k = r % len(live) if live else 0
        schedule.append([])
        for i in live[k:] + live[:k]:
            c = clients[i]
            if c.error is not None:
                continue
            try:
                got = c.run(level, per_round, seconds_per_round)
                samples[i].extend(got)
                if by_round is not None:
                    by_round.setdefault(i, [[] for _ in range(rounds)])[r] = list(got)
                schedule[-1].append(f"{c.job.artifact} · {c.job.backend}")
            except RuntimeError:
                pass
        if bar is not None:
            bar.update(1)
    return samples, schedule


def ratios(results: list[BenchResult], config: Any,
           rounds: dict[str, list[list[float]]] | None = None) -> dict[str, Any]:
    """p50 of each result over the fastest's, with a 95% interval: a block bootstrap over the interleaved rounds
    when ``rounds`` (samples per round, by result label) is given, else a bootstrap over single calls."""
    ok = [r for r in results if r.ok and r.samples_ms]
    if not ok:
        return {"fastest": None, "rows": []}
    fastest = min(ok, key=lambda r: r.p50_ms or math.inf)
    rows = []
    for r in ok:
        if rounds and r.label in rounds and fastest.label in rounds:
            ratio, lo, hi = block_ratio_ci(rounds[r.label], rounds[fastest.label], 50.0, config.bootstrap)
        else:
            ratio, lo, hi = ratio_ci(r.samples_ms, fastest.samples_ms, 50.0, config.bootstrap)  # type: ignore[arg-type]
        rows.append({"label": r.label, "backend": r.backend, "artifact": r.artifact, "p50_ms": r.p50_ms,
                     "ratio": ratio, "ratio_ci": [lo, hi]})
    rows.sort(key=lambda row: row["ratio"])
    return {"fastest": fastest.label, "rows": rows}


def compare(bundle: Path, config: Any, *, out: str | os.PathLike[str] | None = None, progress: bool = True,
            command: str | None = None) -> BenchReport:
    from edgecart.runtime import open_bundle
    from tqdm.auto import tqdm

    manifest = open_bundle(bundle).manifest
    results: list[BenchResult] = []
    comparison = []
    per_round = max(1, math.ceil(config.iterations / config.rounds))
    seconds_per_round = config.seconds / config.rounds
    for threads in config.threads:
        jobs = pick_jobs(manifest, config, threads)
        clients = []
        for job in jobs:  # started one after another so loads do not compete
            clients.append(WorkerClient(bundle, job, warmup=config.warmup, mode=config.mode, cpus=config.cpus,
                                        python=config.python, check_finite=config.check_finite))
        try:
            with tqdm(total=config.rounds, desc=f"compare t={threads}", unit="round", disable=not progress,
                      leave=False) as bar:
                per_client: dict[int, list[list[float]]] = {}
                samples, schedule = interleave(clients, config.mode, config.rounds, per_round, seconds_per_round, bar,
                                               by_round=per_client)
            block = []
            for i, c in enumerate(clients):
                if c.error is not None or not samples[i]:
                    block.append(failed("local", c.job.backend, c.error or "no samples", artifact=c.job.artifact,
                                        threads=threads))
                    continue
                done = c.finish()
                raw = {**c.info, "status": "ok", "samples_s": samples[i], "peak_rss_kb": done.get("peak_rss_kb")}
                block.append(from_raw(raw, "local", "local", config.bootstrap, keep_samples=True))
        finally:
            for c in clients:
                c.close()
        comparison.append({"threads": threads, "rounds": config.rounds, "per_round": per_round,
                           "order": "round-robin, rotated each round", "level": config.mode, "schedule": schedule,
                           "interval": "block bootstrap over rounds",
                           **ratios(block, config, {b.label: per_client[i] for i, b in enumerate(block)
                                                    if i in per_client})})
        results.extend(block)
    if not config.keep_samples:
        results = [BenchResult.from_dict({**r.to_dict(), "samples_ms": None}) for r in results]
    report = BenchReport.create("compare", manifest, config.to_dict(), results, target="local", command=command,
                                comparison=comparison)
    if out is not None:
        write_report(report, Path(out))
    return report


__all__ = ["compare", "interleave", "pick_jobs", "ratios"]
