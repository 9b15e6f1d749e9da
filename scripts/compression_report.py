"""Per-step compression report of the image-search student (small version): train a MobileStudent on Fashion-MNIST
briefly, then prune (structured, with distillation recovery from the unpruned model; magnitude), quantize (int8
behind the gate), export every step to ExecuTorch / ONNX / LiteRT, and measure params, non-zero params, MACs, file
size (raw, gzip), p50 latency per backend (interleaved, 1 thread) and recall@1 on a validation split.

    EDGECART_THREADS=1 .venv/bin/python scripts/compression_report.py --out benchmarks/results/compression

Validation split: 2,000 images held out of the Fashion-MNIST *training* set (1,500 gallery, 500 queries); the test
set is not touched. Every figure is measured here; latencies on a shared machine are comparable only within one run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/compression")
    ap.add_argument("--train", type=int, default=12000, help="training images (small version)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=40, help="interleaved latency rounds")
    ap.add_argument("--formats", default="executorch,onnx,tflite")
    args = ap.parse_args(argv)

    import torch
    from edgecart.compress import (
        Cosine,
        DistillConfig,
        DistillData,
        MagnitudePruning,
        QuantizeStage,
        Recipe,
        StaticInt8,
        StructuredPruning,
        distill,
        export_compressed,
        prune,
    )
    from edgecart.compress.report import StepRow, artifact_sizes, interleaved_p50, model_stats, write_report
    from edgecart.data.fashion_mnist import load_fashion_mnist
    from edgecart.models.vision import MobileStudent
    from edgecart.runtime import load, open_bundle
    from edgecart.threads import set_torch_threads
    from edgecart.vision.metrics import retrieval

    set_torch_threads(1)
    torch.manual_seed(0)
    out = Path(args.out)
    work = out / "bundles"
    formats = tuple(f for f in args.formats.split(",") if f)
    say = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)  # noqa: E731

    train, _test = load_fashion_mnist()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train))
    val_idx, tr_idx = order[:2000], order[2000:2000 + args.train]
    to_x = lambda imgs: torch.from_numpy(((imgs.astype(np.float32) / 255 - 0.5) / 0.5)[:, None])  # noqa: E731
    x_tr, y_tr = to_x(train.images[tr_idx]), torch.from_numpy(train.labels[tr_idx].astype(np.int64))
    x_val, y_val = to_x(train.images[val_idx]), train.labels[val_idx]
    gal, qry = slice(0, 1500), slice(1500, 2000)

    def quality_torch(model) -> dict[str, float]:
        with torch.no_grad():
            emb = torch.cat([model.eval()(x_val[i:i + 500]) for i in range(0, 2000, 500)]).numpy()
        r = retrieval(emb[qry], y_val[qry], emb[gal], y_val[gal])
        return {"recall@1": r.recall_at_1, "recall@10": r.recall_at_10}

    def quality_session(session) -> dict[str, float]:
        xs = x_val.numpy()
        emb = np.concatenate([session.run(np.ascontiguousarray(xs[i:i + 1]))["embedding"] for i in range(2000)])
        r = retrieval(emb[qry], y_val[qry], emb[gal], y_val[gal])
        return {"recall@1": r.recall_at_1, "recall@10": r.recall_at_10}

    # 1. the float student, trained briefly with labels (cosine classifier)
    say(f"training MobileStudent(width={args.width}) on {len(tr_idx)} images, {args.epochs} epochs")
    model = MobileStudent(dim=64, width=args.width)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    t0 = time.time()
    for _epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_tr))
        for i in range(0, len(perm), 128):
            b = perm[i:i + 128]
            loss = torch.nn.functional.cross_entropy(model.classifier(model(x_tr[b])), y_tr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    train_s = time.time() - t0
    say(f"trained in {train_s:.0f} s: {quality_torch(model)}")

    example = (x_val[:1].clone(),)
    calib = [(x_tr[i:i + 1].clone(),) for i in range(64)]
    golden = [(x_val[i:i + 1].clone(),) for i in range(4)]
    int8 = Recipe(name="int8", quantize=QuantizeStage(recipes=(StaticInt8(),), gate_metric="recall@1",
                                                      max_drop=0.01, rescue=False))

    def recover(student, teacher, epochs: int = 1):
        with torch.no_grad():
            t_emb = torch.cat([teacher.eval()(x_tr[i:i + 512]) for i in range(0, len(x_tr), 512)])
        cfg = DistillConfig(losses=(Cosine(),), epochs=epochs, batch_size=128, lr=2e-3)
        distill(student, None, DistillData(inputs=x_tr, teacher_outputs=t_emb), cfg, progress=False)
        return student.eval()

    steps = [("baseline", model, "", True)]
    for ratio in (0.25, 0.5):
        p = prune(model, StructuredPruning(ratio=ratio), example)
        steps.append((f"structured-{ratio}", p, "channel pruning, no recovery", False))
        say(f"distillation recovery for structured-{ratio}")
        r = recover(prune(model, StructuredPruning(ratio=ratio), example), model)
        steps.append((f"structured-{ratio}+distill", r, "channel pruning, 1 epoch of embedding distillation "
                      "(cosine) from the unpruned model", ratio == 0.5))
    for amount in (0.5, 0.8):
        steps.append((f"magnitude-{amount}", prune(model, MagnitudePruning(amount=amount), example),
                      "unstructured zeros: same dense shapes, no fine-tune", False))

    rows, bundles = [], {}
    ref_quality = quality_torch(model)
    for step, m, notes, with_int8 in steps:
        say(f"exporting {step}")
        bundle = work / step
        q_eval = {"recall@1": quality_torch(m)["recall@1"]}
        manifest = export_compressed(
            m, example, out=bundle, formats=formats, recipe=int8 if with_int8 else None, calibration=calib,
            golden_inputs=golden, name="student", evaluate=quality_session if with_int8 else None,
            reference=q_eval if with_int8 else None, overwrite=True, progress=say)
        stats = model_stats(m, example)
        arts = artifact_sizes(bundle)
        for a in manifest.artifacts:
            arts[a.name]["quality"] = dict(a.quality) if a.quality else None
        rows.append(StepRow("image-student", step, stats["params"], stats["nonzero_params"], stats["macs"],
                            quality_torch(m), arts, notes))
        bundles[step] = bundle
    say("measuring artifact quality through the runtime")
    for row in rows:
        for name, a in row.artifacts.items():
            if not a.get("quality"):
                from edgecart.compress.report import BACKEND_OF

                s = load(bundles[row.step], BACKEND_OF[a["format"]], artifact=name, threads=1)
                a["quality"] = quality_session(s)
    say(f"interleaved latency: {args.rounds} rounds over every artifact")
    inputs = [np.ascontiguousarray(x_val[i:i + 1].numpy()) for i in range(8)]
    p50 = interleaved_p50([bundles[r.step] for r in rows], inputs, rounds=args.rounds)
    for row in rows:
        for name in row.artifacts:
            row.artifacts[name]["p50_ms"] = p50[(str(bundles[row.step]), name)]
    ctx = {"model": f"MobileStudent(width={args.width}, dim=64) trained {args.epochs} epochs on {len(tr_idx)} "
                    f"Fashion-MNIST images in {train_s:.0f} s (a small version of the demo student)",
           "validation": "2,000 held-out training images: 1,500 gallery, 500 queries; recall@1 of exact cosine search",
           "latency": f"p50 of {args.rounds} interleaved rounds, 1 thread, batch 1, through edgecart.runtime; "
                      "measured on a shared, loaded 2-core machine: compare ratios within this run only",
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "float_reference": ref_quality,
           "int8_gate": "recall@1 may drop by at most 0.01 (through the runtime, on the validation split)"}
    for b in bundles.values():
        m = open_bundle(b).manifest
        rej = m.quality.get("int8_rejected")
        if rej:
            ctx[f"int8 rejected in {b.name}"] = {k: v["attempts"][-1]["reason"] for k, v in rej.items()}
    paths = write_report(rows, out, title="Compression steps: image-search student (small version)",
                         quality_key="recall@1", context=ctx)
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # bundles are rebuilt by the script; only the figures are kept
    say(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
