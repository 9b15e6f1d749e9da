"""``bench``: measure a bundle's artifacts on a target (local CPU, CUDA, an SSH host, an Android device over adb).

A façade over the benchmark modules, which depend on :mod:`.jobs` and never on this one::

    from edgecart.benchmarks import BenchConfig, bench, compare, overhead
    report = bench("out/tiny", BenchConfig(threads=(1, 2), iterations=200), target="local", out="bench-out")
    report = compare("out/tiny", BenchConfig(threads=(1,)), out="bench-out")    # the three runtimes, interleaved
    report = overhead("out/tiny", BenchConfig(), out="bench-out")               # edgecart.runtime vs the engine
    report = bench("out/search", BenchConfig(tasks=("search",), busy=(0, 1)))   # end to end, quiet and 1 core busy
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import compare as _compare
from . import overhead as _overhead
from .jobs import (
    MODES,
    TARGET_KINDS,
    TASKS,
    BenchConfig,
    BenchConfigError,
    Job,
    matching,
    parse_target,
    pick_jobs,
    plan,
    task_for,
)
from .report import BenchReport, write_report
from .targets_adb import AdbTarget
from .targets_cuda import run_cuda
from .targets_local import run_local
from .targets_ssh import SshTarget
from .task_level import run_tasks

DEFAULT_CONFIG = BenchConfig()


def bench(bundle: str | os.PathLike[str], config: BenchConfig = DEFAULT_CONFIG, target: str = "local", *,
          out: str | os.PathLike[str] | None = None, progress: bool = True,
          target_options: Mapping[str, Any] | None = None, command: str | None = None) -> BenchReport:
    """Benchmark every job of ``config`` on ``target``; write JSON, Markdown and plots to ``out`` when given.

    ``target_options``: for ``ssh://`` — ``identity``, ``port``, ``python``, ``ssh_options``; for ``adb:`` —
    ``tools`` ({backend: local path of executor_runner / benchmark_model / onnxruntime_perf_test}), ``adb``,
    ``device_dir``; for ``cuda`` — ``reference_model`` (a torch module, optional). With ``config.tasks`` the jobs
    are task-level (local target only) and the report's kind is ``task``.
    """
    from edgecart.runtime import open_bundle

    path = Path(bundle)
    manifest = open_bundle(path).manifest
    jobs = plan(manifest, config)
    kind, rest = parse_target(target)
    opts = dict(target_options or {})
    if config.tasks:
        if kind != "local":
            raise BenchConfigError(f"task-level jobs run on the local target, not {target!r}")
        results, rows = run_tasks(path, jobs, config, progress)
        report = BenchReport.create("task", manifest, config.to_dict(), results, target=target, command=command,
                                    tasks=rows)
    else:
        if kind == "local":
            results = run_local(path, jobs, config, progress)
        elif kind == "cuda":
            results = run_cuda(path, manifest, jobs, config, progress, **opts)
        elif kind == "qemu-arm64":  # correctness under emulation: parity/agreement, latency "skipped"
            from .targets_qemu import bench_results

            results = bench_results(path, rest, config, progress)
        elif kind == "ssh":
            results = SshTarget.parse(rest, **opts).run(path, manifest, jobs, config, progress)
        else:
            results = AdbTarget(rest, **opts).run(path, manifest, jobs, config, progress)
        report = BenchReport.create("bench", manifest, config.to_dict(), results, target=target, command=command)
    if out is not None:
        write_report(report, Path(out))
    return report


def compare(bundle: str | os.PathLike[str], config: BenchConfig = DEFAULT_CONFIG, *,
            out: str | os.PathLike[str] | None = None, progress: bool = True,
            command: str | None = None) -> BenchReport:
    """ExecuTorch, ONNX Runtime and LiteRT side by side on the same golden inputs and threads, interleaved."""
    return _compare.compare(Path(bundle), config, out=out, progress=progress, command=command)


def overhead(bundle: str | os.PathLike[str], config: BenchConfig = DEFAULT_CONFIG, *,
             out: str | os.PathLike[str] | None = None, progress: bool = True,
             command: str | None = None) -> BenchReport:
    """edgecart.runtime ``Session.run`` against the bare engine call on the same artifact, interleaved."""
    return _overhead.overhead(Path(bundle), config, out=out, progress=progress, command=command)


__all__ = ["MODES", "TARGET_KINDS", "TASKS", "BenchConfig", "BenchConfigError", "Job", "bench", "compare", "matching",
           "overhead", "parse_target", "pick_jobs", "plan", "run_local", "task_for"]
