"""``edgecart bench``: benchmark a bundle on a target; ``--compare`` runs the three runtimes side by side
(interleaved), ``--overhead`` measures edgecart.runtime against the bare engine, ``--task-level`` times what an app
calls end to end (picture -> top-10 through ImageSearch, history -> top-10 through Recommender) beside the model,
quiet and with ``--busy`` cores kept busy."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _distinct_ints(text: str) -> tuple[int, ...]:
    values = _ints(text)
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{text!r} lists {', '.join(map(str, twice))} more than once; give each "
                                         "count once")
    return values


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark a bundle: latency percentiles with CIs, load, memory, size, quality",
                       description=__doc__)
    p.add_argument("bundle")
    p.add_argument("--backends", type=_names, default=None, help="e.g. onnxruntime,litert,executorch (default: all)")
    p.add_argument("--threads", type=_distinct_ints, default=(1,), help="comma-separated thread counts (default 1)")
    p.add_argument("--target", default="local", help="local | cuda | ssh://[user@]host[:port] | adb:SERIAL | "
                   "qemu-arm64[:CPU,CPU] (emulated: parity, no latency)")
    p.add_argument("--iterations", type=int, default=100, help="timed calls per job (at least)")
    p.add_argument("--seconds", type=_seconds, default=0.0,
                   help="timed seconds per job (at least; default: none, --iterations alone)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up calls (>= 10)")
    p.add_argument("--precision", default=None, help="only artifacts of this precision (fp32, int8)")
    p.add_argument("--artifacts", type=_names, default=None, help="only these artifact names")
    p.add_argument("--pin", type=_ints, default=None, help="pin each worker to these cores, e.g. 0 or 0,1")
    p.add_argument("--mode", choices=("session", "engine", "raw"), default="session",
                   help="what is timed: Session.run (default), the engine call, or the raw library call (ONNX "
                        "Runtime only: with --mode raw pass --backends onnxruntime)")
    p.add_argument("--no-finite-check", action="store_true",
                   help="time sessions loaded with check_finite=False (no NaN/Inf scan of the inputs)")
    p.add_argument("--out", default=None, help="directory for JSON, Markdown and PNG plots")
    p.add_argument("--no-samples", action="store_true", help="leave raw per-call samples out of the JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--public-key", default=None, help="refuse the bundle unless it is signed by this Ed25519 public "
                   "key (checked before anything runs)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--compare", action="store_true",
                   help="ExecuTorch vs ONNX Runtime vs LiteRT, same inputs and threads, interleaved rounds")
    g.add_argument("--overhead", action="store_true", help="edgecart.runtime Session.run vs the bare engine call")
    g.add_argument("--task-level", action="store_true",
                   help="end to end: 'search' (uint8 picture -> top-10 via ImageSearch: preprocess / model / scoring) "
                        "or 'recommend' (history -> top-10 via Recommender), whichever fits the bundle, beside the "
                        "model alone")
    p.add_argument("--busy", type=_distinct_ints, default=(0,),
                   help="with --task-level: spinning processes beside the run, one run per count, e.g. 0,1 "
                        "(quiet, then one core busy; default 0)")
    p.add_argument("--rounds", type=int, default=10, help="interleaving rounds for --compare/--overhead/--task-level")
    s = p.add_argument_group("ssh target")
    s.add_argument("--identity", default=None, help="private key file for ssh/scp")
    s.add_argument("--port", type=int, default=None, help="ssh port (or put it in the target: ssh://h:2222)")
    s.add_argument("--remote-python", default="python3", help="Python on the remote host (needs numpy + a backend)")
    s.add_argument("--ssh-option", action="append", default=[], help="extra ssh -o option, e.g. "
                   "StrictHostKeyChecking=accept-new")
    a = p.add_argument_group("adb target")
    a.add_argument("--adb-tool", action="append", default=[], metavar="BACKEND=PATH",
                   help="native tool to push and run: executorch=executor_runner, litert=benchmark_model, "
                        "onnxruntime=onnxruntime_perf_test (repeatable)")
    a.add_argument("--adb", default="adb", help="adb executable")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from edgecart.runtime import open_bundle

    if args.public_key is not None:  # the signature, before anything runs (the harness verifies the files again)
        open_bundle(args.bundle, public_key=args.public_key)
    made: list[Path] = []
    if args.out is not None:  # before anything runs: a report into a bundle breaks it, a file in the way would fail
        # only once the run is over
        from edgecart.outputs import writable_folder
        from edgecart.runtime.archive import enclosing_bundle, refuse_output_inside

        out = Path(args.out)
        inside = enclosing_bundle(out) or (Path(args.bundle) if Path(args.bundle).is_dir() else None)
        refuse_output_inside(out, inside, kind="folder")
        made = writable_folder(out, "--out")  # a file above it, or a folder it cannot write: refused here
    try:
        rc = _run(args)
    except BaseException:
        _remove_made(made)  # refused (or stopped) before the report was written: no empty folders left behind
        raise
    if rc == 2:
        _remove_made(made)
    return rc


def _remove_made(made: list[Path]) -> None:
    from edgecart.outputs import remove_made

    remove_made(made)


def _run(args: argparse.Namespace) -> int:
    from edgecart.benchmarks.harness import BenchConfig, bench, compare, overhead, parse_target, task_for
    from edgecart.benchmarks.report import to_markdown
    from edgecart.runtime import open_bundle

    tasks = None
    if args.task_level:
        tasks = (task_for(open_bundle(args.bundle).manifest),)
    elif args.busy != (0,):
        print("edgecart: error: --busy goes with --task-level", file=sys.stderr)
        return 2
    config = BenchConfig(tasks=tasks, busy=args.busy, backends=args.backends, threads=args.threads,
                         iterations=args.iterations, seconds=args.seconds, warmup=args.warmup,
                         artifacts=args.artifacts, precision=args.precision, cpus=args.pin, mode=args.mode,
                         rounds=args.rounds, keep_samples=not args.no_samples,
                         check_finite=not args.no_finite_check)
    command = shlex.join(["edgecart", *sys.argv[1:]]) if Path(sys.argv[0]).name == "edgecart" else (
        shlex.join(["python", "-m", "edgecart.cli.bench_cmd", *sys.argv[1:]]) if sys.argv[0].endswith("bench_cmd.py")
        else None)
    common = dict(out=args.out, progress=not args.quiet, command=command)
    if (args.compare or args.overhead or args.task_level) and args.target != "local":
        print("edgecart: error: --compare, --overhead and --task-level run on the local target", file=sys.stderr)
        return 2
    if args.compare or args.overhead:
        report = (compare if args.compare else overhead)(args.bundle, config, **common)
    else:
        kind, _ = parse_target(args.target)
        opts: dict = {}
        if kind == "ssh":
            opts = {"identity": args.identity, "python": args.remote_python, "ssh_options": tuple(args.ssh_option)}
            if args.port:
                opts["port"] = args.port
        elif kind == "adb":
            bad = [t for t in args.adb_tool if "=" not in t]
            if bad:
                print(f"edgecart: error: --adb-tool {bad[0]!r} is not BACKEND=PATH (e.g. "
                      "litert=/data/local/tmp/benchmark_model)", file=sys.stderr)
                return 2
            tools = dict(t.split("=", 1) for t in args.adb_tool)
            opts = {"tools": tools, "adb": args.adb}
        report = bench(args.bundle, config, args.target, target_options=opts, **common)
    print(to_markdown(report))
    if args.out:
        print(f"wrote JSON, Markdown and plots to {args.out}")
    return 0 if any(r.status != "failed" for r in report.results) else 1


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m edgecart.cli.bench_cmd BUNDLE ...``), same options as ``edgecart bench``."""
    parser = argparse.ArgumentParser(prog="edgecart")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    from edgecart.runtime.errors import EdgecartError

    try:
        return int(args.func(args))
    except (EdgecartError, ValueError) as exc:
        print(f"edgecart: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
