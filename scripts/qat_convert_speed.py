"""How long one QAT conversion (``convert_pt2e`` of a fake-quantized graph) takes with torchao's own pattern
exporter and with the pattern graphs reused (``edgecart.exporters.calibrate.convert_qat``), on the demo's image
models. The QAT fine-tune converts once per validation step and once at the end, so this is its per-step overhead.

For each model (random weights: the conversion's cost does not depend on them), one dynamic-batch graph is prepared
for per-channel QAT (XNNPACK numerics) and its observers primed; then, in one process, interleaved:
torchao's ``convert_pt2e`` (``--uncached`` times), ``convert_qat`` once with an empty pattern cache (it fills it),
and ``convert_qat`` ``--repeats`` times with the cache full. Every conversion must give the same graph code and
bit-identical outputs as torchao's own; the script stops otherwise.

    EDGECART_THREADS=1 taskset -c 0 .venv/bin/python scripts/qat_convert_speed.py \\
        --out benchmarks/results/compression/qat-convert-epyc
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _models() -> dict[str, tuple[Any, Any]]:
    import torch
    from edgecart.models.vision import LiteTeacher, MobileStudent
    from edgecart.vision.demo import DEMO_CONFIG

    t, s = DEMO_CONFIG.teacher, DEMO_CONFIG.student
    torch.manual_seed(0)
    return {
        f"lite0-teacher ({t.size}x{t.size})": (LiteTeacher(t.dim, 10, t.size, pretrained=False).eval(),
                                               torch.randn(4, 3, t.size, t.size)),
        f"mobile-student width {s.width} ({s.size}x{s.size})": (
            MobileStudent(t.dim, 10, size=s.size, width=s.width).eval(), torch.randn(4, 3, s.size, s.size)),
    }


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--uncached", type=int, default=2, help="torchao's own conversions per model")
    ap.add_argument("--repeats", type=int, default=3, help="conversions with the pattern cache full, per model")
    args = ap.parse_args(argv)

    import torch
    from edgecart.exporters import _pt2e_patterns
    from edgecart.exporters.calibrate import convert_qat, export_batched
    from edgecart.threads import set_torch_threads
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    threads = set_torch_threads()
    rows = []
    for name, (model, x) in _models().items():
        print(f"{name}: preparing", file=sys.stderr, flush=True)
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                                                    is_qat=True))
        prepared = prepare_qat_pt2e(export_batched(model, (x[:1],)), quantizer)
        with torch.no_grad():
            prepared(x)
        _pt2e_patterns._GRAPHS.clear()
        with torch.no_grad():
            plain_s, reference = [], None
            for _ in range(args.uncached):
                s, reference = _timed(convert_pt2e, copy.deepcopy(prepared), fold_quantize=False)
                plain_s.append(s)
            want = reference(x)
        fill_s, first = _timed(convert_qat, copy.deepcopy(prepared))
        cached_s, outs = [], [first]
        for _ in range(args.repeats):
            s, got = _timed(convert_qat, copy.deepcopy(prepared))
            cached_s.append(s)
            outs.append(got)
        with torch.no_grad():
            same = all(o.code == reference.code and torch.equal(o(x), want) for o in outs)
        if not same:
            raise SystemExit(f"{name}: a conversion with reused pattern graphs differs from torchao's own")
        row = {"model": name, "params": sum(p.numel() for p in model.parameters()),
               "torchao_s": [round(v, 2) for v in plain_s], "first_reuse_s": round(fill_s, 2),
               "reused_s": [round(v, 2) for v in cached_s], "pattern_graphs": len(_pt2e_patterns._GRAPHS),
               "identical_graph_and_outputs": same}
        row["speedup_median"] = round(statistics.median(plain_s) / statistics.median(cached_s), 1)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = "EDGECART_THREADS=1 .venv/bin/python scripts/qat_convert_speed.py " + " ".join(argv or sys.argv[1:])
    meta = {"command": cmd, "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
            "torch": torch.__version__, "torch_threads": threads, "rows": rows}
    (out / "qat-convert.json").write_text(json.dumps(meta, indent=2) + "\n")
    lines = ["# One QAT conversion: torchao's pattern exporter vs reused pattern graphs", "",
             f"`{cmd}` (torch threads: {threads})", "",
             "| model | params | torchao `convert_pt2e` (s) | first `convert_qat`, cache empty (s) | "
             "`convert_qat`, cache full, median (s) | ratio of medians | same graph and outputs |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {statistics.median(r['torchao_s']):.2f} "
                     f"({', '.join(map(str, r['torchao_s']))}) | {r['first_reuse_s']:.2f} | "
                     f"{statistics.median(r['reused_s']):.2f} ({', '.join(map(str, r['reused_s']))}) | "
                     f"{r['speedup_median']}× | {'yes' if r['identical_graph_and_outputs'] else 'NO'} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
