"""Does QAT recover what static PTQ loses? On a demo model, the validation quality figure of the float model, of
static int8 PTQ (per-tensor and per-channel) and of QAT (``prepare_qat_pt2e`` + a short fine-tune matching the float
model's outputs), all evaluated in torch with the PT2E XNNPACK numerics that the ExecuTorch and LiteRT exports use
(``edgecart.compress.quantize``), batch 1.

    EDGECART_THREADS=1 .venv/bin/python scripts/compress_qat.py --model lite0-teacher --cache /work/main/out/cache \\
        --out benchmarks/results/compression/lite0-teacher-qat --steps 300

Recovered share = (QAT - PTQ) / (float - PTQ) for the same granularity; the issue's target: >= 0.5 wherever PTQ
lost more than 1 point.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _subject(model: str, cache: Path) -> Any:
    spec = importlib.util.spec_from_file_location("compress_real_models", Path(__file__).with_name(
        "compress_real_models.py"))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = mod  # type: ignore[union-attr]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    if model == "sasrec-teacher":
        return mod._sasrec(cache)
    return mod._grocery(model.split("-")[1], cache)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=("lite0-teacher", "grocery-student", "sasrec-teacher"))
    ap.add_argument("--cache", default="out/cache")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--granularity", default="per-tensor,per-channel")
    args = ap.parse_args(argv)

    import torch
    from edgecart.compress import QAT, StaticInt8, quantize
    from edgecart.threads import set_torch_threads

    set_torch_threads(1)
    say = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)  # noqa: E731
    subject = _subject(args.model, Path(args.cache))
    model = subject.exportable(subject.model)
    example = subject.example_of(subject.model) if hasattr(subject, "example_of") else subject.example

    class One:
        """Batch-1 calls of an exported (static-shape) int8 graph, for the batched quality functions (a PT2E graph
        refuses ``.eval()``: it is already in inference form)."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def eval(self) -> One:
            return self

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.inner(x[i:i + 1]) for i in range(len(x))])

    def quality(m: Any) -> dict[str, float]:
        if hasattr(subject, "example_of"):  # SASRec: the session-style evaluation (rows in, user vector out)
            class S:
                def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
                    with torch.no_grad():
                        return {"u": m(torch.from_numpy(x)).numpy()}
            return subject.quality_session(S(), subject.model)
        return subject.quality_torch(One(m) if m is not model else m)

    key = subject.key
    doc: dict[str, Any] = {"model": subject.describe, "key": key, "command": "EDGECART_THREADS=1 .venv/bin/python "
                           "scripts/compress_qat.py " + " ".join(sys.argv[1:] if argv is None else argv),
                           "calibration": f"{len(subject.calibration)} training inputs (batch 1); QAT fine-tunes on "
                                          "the same inputs, matching the float model's outputs (MSE)",
                           "rows": []}
    t0 = time.time()
    fq = quality(model)
    doc["rows"].append({"recipe": "float", **fq, "seconds": round(time.time() - t0, 1)})
    say(f"float: {fq}")
    for gran in (g for g in args.granularity.split(",") if g):
        pc = gran == "per-channel"
        t0 = time.time()
        ptq = quality(quantize(model, StaticInt8(per_channel=pc), example, subject.calibration))
        doc["rows"].append({"recipe": f"static int8 {gran} (PTQ)", **ptq, "seconds": round(time.time() - t0, 1)})
        say(f"PTQ {gran}: {ptq}")
        t0 = time.time()
        qat = quality(quantize(model, QAT(per_channel=pc, steps=args.steps, lr=args.lr), example,
                               subject.calibration))
        lost, back = fq[key] - ptq[key], qat[key] - ptq[key]
        doc["rows"].append({"recipe": f"QAT int8 {gran} ({args.steps} steps, lr {args.lr})", **qat,
                            "seconds": round(time.time() - t0, 1),
                            "ptq_loss_points": round(100 * lost, 2),
                            "recovered_share": round(back / lost, 3) if lost > 0 else None})
        say(f"QAT {gran}: {qat} (PTQ lost {100 * lost:.2f} points, QAT recovered {back / lost if lost > 0 else 0:.2f})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "qat.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# QAT vs static PTQ: {args.model}", "", f"Command: `{doc['command']}`", "", f"Model: {doc['model']}.",
             "", f"Quality: validation {key}, torch with PT2E XNNPACK int8 numerics (what the .pte/.tflite run). "
             f"Calibration: {doc['calibration']}.", "",
             f"| recipe | {key} | other | PTQ loss (points) | QAT recovered share | seconds |",
             "|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        other = ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k not in ("recipe", key, "seconds",
                                                                            "ptq_loss_points", "recovered_share"))
        lines.append(f"| {r['recipe']} | {r[key]:.4f} | {other} | {r.get('ptq_loss_points', '')} | "
                     f"{r.get('recovered_share', '')} | {r['seconds']} |")
    (out / "qat.md").write_text("\n".join(lines) + "\n")
    say(f"wrote {out / 'qat.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
