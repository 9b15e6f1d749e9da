"""``edgecart prefer``: measure which backend is fastest here for the artifact ``auto`` would open on each backend
(interleaved rounds, as ``edgecart bench --compare``), and record that order for this platform in the bundle as a new
version. ``--order`` records a given order instead (e.g. measured on a device, ``--platform aarch64``)."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys

from edgecart.config import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prefer", help="record the fastest backend per platform in a bundle (what 'auto' follows)",
                       description=__doc__)
    p.add_argument("bundle")
    p.add_argument("--out", default=None, help="write the new version to this folder (default: in place)")
    p.add_argument("--order", default=None, help="record this order instead of measuring, e.g. litert,onnxruntime")
    p.add_argument("--platform", default=None, help="platform the order is for (default: this one, e.g. x86_64)")
    p.add_argument("--iterations", type=positive_int, default=300, help="timed calls per backend (default 300)")
    p.add_argument("--rounds", type=positive_int, default=10, help="interleaving rounds (default 10)")
    p.add_argument("--threads", type=positive_int, default=1, help="engine threads while measuring (default 1)")
    p.add_argument("--dry-run", action="store_true", help="measure and print; write nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_prefer)


def auto_candidates(manifest: object) -> dict[str, str]:
    """backend name -> the artifact ``auto`` would open on it (its best precision), for every backend that has one."""
    from edgecart.runtime.backends import backend_for_format
    from edgecart.runtime.session import PRECISION_ORDER

    chosen: dict[str, str] = {}
    for a in sorted(manifest.artifacts, key=lambda a: PRECISION_ORDER.index(a.precision)):  # type: ignore[attr-defined]
        chosen.setdefault(backend_for_format(a.format).name, a.name)
    return chosen


def measure(bundle: str, iterations: int, rounds: int, threads: int, progress: bool) -> tuple[list[str], dict]:
    """Fastest-first backend order here, and the record of how it was measured (p50 per backend, CI of the ratio)."""
    from edgecart.benchmarks.harness import BenchConfig, compare  # (the package attribute can be the submodule)
    from edgecart.runtime import available_backends, open_bundle

    m = open_bundle(bundle).manifest
    here = set(available_backends())
    cands = {b: a for b, a in auto_candidates(m).items() if b in here}
    if not cands:
        raise SystemExit("edgecart: error: no backend of this bundle is installed here")
    cfg = BenchConfig(backends=tuple(cands), artifacts=tuple(cands.values()), threads=(threads,),
                      iterations=iterations, rounds=rounds)
    rep = compare(bundle, cfg, progress=progress)
    ok = [r for r in rep.results if r.ok]
    ok.sort(key=lambda r: r.p50_ms)
    order = [r.backend for r in ok]
    rows = (rep.comparison or [{}])[0].get("rows", [])
    measured = {"p50_ms": {r.backend: round(r.p50_ms, 4) for r in ok},
                "artifacts": {r.backend: r.artifact for r in ok},
                "ratio_to_fastest": {row["backend"]: [round(row["ratio"], 3), *[round(x, 3) for x in row["ratio_ci"]]]
                                     for row in rows},
                "how": f"edgecart prefer: interleaved compare, {rounds} rounds, >= {iterations} calls, "
                       f"{threads} thread(s), Session.run",
                "cpu": rep.host.get("cpu_model"), "at": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()}
    failed = [f"{r.backend}: {r.reason}" for r in rep.results if not r.ok]
    if failed:
        measured["failed"] = failed
    return order, measured


def _prefer(args: argparse.Namespace) -> int:
    from edgecart.runtime import open_bundle
    from edgecart.runtime.preference import platform_key, preferred_order, record_preference, with_preference

    if args.order is not None:
        order = [x.strip() for x in args.order.split(",") if x.strip()]
        if not order:
            print("edgecart: error: --order names no backend; give them fastest first, e.g. --order "
                  "litert,onnxruntime (or leave --order out to measure here)", file=sys.stderr)
            return 2
        measured = {"how": "given with --order", "at": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()}
    else:
        if args.platform and platform_key(args.platform) != platform_key():
            print(f"edgecart: error: cannot measure {args.platform} here (this is {platform_key()}); "
                  "pass --order measured on that platform", file=sys.stderr)
            return 2
        order, measured = measure(args.bundle, args.iterations, args.rounds, args.threads, not args.quiet)
        for b in order:
            print(f"  {b:<12} p50 {measured['p50_ms'][b]:.4f} ms  ({measured['artifacts'][b]})")
    plat = platform_key(args.platform)
    if args.dry_run:
        new = with_preference(open_bundle(args.bundle).manifest, order, machine=plat, measured=measured)
        print(f"would record for {plat}: {order} -> 'auto' order on {plat} {list(preferred_order(new, plat))} "
              "(dry run)")
        return 0
    was_signed = open_bundle(args.bundle).manifest.signature is not None
    path, new = record_preference(args.bundle, order, machine=plat, measured=measured, out=args.out)
    print(f"recorded for {plat}: {', '.join(order)}; 'auto' on {plat} now tries "
          f"{', '.join(preferred_order(new, plat))}; wrote {new.name} {new.version} to {path} (verified)")
    if was_signed:
        unsigned_note(path)
    return 0


def unsigned_note(path: object) -> None:
    """Say that a new version of a signed bundle is unsigned: its manifest changed, so the old signature cannot hold."""
    print(f"note: {path} is unsigned: the signature covered the old manifest; sign the new version with "
          f"'edgecart sign {path} --key KEY'", file=sys.stderr)
