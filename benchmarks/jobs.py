"""What a benchmark run measures: its configuration (:class:`BenchConfig`) and its jobs (:class:`Job`: an artifact on a
backend with a thread count, at model level or as a whole task), chosen from a bundle's manifest.

Every other benchmark module depends on this one and on nothing above it; ``harness`` is a façade over them all.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from edgecart.runtime.errors import EdgecartError

from .remote_runner import MIN_WARMUP
from .stats import BootstrapConfig


class BenchConfigError(EdgecartError, ValueError):
    """A benchmark setting (target, threads, iterations, mode, ...) is invalid; the message says what is allowed."""


TARGET_KINDS = ("local", "cuda", "ssh", "adb", "qemu-arm64")
MODES = ("session", "engine", "raw")
#: The backends with a ``raw`` level (the engine library's own call on a prebuilt feed): ONNX Runtime only.
RAW_BACKENDS = ("onnxruntime",)
#: Task-level jobs: ``search`` (uint8 picture -> top-10 through ImageSearch) and ``recommend`` (history -> top-10
#: through Recommender), and the bundle task each needs.
TASKS = {"search": "image_search", "recommend": "recommendations"}


@dataclass(frozen=True)
class Job:
    """One measurement: which artifact, on which backend, with how many threads (None = the engine's default); for a
    task-level job, which task (``search``/``recommend``) — else the model alone."""

    artifact: str
    backend: str
    threads: int | None
    task: str | None = None


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long.

    ``backends``: backend names (None = every backend the bundle has a format for). ``threads``: thread counts
    (None inside = the engine's default). Each job runs ``warmup`` (>= 10) calls, then the larger of ``iterations``
    calls or ``seconds``. ``cpus`` pins each worker to those cores (local). ``mode``: what is timed — ``session``
    (edgecart.runtime Session.run, what apps call), ``engine`` or ``raw``. ``rounds``: interleaving rounds for
    ``compare``/``overhead`` and task-level runs. ``check_finite``: sessions refuse NaN/Inf inputs (the runtime's
    default); False measures them without that check. ``tasks``: task-level jobs instead of model-level ones
    (``search``, ``recommend``; local target). ``busy``: for each number N in it, the task-level jobs run once with N
    spinning processes started beside them (0 = quiet), stopped afterwards.
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
    tasks: tuple[str, ...] | None = None
    busy: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        from edgecart.runtime.backends import BACKENDS

        for name in ("backends", "threads", "artifacts", "cpus", "tasks", "busy"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, tuple):
                object.__setattr__(self, name, tuple(v))
        for b in self.backends or ():
            BACKENDS[b]  # an unknown name raises, listing the known ones
        if not self.threads or any(t is not None and int(t) < 1 for t in self.threads):
            raise BenchConfigError(f"threads must be a non-empty list of counts >= 1, got {self.threads}")
        twice = _repeated(self.threads)
        if twice:
            raise BenchConfigError(f"threads {list(self.threads)} lists {twice} more than once; each thread count "
                                   "is one job, give it once")
        if self.iterations < 1:
            raise BenchConfigError(f"iterations must be >= 1, got {self.iterations}")
        if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds) and self.seconds >= 0):
            raise BenchConfigError(f"seconds must be a finite number >= 0 (0 = no time minimum), got {self.seconds}")
        if self.warmup < MIN_WARMUP:
            raise BenchConfigError(f"warmup must be at least {MIN_WARMUP} calls (got {self.warmup}); fewer leaves "
                             "one-time costs in the timed runs")
        if self.mode not in MODES:
            raise BenchConfigError(f"mode {self.mode!r} is not one of {MODES}")
        if self.mode == "raw" and self.backends is not None:
            _check_raw(self.backends)
        if self.rounds < 1:
            raise BenchConfigError(f"rounds must be >= 1, got {self.rounds}")
        if self.cpus is not None:
            have = os.cpu_count() or 1
            bad = [c for c in self.cpus if not 0 <= int(c) < have]
            if bad or not self.cpus:
                raise BenchConfigError(f"cpus {list(self.cpus)} must be core numbers in 0..{have - 1}")
        if self.tasks is not None:
            unknown = [t for t in self.tasks if t not in TASKS]
            if unknown or not self.tasks:
                raise BenchConfigError(f"tasks {list(self.tasks)} must be among {sorted(TASKS)}")
        if not self.busy or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in self.busy):
            raise BenchConfigError(f"busy must be a non-empty list of process counts >= 0, got {self.busy}")
        twice = _repeated(self.busy)
        if twice:
            raise BenchConfigError(f"busy {list(self.busy)} lists {twice} more than once; each count is one run, "
                                   "give it once")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("python")
        return d


def _repeated(values: tuple[Any, ...]) -> list[Any]:
    """The values that occur more than once, in order of first repeat."""
    seen: list[Any] = []
    twice: list[Any] = []
    for v in values:
        if v in seen and v not in twice:
            twice.append(v)
        seen.append(v)
    return twice


def _check_raw(backends: Any) -> None:
    """``raw`` mode times the engine library's own call, which only :data:`RAW_BACKENDS` have."""
    lacking = sorted({b for b in backends if b not in RAW_BACKENDS})
    if lacking:
        raise BenchConfigError(f"mode 'raw' (the engine library's own call) exists only for {list(RAW_BACKENDS)}, "
                               f"not for {lacking}; pass --backends {','.join(RAW_BACKENDS)} for raw mode, or use "
                               "--mode engine or session")


def _check_named(manifest: Any, config: Any, pairs: list[tuple[Any, Any]]) -> None:
    """Every artifact named in ``config.artifacts`` is in the bundle and selected: one the bundle lacks, or that
    ``config.precision``/``config.backends`` leave out, is an error, never dropped silently."""
    if config.artifacts is None:
        return
    names = {a.name: a for a in manifest.artifacts}
    unknown = [n for n in config.artifacts if n not in names]
    if unknown:
        have = ", ".join(names)
        raise BenchConfigError(f"artifact(s) {unknown} are not in bundle {manifest.name!r}; it has: {have}")
    kept = {a.name for a, _ in pairs}
    left_out = [n for n in config.artifacts if n not in kept]
    if left_out:
        why = ", ".join(f"{n} [{names[n].format}, {names[n].precision}]" for n in left_out)
        raise BenchConfigError(f"artifact(s) named in --artifacts would be left out by backends={config.backends}, "
                               f"precision={config.precision}: {why}; drop them from --artifacts or widen the "
                               "other filters")


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
    """The jobs ``config`` asks for, in a stable order: (artifact, backend, threads), once per task when
    ``config.tasks`` is set (a task the bundle cannot serve is an error naming the bundle's task)."""
    tasks: tuple[str | None, ...] = (None,)
    if config.tasks:
        wrong = [t for t in config.tasks if TASKS[t] != manifest.task]
        if wrong:
            raise BenchConfigError(f"task-level job(s) {wrong} need a bundle of task "
                             f"{[TASKS[t] for t in wrong]}; {manifest.name!r} is a {manifest.task!r} bundle")
        tasks = config.tasks
    pairs = matching(manifest.artifacts, config)
    _check_named(manifest, config, pairs)
    if config.mode == "raw" and not config.tasks:
        _check_raw(be.name for _, be in pairs)
    jobs = [Job(art.name, be.name, t, task) for task in tasks for art, be in pairs for t in config.threads]
    if not jobs:
        have = ", ".join(f"{a.name} [{a.format}, {a.precision}]" for a in manifest.artifacts)
        raise BenchConfigError(f"nothing to benchmark: no artifact matches backends={config.backends}, "
                         f"artifacts={config.artifacts}, precision={config.precision}; the bundle has: {have}")
    return jobs


def task_for(manifest: Any) -> str:
    """The task-level job that fits a bundle (``search`` for image_search, ``recommend`` for recommendations)."""
    for name, task in TASKS.items():
        if task == manifest.task:
            return name
    raise BenchConfigError(f"bundle {manifest.name!r} is a {manifest.task!r} bundle; task-level figures exist for "
                     f"{sorted(TASKS.values())}")


def pick_jobs(manifest: Any, config: Any, threads: int | None) -> list[Job]:
    """The jobs of ``compare``/``overhead`` at ``threads``: every artifact named in ``config.artifacts``, in that
    order (one the bundle lacks or the other filters leave out is an error); without names, one artifact per
    backend, the first matching ``config.precision`` (fp32 preferred). ``raw`` mode is refused for a backend
    without that level."""
    if config.artifacts is not None:
        pairs = matching(manifest.artifacts, config)
        _check_named(manifest, config, pairs)
        by_name = {a.name: (a, be) for a, be in pairs}
        picked = [by_name[n] for n in dict.fromkeys(config.artifacts)]
    else:
        chosen: dict[str, Any] = {}
        order = {"fp32": 0, "fp16": 1, "int8": 2}
        for art, be in matching(sorted(manifest.artifacts, key=lambda a: order.get(a.precision, 9)), config):
            chosen.setdefault(be.name, (art, be))
        picked = list(chosen.values())
    if not picked:
        raise BenchConfigError("nothing to compare: no artifact matches the backends/artifacts/precision asked for")
    if config.mode == "raw":
        _check_raw(be.name for _, be in picked)
    return [Job(a.name, be.name, threads) for a, be in picked]


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
    raise BenchConfigError(f"target {target!r} is not one of: local, cuda, ssh://[user@]host[:port], adb:SERIAL, "
                     "qemu-arm64[:CPU,CPU]")


__all__ = ["MODES", "RAW_BACKENDS", "TARGET_KINDS", "TASKS", "BenchConfig", "BenchConfigError", "Job", "matching",
           "parse_target", "pick_jobs", "plan", "task_for"]
