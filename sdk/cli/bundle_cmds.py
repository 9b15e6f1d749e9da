"""Bundle commands: ``verify``, ``info``, ``check`` (golden parity on this machine), ``pack``, ``keygen``, ``sign``.

Exit codes (also in ``--help`` and docs/reliability.md):
  0  ok
  1  check failed: an artifact is out of its recorded parity tolerance, or has no recorded parity
  2  the bundle is invalid or refused (manifest, missing/extra/corrupt file, unsafe path, archive caps, ...)
  3  signature problem: a public key was given and the bundle is unsigned, signed by another key, or edited
``--json`` prints one JSON object on stdout instead of text, errors included (``{"ok": false, "error": {...}}``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from edgecart.cli._summary import THREADS_HELP
from edgecart.runtime.errors import EdgecartError, SignatureError, SigningUnavailableError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_INVALID, EXIT_SIGNATURE = 0, 1, 2, 3
EXIT_CODES = ("exit codes: 0 ok; 1 check failed (out of tolerance, or no recorded parity); 2 invalid or refused "
              "bundle; 3 signature problem (unsigned, other key, or edited, when --public-key is given)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    def cmd(name: str, help: str, func: Callable[[argparse.Namespace], int], json_flag: bool = True,
            bundle: bool = True, codes: str = EXIT_CODES) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=f"{help}. {codes}.")
        if bundle:
            p.add_argument("bundle", help="bundle directory or .tar.gz")
        if json_flag:
            p.add_argument("--json", action="store_true", help="print one JSON object (errors too) instead of text")
        p.set_defaults(func=_guarded(func))
        return p

    p = cmd("verify", "check a bundle's manifest, file sizes and sha256 (and its signature with --public-key)",
            _verify)
    p.add_argument("--lenient", action="store_true", help="allow files the manifest does not list")
    p.add_argument("--public-key", default=None, help="refuse the bundle unless signed by this Ed25519 key (PEM)")

    p = cmd("info", "print what a bundle holds", _info)
    p.add_argument("--public-key", default=None, help="refuse the bundle unless signed by this key")

    p = cmd("check", "run every artifact on the bundle's golden inputs with the local engines", _check)
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--public-key", default=None, help="refuse the bundle unless signed by this key")
    p.add_argument("--target", default="local", help="local, or qemu-arm64 (emulated ARM64: parity and top-10 "
                   "agreement vs this machine, no latency; set-up: scripts/setup_arm.sh)")
    p.add_argument("--cpu", default=None, help="emulated CPU models for qemu-arm64 (default cortex-a53,neoverse-n1)")

    p = cmd("pack", "write a deterministic BUNDLE.tar.gz for shipping (optionally slim: --formats)", _pack)
    p.add_argument("--dest", default=None, help="archive path (default: beside the bundle)")
    p.add_argument("--formats", default=None, help="comma-separated formats to keep, e.g. onnx or onnx,tflite")
    p.add_argument("--key", default=None, help="sign the packed manifest with this Ed25519 private key (PEM)")
    p.add_argument("--public-key", default=None, help="refuse to pack a bundle not signed by this key")

    p = cmd("keygen", "create an Ed25519 key pair for signing bundles", _keygen, bundle=False,
            codes="exit codes: 0 ok; 2 the keys cannot be written (they exist: --overwrite; or a bad --out); 3 signing "
                  "unavailable (the cryptography package is missing)")
    p.add_argument("--out", required=True, help="folder for edgecart-signing.key (private) and .pub (public)")
    p.add_argument("--overwrite", action="store_true")

    p = cmd("sign", "sign a bundle directory's manifest (which covers every file's sha256)", _sign,
            codes="exit codes: 0 ok; 2 invalid or refused bundle; 3 the key cannot sign (not an Ed25519 private key, "
                  "or the cryptography package is missing)")
    p.add_argument("--key", required=True, help="Ed25519 private key (PEM), from 'edgecart keygen'")


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map typed errors to the documented exit codes; with --json, report them as JSON on stdout."""
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except EdgecartError as exc:
            code = EXIT_SIGNATURE if isinstance(exc, (SignatureError, SigningUnavailableError)) else EXIT_INVALID
            if getattr(args, "json", False):
                _emit({"ok": False, "exit_code": code, "error": {"type": type(exc).__name__, "message": str(exc)}})
            else:
                print(f"edgecart: error: {exc}", file=sys.stderr)
            return code

    return run


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False))


def _open(args: argparse.Namespace, strict: bool = True) -> Any:
    from edgecart.runtime import open_bundle

    return open_bundle(args.bundle, strict=strict, public_key=getattr(args, "public_key", None))


def _signed_by(m: Any, args: argparse.Namespace) -> str:
    if m.signature is None:
        return "unsigned (integrity only: catches corruption, not deliberate edits)"
    if getattr(args, "public_key", None):
        return f"signed by the given key {m.signature.key_id[:16]}… (checked)"
    return f"signed by key {m.signature.key_id[:16]}… (not checked: pass --public-key)"


def _verify(args: argparse.Namespace) -> int:
    b = _open(args, strict=not args.lenient)
    m = b.manifest
    if args.json:
        _emit({"ok": True, "exit_code": 0, "name": m.name, "version": m.version, "task": m.task,
               "files_verified": len(m.files), "signed": m.signature is not None,
               "signature_checked": bool(args.public_key), "key_id": m.signature.key_id if m.signature else None})
    else:
        print(f"ok: {m.name} {m.version} — {len(m.files)} files verified; {_signed_by(m, args)}")
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    m = _open(args).manifest
    if args.json:
        arts = [{"name": a.name, "format": a.format, "precision": a.precision, "bytes": m.artifact_bytes(a),
                 "parity": None if a.parity is None else {"max_abs_diff": a.parity.max_abs_diff,
                                                          "cosine": a.parity.cosine}} for a in m.artifacts]
        _emit({"ok": True, "exit_code": 0, "name": m.name, "version": m.version, "task": m.task,
               "schema_version": m.schema_version, "created_at": m.created_at,
               "inputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape), "layout": s.layout}
                          for s in m.inputs],
               "outputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape), "layout": s.layout}
                           for s in m.outputs],
               "artifacts": arts, "signed": m.signature is not None,
               "key_id": m.signature.key_id if m.signature else None})
        return EXIT_OK
    print(f"{m.name} {m.version}  task={m.task}  schema={m.schema_version}  created={m.created_at}")
    print(f"  {_signed_by(m, args)}")
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
    return EXIT_OK


def _within(max_abs_diff: float, cosine: float, parity: Any) -> bool:
    """NaN-safe: a NaN measurement is never within tolerance."""
    import math

    if not (math.isfinite(max_abs_diff) and math.isfinite(cosine)):
        return False
    if parity.max_abs_tolerance is not None and not max_abs_diff <= parity.max_abs_tolerance:
        return False
    if parity.min_cosine is not None and not cosine >= parity.min_cosine:
        return False
    return True


def _check(args: argparse.Namespace) -> int:
    from edgecart.runtime import available_backends, load
    from edgecart.runtime.backends import backend_for_format
    from edgecart.runtime.golden import check_golden
    from edgecart.runtime.preprocess import test_vector_report

    if args.cpu is not None and args.target == "local":
        print("edgecart: error: --cpu picks the emulated CPU models of --target qemu-arm64; add --target qemu-arm64 "
              "(a local check runs on this machine's own CPU)", file=sys.stderr)
        return EXIT_INVALID
    if args.target != "local":  # emulated ARM64 (benchmarks/targets_qemu.py)
        from edgecart.benchmarks.targets_qemu import cli_check

        return cli_check(args.bundle, args.target, args.cpu, as_json=args.json,
                         public_key=getattr(args, "public_key", None))
    bundle = _open(args)
    if not bundle.manifest.artifacts:  # nothing to run: a bundle without models cannot pass a check
        msg = (f"bundle {bundle.manifest.name!r} holds no artifact (no model), so there is nothing to check; "
               "re-export it with at least one format")
        if args.json:
            _emit({"ok": False, "exit_code": EXIT_CHECK_FAILED, "name": bundle.manifest.name, "artifacts": [],
                   "failed": 0, "skipped": 0, "error": msg})
        else:
            print(f"edgecart: {msg}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    here = set(available_backends())
    rows: list[dict[str, Any]] = []
    for art in bundle.manifest.artifacts:
        be = backend_for_format(art.format)
        row: dict[str, Any] = {"artifact": art.name, "format": art.format, "backend": be.name}
        if art.parity is None:
            row.update(status="no recorded parity", ok=False,
                       reason="the manifest records no parity for this artifact, so nothing says what 'right' is; "
                              "re-export it with golden data")
        elif be.name not in here:
            row.update(status="skipped", ok=None,
                       reason=f"{be.name} not installed (pip install 'edgecart[{be.extra}]')")
        else:
            session = load(bundle, be.name, artifact=art.name, threads=args.threads)
            agree = check_golden(session)
            tv_lines, tv_bad = test_vector_report(bundle, session.run)  # raw-image test vectors, if any
            ok = _within(agree.max_abs_diff, agree.cosine, art.parity) and not tv_bad
            row["test_vectors"] = tv_lines
            row.update(status="ok" if ok else "out of tolerance", ok=ok, max_abs_diff=agree.max_abs_diff,
                       cosine=agree.cosine, max_abs_tolerance=art.parity.max_abs_tolerance,
                       min_cosine=art.parity.min_cosine)
        rows.append(row)
    failed = sum(r["ok"] is False for r in rows)
    code = EXIT_CHECK_FAILED if failed else EXIT_OK
    if args.json:
        _emit({"ok": not failed, "exit_code": code, "name": bundle.manifest.name, "artifacts": rows,
               "failed": failed, "skipped": sum(r["ok"] is None for r in rows)})
        return code
    for r in rows:
        if r["status"] in ("ok", "out of tolerance"):
            print(f"  {r['artifact']:<36} {r['backend']:<12} max|Δ| {r['max_abs_diff']:.2e}  cosine "
                  f"{r['cosine']:.6f}  {'ok' if r['ok'] else 'OUT OF TOLERANCE'}")
            for line in r.get("test_vectors", []):
                print(line)
        elif r["status"] == "skipped":
            print(f"  {r['artifact']:<36} skipped: {r['reason']}")
        else:
            print(f"  {r['artifact']:<36} FAILED ({r['status']}): {r['reason']}")
    return code


def _pack(args: argparse.Namespace) -> int:
    from edgecart.runtime.archive import pack_bundle

    formats = [f.strip() for f in args.formats.split(",") if f.strip()] if args.formats else None
    res = pack_bundle(args.bundle, args.dest, formats=formats, private_key=args.key, public_key=args.public_key)
    m = res.manifest
    if args.json:
        _emit({"ok": True, "exit_code": 0, "path": str(res.path), "bytes": res.bytes, "sha256": res.sha256,
               "artifacts": [a.name for a in m.artifacts], "files": len(m.files), "signed": m.signature is not None,
               "notes": list(res.notes)})
    else:
        print(res.path)
        for n in res.notes:
            print(f"note: {n}", file=sys.stderr)
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    from edgecart.runtime.signing import generate_keypair, key_id, load_public_key

    priv, pub = generate_keypair(args.out, overwrite=args.overwrite)
    kid = key_id(load_public_key(pub))
    if args.json:
        _emit({"ok": True, "exit_code": 0, "private_key": str(priv), "public_key": str(pub), "key_id": kid})
    else:
        print(f"private key: {priv}  (keep it secret; mode 0600)")
        print(f"public key:  {pub}  (ship it with your app; key id {kid[:16]}…)")
    return EXIT_OK


def _sign(args: argparse.Namespace) -> int:
    from edgecart.runtime.signing import sign_bundle

    m = sign_bundle(args.bundle, args.key)
    kid = m.signature.key_id if m.signature else ""
    if args.json:
        _emit({"ok": True, "exit_code": 0, "name": m.name, "key_id": kid})
    else:
        print(f"signed: {m.name} {m.version} with key {kid[:16]}…")
    return EXIT_OK
