"""One benchmark process: one (artifact, backend, threads), loaded once, measured, reported as JSON.

Run as ``python -m edgecart.benchmarks.worker --bundle B --backend X --threads T ... --out result.json`` (one shot),
or with ``--serve`` to take commands as JSON lines on stdin (used for interleaved comparisons and the overhead
measurement)::

    -> {"event": "ready", ...}                                       after load, first inference and warm-ups
    <- {"cmd": "run", "level": "session", "iterations": 50, "seconds": 0}
    -> {"event": "samples", "level": "session", "samples_s": [...]}
    <- {"cmd": "finish"}
    -> {"event": "done", "peak_rss_kb": ...}

Levels: ``session`` = ``edgecart.runtime.Session.run`` (what apps call), ``engine`` = the backend engine's ``run`` on
inputs already checked and converted, ``raw`` = the engine library's own call (ONNX Runtime only). With ``--task
search|recommend`` the process loads the task instead (:mod:`edgecart.benchmarks.tasks`), with levels ``task``,
``preprocess``, ``model``, ``scoring``.
Library chatter on stdout is sent to stderr so the protocol channel stays clean.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from .remote_runner import (
    MIN_WARMUP,
    add_job_arguments,
    current_rss_kb,
    environment,
    import_engine,
    measure,
    peak_rss_kb,
    pin,
)
from .tasks import TASK_LEVELS, TaskTarget

LEVELS = ("session", "engine", "raw")


class Target:
    """A loaded session plus callables for each measurement level, cycling through the golden inputs."""

    def __init__(self, bundle: str, backend: str, artifact: str | None, precision: str | None, threads: int | None,
                 options: dict[str, str] | None = None, check_finite: bool = True) -> None:
        from edgecart.runtime import load, open_bundle

        t0 = time.perf_counter()
        import_engine(backend)
        self.import_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        b = open_bundle(Path(bundle))
        self.verify_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.session = load(b, backend, artifact=artifact, precision=precision, threads=threads, options=options,
                            check_finite=check_finite)
        self.load_s = time.perf_counter() - t0
        self.providers = _active_providers(self.session, options)
        m = b.manifest
        if m.golden is None:
            from edgecart.runtime.errors import BundleError

            raise BundleError(f"bundle {m.name!r} carries no golden inputs; re-export it with golden data so every "
                              "runtime is measured on the same inputs")
        stacked = {k: b.load_npy(p) for k, p in m.golden.inputs.items()}
        n = min(v.shape[0] for v in stacked.values())
        self.feeds = [{s.name: stacked[s.name][i] for s in m.inputs} for i in range(n)]
        self.prepared = [self.session.prepare(f) for f in self.feeds]
        self.levels: dict[str, Callable[[int], Any]] = {
            "session": lambda i: self.session.run(self.feeds[i % n]),
            "engine": lambda i: self.session.engine.run(self.prepared[i % n]),
        }
        raw = _raw_call(self.session, self.prepared)
        if raw is not None:
            self.levels["raw"] = raw

    def describe(self) -> dict[str, Any]:
        s = self.session
        a, m = s.artifact, s.manifest
        size = m.artifact_bytes(a)
        return {
            "bundle": {"name": m.name, "version": m.version, "task": m.task},
            "artifact": a.name, "format": a.format, "precision": a.precision, "delegate": a.delegate,
            "backend": s.backend.name, "file_bytes": size, "quality": dict(a.quality),
            "parity": None if a.parity is None else {"max_abs_diff": a.parity.max_abs_diff, "cosine": a.parity.cosine,
                                                     "samples": a.parity.samples, "reference": a.parity.reference},
            "inputs": f"golden ({len(self.feeds)} samples, round-robin)", "levels": sorted(self.levels),
            "providers": self.providers,
        }


def _active_providers(session: Any, options: dict[str, str] | None) -> list[str] | None:
    """ONNX Runtime's providers actually in use; refuses a silent fall-back from the provider asked for."""
    ort_session = getattr(session.engine, "session", None)
    if ort_session is None or not hasattr(ort_session, "get_providers"):
        return None
    active = list(ort_session.get_providers())
    wanted = [p for p in (options or {}).get("providers", "").split(",") if p]
    if wanted and wanted[0] not in active:
        raise RuntimeError(f"execution provider {wanted[0]} is not active (ONNX Runtime fell back to {active}); "
                           "install a build with it and check the device")
    return active


def _raw_call(session: Any, prepared: list[list[Any]]) -> Callable[[int], Any] | None:
    ort_session = getattr(session.engine, "session", None)
    names = getattr(session.engine, "_in_names", None)
    if ort_session is None or names is None or not hasattr(ort_session, "run"):
        return None
    feeds = [dict(zip(names, p)) for p in prepared]
    return lambda i: ort_session.run(None, feeds[i % len(feeds)])


def start(args: argparse.Namespace) -> tuple[Target, dict[str, Any]]:
    affinity = pin(_cpus(args.cpus))
    rss_before = current_rss_kb()
    options = dict(kv.split("=", 1) for kv in args.option or [])
    target: Target | TaskTarget
    if args.task:
        target = TaskTarget(args.task, args.bundle, args.backend, args.artifact, args.precision, args.threads,
                            options or None, check_finite=not args.no_finite_check)
        args.mode = "task"
    else:
        target = Target(args.bundle, args.backend, args.artifact, args.precision, args.threads, options or None,
                        check_finite=not args.no_finite_check)
    main = level_call(target, args.mode, args.backend)
    first = measure(main, 1, 0.0)[0]
    warm = max(MIN_WARMUP, args.warmup)
    for level in [args.mode, *(x for x in (args.levels or []) if x != args.mode)]:
        measure(level_call(target, level, args.backend), warm, 0.0, 1)
    info = {
        **target.describe(), "threads": args.threads, "mode": args.mode, "import_s": target.import_s,
        "verify_s": target.verify_s, "load_s": target.load_s, "first_inference_s": first, "warmup": warm,
        "rss_before_load_kb": rss_before,
        "environment": {**environment(args.threads), "affinity": affinity, "pinned": bool(args.cpus)},
    }
    return target, info


def level_call(target: Target | TaskTarget, level: str, backend: str) -> Callable[[int], Any]:
    """The callable timed at ``level``; a level this target lacks (``raw`` outside ONNX Runtime) is a
    :class:`~edgecart.benchmarks.jobs.BenchConfigError` naming the levels it has."""
    try:
        return target.levels[level]
    except KeyError:
        from .jobs import RAW_BACKENDS, BenchConfigError

        extra = (f" (level 'raw' exists only for {list(RAW_BACKENDS)})"
                 if level == "raw" and backend not in RAW_BACKENDS else "")
        raise BenchConfigError(f"level {level!r} is not available for backend {backend!r}{extra}; available: "
                               f"{sorted(target.levels)}") from None


def _cpus(text: str | None) -> list[int] | None:
    return [int(c) for c in text.split(",") if c.strip()] if text else None


def oneshot(args: argparse.Namespace) -> dict[str, Any]:
    target, info = start(args)
    samples = measure(level_call(target, args.mode, args.backend), args.iterations, args.seconds, 1 + info["warmup"])
    return {**info, "status": "ok", "samples_s": samples, "peak_rss_kb": peak_rss_kb()}


def serve(args: argparse.Namespace, inp: IO[str], out: IO[str]) -> None:
    def say(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    target, info = start(args)
    say({"event": "ready", **info})
    counter = 1 + info["warmup"]
    for line in inp:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("cmd") == "run":
            level = cmd.get("level", args.mode)
            try:
                call = level_call(target, level, args.backend)
            except ValueError as exc:
                say({"event": "error", "message": f"{type(exc).__name__}: {exc}"})
                continue
            samples = measure(call, int(cmd.get("iterations", 1)), float(cmd.get("seconds", 0.0)), counter)
            counter += len(samples)
            say({"event": "samples", "level": level, "samples_s": samples})
        elif cmd.get("cmd") == "finish":
            say({"event": "done", "peak_rss_kb": peak_rss_kb()})
            return
        else:
            say({"event": "error", "message": f"unknown command {cmd!r}"})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgecart.benchmarks.worker", description=__doc__.splitlines()[0])
    add_job_arguments(p)
    p.add_argument("--mode", choices=LEVELS, default="session")
    p.add_argument("--levels", nargs="*", choices=LEVELS + TASK_LEVELS[1:], help="extra levels to warm up (serve mode)")
    p.add_argument("--task", choices=("search", "recommend"), default=None,
                   help="load the task (ImageSearch / Recommender) and time it end to end (levels: task, preprocess, "
                        "model, scoring)")
    p.add_argument("--option", action="append", help="backend option KEY=VALUE (e.g. providers=...)")
    p.add_argument("--no-finite-check", action="store_true", help="load with check_finite=False")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="write the one-shot result JSON here")
    g.add_argument("--serve", action="store_true", help="take JSON-line commands on stdin")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # engines that print go to stderr, never into the protocol/JSON
    try:
        if args.serve:
            serve(args, sys.stdin, proto)
        else:
            Path(args.out).write_text(json.dumps(oneshot(args)))
    except Exception as exc:  # reported as a failed result; the harness carries on with the other jobs
        failure = {"status": "failed", "event": "error", "reason": f"{type(exc).__name__}: {exc}",
                   "backend": args.backend, "threads": args.threads}
        if args.serve:
            proto.write(json.dumps(failure) + "\n")
            proto.flush()
        else:
            Path(args.out).write_text(json.dumps(failure))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
