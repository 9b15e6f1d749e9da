"""Bundle commands: ``verify``, ``info``, ``check`` (golden parity on this machine), ``pack``."""

from __future__ import annotations

import argparse

from edgecart.runtime import available_backends, load, open_bundle
from edgecart.runtime.golden import check_golden
from edgecart.runtime.preprocess import test_vector_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check a bundle's manifest, hashes and sizes")
    p.add_argument("bundle")
    p.add_argument("--lenient", action="store_true", help="allow files the manifest does not list")
    p.set_defaults(func=_verify)

    p = sub.add_parser("info", help="print what a bundle holds")
    p.add_argument("bundle")
    p.set_defaults(func=_info)

    p = sub.add_parser("check", help="run every artifact on the bundle's golden inputs with the local engines")
    p.add_argument("bundle")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--target", default="local", help="local, or qemu-arm64 (emulated ARM64: parity and top-10 "
                   "agreement vs this machine, no latency; set-up: scripts/setup_arm.sh)")
    p.add_argument("--cpu", default=None, help="emulated CPU models for qemu-arm64 (default cortex-a53,neoverse-n1)")
    p.set_defaults(func=_check)

    p = sub.add_parser("pack", help="write BUNDLE.tar.gz for shipping")
    p.add_argument("bundle")
    p.add_argument("--dest", default=None)
    p.set_defaults(func=_pack)


def _verify(args: argparse.Namespace) -> int:
    b = open_bundle(args.bundle, strict=not args.lenient)
    print(f"ok: {b.manifest.name} {b.manifest.version} — {len(b.manifest.files)} files verified")
    return 0


def _info(args: argparse.Namespace) -> int:
    m = open_bundle(args.bundle).manifest
    print(f"{m.name} {m.version}  task={m.task}  schema={m.schema_version}  created={m.created_at}")
    for s in m.inputs:
        print(f"  input  {s.name}: {s.dtype}{list(s.shape)} {s.layout or ''}")
    for s in m.outputs:
        print(f"  output {s.name}: {s.dtype}{list(s.shape)} {s.layout or ''}")
    print(f"  {'artifact':<36} {'format':<10} {'prec':<5} {'bytes':>10} {'max|Δ|':>9} {'cosine':>9}")
    for a in m.artifacts:
        size = m.artifact_bytes(a)
        par = a.parity
        d = f"{par.max_abs_diff:9.2e} {par.cosine:9.6f}" if par else f"{'-':>9} {'-':>9}"
        print(f"  {a.name:<36} {a.format:<10} {a.precision:<5} {size:>10} {d}")
    return 0


def _check(args: argparse.Namespace) -> int:
    if args.target != "local":
        from edgecart.benchmarks.targets_qemu import cli_check

        return cli_check(args.bundle, args.target, args.cpu)
    bundle = open_bundle(args.bundle)
    here = set(available_backends())
    from edgecart.runtime.backends import backend_for_format

    failed = 0
    for art in bundle.manifest.artifacts:
        be = backend_for_format(art.format)
        if be.name not in here:
            print(f"  {art.name:<36} skipped: {be.name} not installed (pip install 'edgecart[{be.extra}]')")
            continue
        session = load(bundle, be.name, artifact=art.name, threads=args.threads)
        agree = check_golden(session)
        ok = art.parity is None or _within(agree, art.parity)
        failed += not ok
        print(f"  {art.name:<36} {be.name:<12} max|Δ| {agree.max_abs_diff:.2e}  cosine {agree.cosine:.6f}  "
              f"{'ok' if ok else 'OUT OF TOLERANCE'}")
        lines, bad = test_vector_report(bundle, session.run)  # raw-image test vectors, if any
        failed += bad
        for line in lines:
            print(line)
    return 1 if failed else 0


def _within(agree: object, parity: object) -> bool:
    from edgecart.runtime.manifest import Parity

    p = Parity(agree.max_abs_diff, agree.cosine, parity.max_abs_tolerance, parity.min_cosine,  # type: ignore
               agree.samples)  # type: ignore[attr-defined]
    return p.within_tolerance()


def _pack(args: argparse.Namespace) -> int:
    from edgecart.exporters.bundle import pack

    open_bundle(args.bundle)
    print(pack(args.bundle, args.dest))
    return 0
