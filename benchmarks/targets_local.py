"""Local CPU target: each (artifact, backend, threads) in its own ``python -m edgecart.benchmarks.worker`` process,
optionally pinned to cores (:func:`run_local`); plus a client for workers in serve mode (interleaved comparisons,
overhead, task-level runs)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .jobs import BenchConfig, Job
from .result import BenchResult, failed, from_raw
from .stats import DEFAULT_BOOTSTRAP, BootstrapConfig


def worker_args(bundle: Path, job: Job, *, warmup: int, mode: str, cpus: Sequence[int] | None,
                options: dict[str, str] | None = None, check_finite: bool = True) -> list[str]:
    args = ["--bundle", str(bundle), "--backend", job.backend, "--artifact", job.artifact, "--warmup", str(warmup),
            "--mode", mode]
    if job.task is not None:
        args += ["--task", job.task]
    if job.threads is not None:
        args += ["--threads", str(job.threads)]
    if cpus:
        args += ["--cpus", ",".join(str(c) for c in cpus)]
    for k, v in (options or {}).items():
        args += ["--option", f"{k}={v}"]
    if not check_finite:
        args.append("--no-finite-check")
    return args


def run_job(bundle: Path, job: Job, *, iterations: int, seconds: float, warmup: int, mode: str = "session",
            cpus: Sequence[int] | None = None, timeout_s: float = 900.0, python: str = sys.executable,
            bootstrap: BootstrapConfig = DEFAULT_BOOTSTRAP, keep_samples: bool = True, target: str = "local",
            options: dict[str, str] | None = None, provider: str | None = None,
            check_finite: bool = True) -> BenchResult:
    """Run one job in a fresh worker process and summarise it. A crash or timeout becomes a ``failed`` result."""
    with tempfile.TemporaryDirectory(prefix="edgecart-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [python, "-m", "edgecart.benchmarks.worker",
               *worker_args(bundle, job, warmup=warmup, mode=mode, cpus=cpus, options=options,
                            check_finite=check_finite),
               "--iterations", str(iterations), "--seconds", str(seconds), "--out", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return failed(target, job.backend, f"worker timed out after {timeout_s:.0f} s", artifact=job.artifact,
                          threads=job.threads, provider=provider)
        if not out.is_file():
            tail = (proc.stderr or "").strip().splitlines()[-5:]
            return failed(target, job.backend, f"worker exited with {proc.returncode}: {' | '.join(tail)}",
                          artifact=job.artifact, threads=job.threads, provider=provider)
        raw = json.loads(out.read_text())
    raw.setdefault("artifact", job.artifact)
    return from_raw(raw, target, "local", bootstrap, keep_samples, provider=provider)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="job", disable=not enabled, leave=False)


def run_local(bundle: Path, jobs: list[Job], config: BenchConfig, progress: bool = True,
              target: str = "local", options: dict[str, str] | None = None,
              provider: str | None = None) -> list[BenchResult]:
    """Each job in its own fresh worker process, one after another."""
    results = []
    with _progress(len(jobs), f"bench {target}", progress) as bar:
        for job in jobs:
            bar.set_postfix_str(f"{job.backend} t={job.threads}")
            results.append(run_job(bundle, job, iterations=config.iterations, seconds=config.seconds,
                                   warmup=config.warmup, mode=config.mode, cpus=config.cpus,
                                   timeout_s=config.timeout_s, python=config.python, bootstrap=config.bootstrap,
                                   keep_samples=config.keep_samples, target=target, options=options,
                                   check_finite=config.check_finite,
                                   provider=provider))
            bar.update(1)
    return results


class WorkerClient:
    """A worker in ``--serve`` mode: loaded once, then told to run blocks of calls at chosen levels."""

    def __init__(self, bundle: Path, job: Job, *, warmup: int, mode: str = "session",
                 levels: Sequence[str] = (), cpus: Sequence[int] | None = None, python: str = sys.executable,
                 check_finite: bool = True) -> None:
        self.job = job
        self._stderr = tempfile.TemporaryFile(mode="w+")
        cmd = [python, "-m", "edgecart.benchmarks.worker",
               *worker_args(bundle, job, warmup=warmup, mode=mode, cpus=cpus, check_finite=check_finite), "--serve"]
        if levels:
            cmd += ["--levels", *levels]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, bufsize=1)
        self.info = self._read()
        self.error: str | None = None
        if self.info.get("event") != "ready":
            self.error = self.info.get("reason") or "worker did not start"

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self._stderr.seek(0)
            tail = " | ".join(self._stderr.read().strip().splitlines()[-5:])
            return {"event": "error", "reason": f"worker exited with {self.proc.returncode}: {tail}"}
        return json.loads(line)

    def _send(self, obj: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        reply = self._read()
        if reply.get("event") == "error":
            self.error = reply.get("reason") or reply.get("message")
        return reply

    def run(self, level: str, iterations: int, seconds: float = 0.0) -> list[float]:
        reply = self._send({"cmd": "run", "level": level, "iterations": iterations, "seconds": seconds})
        if reply.get("event") != "samples":
            raise RuntimeError(f"{self.job}: {self.error}")
        return list(reply["samples_s"])

    def run_interleaved(self, levels: Sequence[str], rounds: int, iterations: int, seconds: float = 0.0,
                        on_round: Any = None) -> tuple[dict[str, list[float]], dict[str, list[list[float]]]]:
        """Run ``levels`` in blocks for ``rounds`` rounds, the order rotated each round; returns every sample per
        level and the samples of each round per level (for block-bootstrap intervals). ``on_round()`` after each."""
        samples: dict[str, list[float]] = {lvl: [] for lvl in levels}
        by_round: dict[str, list[list[float]]] = {lvl: [] for lvl in levels}
        for r in range(rounds):
            k = r % len(levels)
            for lvl in [*levels[k:], *levels[:k]]:
                got = self.run(lvl, iterations, seconds)
                samples[lvl].extend(got)
                by_round[lvl].append(list(got))
            if on_round is not None:
                on_round()
        return samples, by_round

    def finish(self) -> dict[str, Any]:
        reply = self._send({"cmd": "finish"}) if self.error is None else {}
        self.close()
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


__all__ = ["Job", "WorkerClient", "run_job", "run_local", "worker_args"]
