"""Why is int8 .onnx not faster than fp32 on the image student? Variants of ONNX Runtime int8 for the same
MobileStudent, each timed against fp32 in one interleaved loop (1 intra-op thread), with the node types of the
graph ONNX Runtime actually runs (``SessionOptions.optimized_model_filepath``).

    EDGECART_THREADS=1 .venv/bin/python scripts/ort_int8_probe.py --out benchmarks/results/compression
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/compression")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import torch
    from edgecart.models.vision import MobileStudent
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = MobileStudent(dim=64, width=args.width).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    tmp = Path(tempfile.mkdtemp(prefix="ortq-"))
    x = torch.randn(1, 1, 28, 28)
    prog = torch.onnx.export(model, (x,), dynamo=True, external_data=False, input_names=["image"],
                             output_names=["embedding"], verbose=False)
    fp32 = tmp / "fp32.onnx"
    prog.save(str(fp32), external_data=False)
    pre = tmp / "pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 1, 28, 28)).astype(np.float32) for _ in range(32)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {"image": b}

    convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
    gemms = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type in ("Gemm", "MatMul")]
    variants = {
        "qdq-s8s8-per-channel": dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                                     weight_type=QuantType.QInt8, per_channel=True,
                                     extra_options={"ActivationSymmetric": True}),
        "qdq-u8s8-per-channel": dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                     weight_type=QuantType.QInt8, per_channel=True),
        "qdq-u8s8-reduce-range": dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                      weight_type=QuantType.QInt8, per_channel=True, reduce_range=True),
        "qoperator-u8s8": dict(quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8,
                               weight_type=QuantType.QInt8, per_channel=True),
        "qoperator-s8s8": dict(quant_format=QuantFormat.QOperator, activation_type=QuantType.QInt8,
                               weight_type=QuantType.QInt8, per_channel=True),
        "qdq-u8s8-first-last-float": dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                          weight_type=QuantType.QInt8, per_channel=True,
                                          nodes_to_exclude=[convs[0], *gemms]),
        "qdq-u8s8-convs-only": dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                    weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["Conv"]),
    }
    paths = {"fp32": fp32}
    for name, kw in variants.items():
        p = tmp / f"{name}.onnx"
        quantize_static(str(pre), str(p), Reader(), calibrate_method=CalibrationMethod.MinMax, **kw)
        paths[name] = p

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    sessions, graphs = {}, {}
    for name, p in paths.items():
        for lvl_name, lvl in levels.items():
            if lvl_name == "basic" and name != "fp32" and name != "qdq-u8s8-per-channel":
                continue
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            so.graph_optimization_level = lvl
            opt_path = tmp / f"{name}.{lvl_name}.opt.onnx"
            so.optimized_model_filepath = str(opt_path)
            sessions[(name, lvl_name)] = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
            graphs[(name, lvl_name)] = dict(collections.Counter(n.op_type for n in onnx.load(str(opt_path)).graph.node))
    ref = sessions[("fp32", "all")].run(None, {"image": calib[0]})[0]
    times = {k: [] for k in sessions}
    xs = [rng.standard_normal((1, 1, 28, 28)).astype(np.float32) for _ in range(8)]
    for r in range(args.rounds + 20):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"image": xs[r % 8]})
            if r >= 20:
                times[k].append((time.perf_counter() - t0) * 1000)
    base = statistics.median(times[("fp32", "all")])
    rows = []
    for k, v in times.items():
        out = sessions[k].run(None, {"image": calib[0]})[0]
        cos = float((out * ref).sum() / np.linalg.norm(out) / np.linalg.norm(ref))
        rows.append({"variant": k[0], "opt_level": k[1], "p50_ms": statistics.median(v),
                     "speedup_vs_fp32_all": base / statistics.median(v), "cosine_to_fp32": cos,
                     "bytes": paths[k[0]].stat().st_size, "optimized_graph_ops": graphs[k]})
    rows.sort(key=lambda r: r["p50_ms"])
    import platform

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
        cpu += " | vnni: " + ("yes" if "vnni" in flags else "no") + ", avx512: " + (
            "yes" if "avx512f" in flags else "no")
    except (OSError, StopIteration):
        pass
    doc = {"model": f"MobileStudent(width={args.width}, dim=64), 28x28 grayscale, batch 1",
           "rounds": args.rounds, "threads": 1, "cpu": cpu or platform.processor(), "onnxruntime": ort.__version__,
           "note": "measured on a shared, loaded 2-core machine; interleaved rounds, medians; compare ratios only",
           "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ort_int8.json").write_text(json.dumps(doc, indent=2) + "\n")
    for r in rows:
        print(f"{r['variant']:28s} {r['opt_level']:9s} p50 {r['p50_ms']:.4f} ms  x{r['speedup_vs_fp32_all']:.2f}  "
              f"cos {r['cosine_to_fp32']:.4f}  ops {r['optimized_graph_ops']}")
    print(cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
