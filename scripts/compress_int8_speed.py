"""int8 over fp32 on one bundle, per format, in ONE interleaved run through the benchmark harness: every artifact
of the bundle (fp32 and int8 of each format) in its own loaded worker, rounds rotated, p50 ratios with 95% block-
bootstrap intervals over the rounds; quality figures are the manifest's (measured on the validation queries when
the bundle was built).

    EDGECART_THREADS=1 .venv/bin/python scripts/compress_int8_speed.py BUNDLE --out DIR [--rounds 40]

``--ort-variants``: ONNX Runtime int8 recipe variations of the bundle's own fp32 ``.onnx`` (QDQ vs QOperator, U8S8
vs S8S8, first conv / last layer kept in float, 7- vs 8-bit weights), calibrated on the bundle's calibration-like inputs
(``--calibration NPY``, float inputs of the model; default: the golden inputs), each timed against fp32 in the same
interleaved loop with plain ONNX Runtime sessions (1 intra-op thread), with their cosine to fp32.
Latency on a shared machine is comparable only as ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def bundle_speed(bundle: Path, rounds: int, per_round: int) -> dict[str, Any]:
    from edgecart.compress.report import artifact_sizes, harness_p50, p50_ratio
    from edgecart.runtime import open_bundle

    manifest = open_bundle(bundle).manifest
    sizes = artifact_sizes(bundle)
    arts = manifest.artifacts
    p50 = harness_p50([(str(bundle), a.name) for a in arts], rounds=rounds, per_round=per_round)
    rows = []
    for a in arts:
        got = p50[(str(bundle), a.name)]
        rows.append({"artifact": a.name, "format": a.format, "precision": a.precision, "p50_ms": got.get("p50_ms"),
                     "error": got.get("error"), "bytes": sizes[a.name]["bytes"],
                     "gzip_bytes": sizes[a.name]["gzip_bytes"], "recipe": sizes[a.name]["recipe"],
                     "quality": {k: v for k, v in (a.quality or {}).items() if isinstance(v, float)}})
    speedups = {}
    for fmt in sorted({a.format for a in arts}):
        f32 = [a for a in arts if a.format == fmt and a.precision == "fp32"]
        i8 = [a for a in arts if a.format == fmt and a.precision == "int8"]
        if f32 and i8 and "rounds_ms" in p50[(str(bundle), f32[0].name)] and "rounds_ms" in p50[(str(bundle),
                                                                                                i8[0].name)]:
            speedups[fmt] = p50_ratio(p50[(str(bundle), f32[0].name)], p50[(str(bundle), i8[0].name)])
    return {"bundle": manifest.name, "rows": rows, "int8_speedup_over_fp32": speedups,
            "rounds": rounds, "per_round": per_round}


def ort_variants(bundle: Path, calibration: np.ndarray, rounds: int) -> list[dict[str, Any]]:
    import onnx
    import onnxruntime as ort
    from edgecart.runtime import open_bundle
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    b = open_bundle(bundle)
    fp32 = next(a for a in b.manifest.artifacts if a.format == "onnx" and a.precision == "fp32")
    src = b.path(fp32.path)
    name = b.manifest.inputs[0].name
    tmp = Path(tempfile.mkdtemp(prefix="edgecart-ortvar-"))
    pre = tmp / "pre.onnx"
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    gemms = [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {name: x[None].astype(np.float32)}

    # the exporter's recipes quantize weights to 7 bits (reduce_range; exporters/_ort_quant.py says why), so every
    # U8S8 variant does too, except the one that shows what 8-bit weights do on the machine measuring
    u8 = dict(activation_type=QuantType.QUInt8, reduce_range=True)
    ends = convs[:1] + gemms[-1:]
    variants = {
        "QDQ U8S8, 7-bit weights (the exporter's default)": dict(quant_format=QuantFormat.QDQ, **u8),
        "QOperator U8S8": dict(quant_format=QuantFormat.QOperator, **u8),
        "QDQ U8S8, first conv + last layer float": dict(quant_format=QuantFormat.QDQ, nodes_to_exclude=ends, **u8),
        "QOperator U8S8, first conv + last layer float": dict(quant_format=QuantFormat.QOperator,
                                                              nodes_to_exclude=ends, **u8),
        "QDQ U8S8, 8-bit weights (the default before 2026-11-30)": dict(quant_format=QuantFormat.QDQ,
                                                                        activation_type=QuantType.QUInt8),
        "QDQ S8S8 symmetric, 8-bit weights": dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                                                  extra_options={"ActivationSymmetric": True}),
    }
    paths = {"fp32": src}
    for label, kw in variants.items():
        out = tmp / (label.replace(" ", "_").replace(",", "").replace("+", "").replace("(", "").replace(")", "")
                     .replace("'", "") + ".onnx")
        quantize_static(str(pre), str(out), Reader(), per_channel=True, weight_type=QuantType.QInt8, **kw)
        paths[label] = out
    sessions = {}
    for label, p in paths.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sessions[label] = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    xs = [calibration[i][None].astype(np.float32) for i in range(min(16, len(calibration)))]
    ref = [sessions["fp32"].run(None, {name: x})[0] for x in xs]
    times: dict[str, list[float]] = {k: [] for k in sessions}
    labels = list(sessions)
    for r in range(20 + rounds):
        k = r % len(labels)
        for label in labels[k:] + labels[:k]:
            x = xs[r % len(xs)]
            t0 = time.perf_counter()
            sessions[label].run(None, {name: x})
            if r >= 20:
                times[label].append((time.perf_counter() - t0) * 1000)
    base = statistics.median(times["fp32"])
    rows = []
    for label in labels:
        outs = [sessions[label].run(None, {name: x})[0] for x in xs]
        cos = min(float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(outs, ref))
        p = statistics.median(times[label])
        rows.append({"variant": label, "p50_ms": round(p, 4), "speedup_over_fp32": round(base / p, 3),
                     "bytes": paths[label].stat().st_size, "worst_cosine_to_fp32": round(cos, 5)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--ort-variants", action="store_true")
    ap.add_argument("--ort-rounds", type=int, default=300)
    ap.add_argument("--calibration", default=None, help=".npy of float model inputs (N, C, H, W)")
    args = ap.parse_args(argv)

    bundle, out = Path(args.bundle), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say(f"interleaved: every artifact of {bundle}, {args.rounds} rounds x {args.per_round} calls")
    doc: dict[str, Any] = {"command": "EDGECART_THREADS=1 .venv/bin/python scripts/compress_int8_speed.py "
                                      + " ".join(sys.argv[1:] if argv is None else argv),
                           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                           "note": "measured on a shared, loaded 2-core machine: compare only as ratios within "
                                   "this run; 1 thread, batch 1, Session.run through each harness worker",
                           **bundle_speed(bundle, args.rounds, args.per_round)}
    if args.ort_variants:
        calib = np.load(args.calibration) if args.calibration else _golden(bundle)
        say(f"ONNX Runtime variants: {len(calib)} calibration inputs, {args.ort_rounds} interleaved rounds")
        doc["ort_variants"] = ort_variants(bundle, calib, args.ort_rounds)
    (out / "int8_speed.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# int8 over fp32: {doc['bundle']}", "", f"Command: `{doc['command']}`", "", f"_{doc['note']}._", "",
             "| artifact | format | precision | recipe | p50 ms | bytes | gzip bytes | map@10 | recall@1 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        q = r["quality"]
        lines.append(f"| {r['artifact']} | {r['format']} | {r['precision']} | {r['recipe'] or ''} | "
                     f"{r['p50_ms'] or float('nan'):.4f} | {r['bytes']:,} | {r['gzip_bytes']:,} | "
                     f"{q.get('map@10', float('nan')):.4f} | {q.get('recall@1', float('nan')):.4f} |")
    lines += ["", "int8 speed-up over fp32 (p50 ratio, 95% block-bootstrap interval over rounds):", ""]
    for fmt, s in doc["int8_speedup_over_fp32"].items():
        lines.append(f"- {fmt}: **{s['ratio']:.2f}x** [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]")
    if "ort_variants" in doc:
        lines += ["", "ONNX Runtime int8 variants of the same fp32 .onnx (plain sessions, 1 thread, interleaved):",
                  "", "| variant | p50 ms | speed-up over fp32 | bytes | worst cosine to fp32 |",
                  "|---|---|---|---|---|"]
        for r in doc["ort_variants"]:
            lines.append(f"| {r['variant']} | {r['p50_ms']:.4f} | {r['speedup_over_fp32']:.2f}x | {r['bytes']:,} | "
                         f"{r['worst_cosine_to_fp32']:.5f} |")
    (out / "int8_speed.md").write_text("\n".join(lines) + "\n")
    say(f"wrote {out / 'int8_speed.md'}")
    return 0


def _golden(bundle: Path) -> np.ndarray:
    from edgecart.runtime import open_bundle

    b = open_bundle(bundle)
    name = b.manifest.inputs[0].name
    p = b.path(f"golden/input.{name}.npy")
    if not p.exists():
        raise SystemExit(f"no golden/input.{name}.npy in the bundle: pass --calibration NPY")
    return np.load(p).reshape((-1, *b.manifest.inputs[0].shape[1:])).astype(np.float32)


if __name__ == "__main__":
    sys.exit(main())
