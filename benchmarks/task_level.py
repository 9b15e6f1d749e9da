"""Task-level figures, client side: ``search`` and ``recommend`` end to end beside the model alone, interleaved in
one worker process per job, quiet and with cores kept busy by spinning processes (``BenchConfig.busy``).

For each job and each busy count N: N spinning processes start, the worker loads the task, its levels (``task``,
``model`` and for search ``preprocess`` and ``scoring``) run in blocks, order rotated each round, and the spinners
stop. Each result's mode names its task, level and busy count (``search/model · busy 1``). Each row reports p50 per
level and ``task / model`` at p50 with a bootstrap CI, against the target
(``ImageSearch.search`` p50 <= 2x the model's own p50).
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .jobs import BenchConfig, Job
from .result import BenchResult, failed, from_raw
from .stats import block_ratio_ci, percentile, ratio_ci
from .targets_local import WorkerClient

#: The target of issue 10: end-to-end search within 2x the model's own p50.
TASK_RATIO_TARGET = 2.0
_SPIN = "import os\nos.nice(0)\nwhile True:\n    pass\n"


@contextlib.contextmanager
def busy_cores(n: int, python: str = sys.executable) -> Iterator[list[int]]:
    """``n`` processes spinning on the CPU for the duration of the block (their pids), stopped afterwards."""
    procs = [subprocess.Popen([python, "-c", _SPIN], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(n)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def task_mode(task: str | None, level: str, busy: int) -> str:
    """A task-level result's mode, carrying the busy count so quiet and busy runs read apart wherever results are
    listed (the main table, the JSON ``results``, the latency plot): ``search/task · busy 1``."""
    return f"{task}/{level} · busy {busy}"


def summarize_task(samples: dict[str, list[float]], config: Any,
                   by_round: dict[str, list[list[float]]] | None = None) -> dict[str, Any]:
    """p50 per level (ms) and task / model at p50 with its CI (a block bootstrap over the interleaved rounds when
    ``by_round`` holds each level's samples round by round)."""
    p50 = {lvl: percentile(s, 50.0) * 1e3 for lvl, s in samples.items() if s}
    out: dict[str, Any] = {"p50_ms": p50, "n": {lvl: len(s) for lvl, s in samples.items()}}
    if samples.get("task") and samples.get("model"):
        if by_round and by_round.get("task") and by_round.get("model"):
            r, lo, hi = block_ratio_ci(by_round["task"], by_round["model"], 50.0, config.bootstrap)
        else:
            r, lo, hi = ratio_ci(samples["task"], samples["model"], 50.0, config.bootstrap)
        out.update(task_over_model=r, task_over_model_ci=[lo, hi], target_ratio=TASK_RATIO_TARGET,
                   within_target=bool(r <= TASK_RATIO_TARGET))
    return out


def run_tasks(bundle: Path, jobs: list[Job], config: BenchConfig, progress: bool = True
              ) -> tuple[list[BenchResult], list[dict[str, Any]]]:
    """Every task-level job under every busy count of ``config``; (results per level, one summary row per run)."""
    from tqdm.auto import tqdm

    per_round = max(1, math.ceil(config.iterations / config.rounds))
    seconds_per_round = config.seconds / config.rounds
    results: list[BenchResult] = []
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(jobs) * len(config.busy) * config.rounds, desc="task-level", unit="round",
              disable=not progress, leave=False) as bar:
        for busy in config.busy:
            with busy_cores(busy, config.python) as spinners:
                for job in jobs:
                    extra = ("preprocess", "model", "scoring") if job.task == "search" else ("model",)
                    client = WorkerClient(bundle, job, warmup=config.warmup, levels=extra, cpus=config.cpus,
                                          python=config.python)
                    try:
                        if client.error is not None:
                            results.append(failed("local", job.backend, client.error, artifact=job.artifact,
                                                  threads=job.threads, mode=task_mode(job.task, "task", busy),
                                                  environment={"busy_processes": busy}))
                            bar.update(config.rounds)
                            continue
                        levels = list(client.info.get("levels", ["task", *extra]))
                        samples, by_round = client.run_interleaved(levels, config.rounds, per_round, seconds_per_round,
                                                                   on_round=lambda: bar.update(1))
                        done = client.finish()
                    finally:
                        client.close()
                    info = client.info
                    rows.append({"task": job.task, "artifact": job.artifact, "backend": job.backend,
                                 "threads": job.threads, "busy": busy, "busy_pids": spinners,
                                 "rounds": config.rounds, "per_round": per_round, "inputs": info.get("inputs"),
                                 **{k: info[k] for k in ("catalog_items", "catalog_precision", "scoring_path",
                                                         "scoring_mb", "approximate") if k in info},
                                 **summarize_task(samples, config, by_round)})
                    for lvl, s in samples.items():
                        env = {**info.get("environment", {}), "busy_processes": busy}
                        raw = {**info, "status": "ok", "mode": task_mode(job.task, lvl, busy), "samples_s": s,
                               "peak_rss_kb": done.get("peak_rss_kb"), "environment": env}
                        results.append(from_raw(raw, "local", "local", config.bootstrap, config.keep_samples))
    return results, rows


__all__ = ["TASK_RATIO_TARGET", "busy_cores", "run_tasks", "summarize_task", "task_mode"]
