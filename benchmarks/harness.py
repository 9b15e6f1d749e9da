"""``bench``: measure a bundle's artifacts on a target (local CPU, CUDA, an SSH host, an Android device over adb).

Python API::

    from edgecart.benchmarks import BenchConfig, bench, compare, overhead
    report = bench("out/tiny", BenchConfig(threads=(1, 2), iterations=200), target="local", out="bench-out")
    report = compare("out/tiny", BenchConfig(threads=(1,)), out="bench-out")    # the three runtimes, interleaved
    report = overhead("out/tiny", BenchConfig(), out="bench-out")               # edgecart.runtime vs the engine
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .remote_runner import MIN_WARMUP
from .report import BenchReport, write_report
from .result import BenchResult
from .stats import BootstrapConfig
from .targets_local import Job, run_job

TARGET_KINDS = ("local", "cuda", "ssh", "adb", "qemu-arm64")
MODES = ("session", "engine", "raw")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long.

    ``backends``: backend names (None = every backend the bundle has a format for). ``threads``: thread counts
    (None inside = the engine's default). Each job runs ``warmup`` (>= 10) calls, then the larger of ``iterations``
    calls or ``seconds``. ``cpus`` pins each worker to those cores (local). ``mode``: what is timed — ``session``
    (edgecart.runtime Session.run, what apps call), ``engine`` or ``raw``. ``rounds``: interleaving rounds for
    ``compare``/``overhead``. ``check_finite``: sessions refuse NaN/Inf inputs (the runtime's default); False
    measures them without that check.
    """

    backends: tuple[str, ...] | None = None
    threads: tuple[int | None, ...] = (1,)
    iterations: int = 100
    seconds: float = 0.0
    warmup: int = MIN_WARMUP
    artifacts: tuple[str, ...] | None = None
    precision: str | None = None
    cpus: tuple[int, ...] | None = None
    mode: str = "session"
    rounds: int = 10
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    keep_samples: bool = True
    timeout_s: float = 900.0
    python: str = sys.executable
    check_finite: bool = True

    def __post_init__(self) -> None:
        from edgecart.runtime.backends import BACKENDS

        for name in ("backends", "threads", "artifacts", "cpus"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, tuple):
                object.__setattr__(self, name, tuple(v))
        for b in self.backends or ():
            BACKENDS[b]  # an unknown name raises, listing the known ones
        if not self.threads or any(t is not None and int(t) < 1 for t in self.threads):
            raise ValueError(f"threads must be a non-empty list of counts >= 1, got {self.threads}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {self.seconds}")
        if self.warmup < MIN_WARMUP:
            raise ValueError(f"warmup must be at least {MIN_WARMUP} calls (got {self.warmup}); fewer leaves "
                             "one-time costs in the timed runs")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.cpus is not None:
            have = os.cpu_count() or 1
            bad = [c for c in self.cpus if not 0 <= int(c) < have]
            if bad or not self.cpus:
                raise ValueError(f"cpus {list(self.cpus)} must be core numbers in 0..{have - 1}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("python")
        return d


def matching(artifacts: Any, config: Any) -> list[tuple[Any, Any]]:
    """(artifact, backend) pairs among ``artifacts`` that ``config.artifacts/precision/backends`` select, in order."""
    from edgecart.runtime.backends import backend_for_format

    pairs = []
    for art in artifacts:
        if config.artifacts is not None and art.name not in config.artifacts:
            continue
        if config.precision is not None and art.precision != config.precision:
            continue
        be = backend_for_format(art.format)
        if config.backends is None or be.name in config.backends:
            pairs.append((art, be))
    return pairs


def plan(manifest: Any, config: BenchConfig) -> list[Job]:
    """The (artifact, backend, threads) jobs ``config`` asks for, in a stable order."""
    jobs = [Job(art.name, be.name, t) for art, be in matching(manifest.artifacts, config) for t in config.threads]
    if not jobs:
        have = ", ".join(f"{a.name} [{a.format}, {a.precision}]" for a in manifest.artifacts)
        raise ValueError(f"nothing to benchmark: no artifact matches backends={config.backends}, "
                         f"artifacts={config.artifacts}, precision={config.precision}; the bundle has: {have}")
    return jobs


def parse_target(target: str) -> tuple[str, str]:
    """``local`` | ``cuda`` | ``ssh://[user@]host[:port]`` | ``adb:SERIAL`` -> (kind, rest)."""
    if target in ("local", "cuda"):
        return target, ""
    if target.startswith("ssh://") and len(target) > len("ssh://"):
        return "ssh", target[len("ssh://"):]
    if target.startswith("adb:") and len(target) > len("adb:"):
        return "adb", target[len("adb:"):]
    if target == "qemu-arm64" or target.startswith("qemu-arm64:"):  # emulated ARM64 (targets_qemu): no latency
        return "qemu-arm64", target.partition(":")[2]
    raise ValueError(f"target {target!r} is not one of: local, cuda, ssh://[user@]host[:port], adb:SERIAL, "
                     "qemu-arm64[:CPU,CPU]")


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="job", disable=not enabled, leave=False)


def run_local(bundle: Path, jobs: list[Job], config: BenchConfig, progress: bool = True,
              target: str = "local", options: dict[str, str] | None = None,
              provider: str | None = None) -> list[BenchResult]:
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


def bench(bundle: str | os.PathLike[str], config: BenchConfig = BenchConfig(), target: str = "local", *,
          out: str | os.PathLike[str] | None = None, progress: bool = True,
          target_options: Mapping[str, Any] | None = None, command: str | None = None) -> BenchReport:
    """Benchmark every job of ``config`` on ``target``; write JSON, Markdown and plots to ``out`` when given.

    ``target_options``: for ``ssh://`` — ``identity``, ``port``, ``python``, ``ssh_options``; for ``adb:`` —
    ``tools`` ({backend: local path of executor_runner / benchmark_model / onnxruntime_perf_test}), ``adb``,
    ``device_dir``; for ``cuda`` — ``reference_model`` (a torch module, optional).
    """
    from edgecart.runtime import open_bundle

    path = Path(bundle)
    manifest = open_bundle(path).manifest
    jobs = plan(manifest, config)
    kind, rest = parse_target(target)
    opts = dict(target_options or {})
    if kind == "local":
        results = run_local(path, jobs, config, progress)
    elif kind == "cuda":
        from .targets_cuda import run_cuda

        results = run_cuda(path, manifest, jobs, config, progress, **opts)
    elif kind == "qemu-arm64":  # correctness under emulation: results carry parity/agreement, latency "skipped"
        from .targets_qemu import bench_results

        results = bench_results(path, rest, config, progress)
    elif kind == "ssh":
        from .targets_ssh import SshTarget

        results = SshTarget.parse(rest, **opts).run(path, manifest, jobs, config, progress)
    else:
        from .targets_adb import AdbTarget

        results = AdbTarget(rest, **opts).run(path, manifest, jobs, config, progress)
    report = BenchReport.create("bench", manifest, config.to_dict(), results, target=target, command=command)
    if out is not None:
        write_report(report, Path(out))
    return report


def compare(bundle: str | os.PathLike[str], config: BenchConfig = BenchConfig(), *,
            out: str | os.PathLike[str] | None = None, progress: bool = True,
            command: str | None = None) -> BenchReport:
    """ExecuTorch, ONNX Runtime and LiteRT side by side on the same golden inputs and threads, interleaved."""
    from .compare import compare as _compare

    return _compare(Path(bundle), config, out=out, progress=progress, command=command)


def overhead(bundle: str | os.PathLike[str], config: BenchConfig = BenchConfig(), *,
             out: str | os.PathLike[str] | None = None, progress: bool = True,
             command: str | None = None) -> BenchReport:
    """edgecart.runtime ``Session.run`` against the bare engine call on the same artifact, interleaved."""
    from .overhead import overhead as _overhead

    return _overhead(Path(bundle), config, out=out, progress=progress, command=command)


__all__ = ["MODES", "TARGET_KINDS", "BenchConfig", "bench", "compare", "overhead", "parse_target", "plan",
           "run_local"]
