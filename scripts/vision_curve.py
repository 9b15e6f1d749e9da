"""Quality vs size for the image-search students (issue 12, item 5): distilled and label-only students of several
widths over seeds, with 95% intervals, against their parameters and their p50 latency through the runtime.

    # train each width's students into one build cache (vision_seeds.py; both kinds, seeds 0-2), e.g.
    EDGECART_THREADS=1 .venv/bin/python scripts/vision_seeds.py --cache CACHE --train-only --set student.width=24
    # then the curve, reading every student from that cache (a student not there is trained first)
    EDGECART_THREADS=1 .venv/bin/python scripts/vision_curve.py --cache CACHE --widths 24,32,44,64 \\
        --out results/image_search/curve/curve

Everything else is the grocery demo's configuration (64x64 students, the demo's teacher from the cache, distilled =
the demo's recipe). Each side of a width is the per-query metric averaged over its seeds; intervals are percentile
bootstraps over the queries (2000 resamples): of the mean, of distilled minus label-only (paired), and of distilled
over the teacher (paired). Latency: one picture through the fp32 ONNX export on ONNX Runtime, 1 thread, the seed-0
distilled student of each width and the teacher, median of ``--runs``. Writes ``OUT.json``, ``OUT.md`` and
``OUT.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from vision_seeds import say, setup  # noqa: E402

METRICS = ("map@10", "recall@10", "recall@1")


def onnx_p50_ms(model: Any, runs: int) -> float:
    """p50 ms of one picture (the shape of ``model.io_spec``'s input) through ``model``'s fp32 ONNX export on ONNX
    Runtime (1 thread)."""
    import torch
    from edgecart.exporters.export import export
    from edgecart.runtime import open_bundle
    from edgecart.runtime.backends import backend_for_format
    from edgecart.runtime.session import Session
    from edgecart.vision.evaluate import latency

    model = model.eval()
    x = torch.rand(*model.io_spec.inputs[0].shape)
    with tempfile.TemporaryDirectory() as tmp:
        export(model, (x,), ["onnx"], out=Path(tmp) / "b", io_spec=model.io_spec, name="curve")
        bundle = open_bundle(Path(tmp) / "b")
        art = bundle.manifest.artifacts[0]
        session = Session(bundle, art, backend_for_format(art.format), threads=1)
        return latency(session, x.numpy(), runs).p50_ms


def _mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    from edgecart.vision.metrics import bootstrap_ci

    lo, hi = bootstrap_ci(x)
    return float(x.mean()), lo, hi


def width_row(cache: Path, width: int, seeds: list[int], runs: int,
              data_root: Path | None) -> tuple[dict[str, Any], Any]:
    """One width: both kinds of student over ``seeds``, their quality on validation and test, size and latency; and
    the teacher model (the demo's, read from the cache)."""
    from edgecart.models.vision import embedding_params
    from edgecart.recs.metrics import paired_bootstrap

    _, data, ctx, teacher, temb, _ = setup(cache, {"student": {"width": width}}, data_root)
    splits = {"val": data.val, "test": data.test}
    per_query: dict[str, dict[str, dict[str, list[np.ndarray]]]] = {
        sp: {k: {m: [] for m in METRICS} for k in ("distilled", "labels")} for sp in splits}
    model = None
    for seed in seeds:
        for kind in ("distilled", "labels"):
            st = ctx.student(kind, seed, teacher, temb)
            model = st["model"] if (kind, seed) == ("distilled", seeds[0]) else model
            for sp, q in splits.items():
                scored = ctx._score(st["emb"][sp], q, st["emb"]["catalog"], data.catalog)
                for m in METRICS:
                    per_query[sp][kind][m].append(np.asarray(scored[m], np.float64))
    teacher_q = {sp: ctx._score(temb[sp], q, temb["catalog"], data.catalog) for sp, q in splits.items()}
    row: dict[str, Any] = {"width": width, "params": embedding_params(model), "seeds": seeds,
                           "teacher_params": embedding_params(teacher),
                           "p50_ms": onnx_p50_ms(model, runs),
                           "teacher_p50_ms": None, "cached": dict(ctx.cached)}
    for sp in splits:
        avg = {k: {m: np.mean(per_query[sp][k][m], axis=0) for m in METRICS} for k in ("distilled", "labels")}
        row[sp] = {
            "distilled": {m: _mean_ci(avg["distilled"][m]) for m in METRICS},
            "labels": {m: _mean_ci(avg["labels"][m]) for m in METRICS},
            "per_seed": {k: {m: [float(v.mean()) for v in per_query[sp][k][m]] for m in METRICS}
                         for k in ("distilled", "labels")},
            "distilled_minus_labels": {m: paired_bootstrap(avg["distilled"][m], avg["labels"][m]) for m in METRICS},
            "distilled_over_teacher": {m: paired_bootstrap(avg["distilled"][m],
                                                           np.asarray(teacher_q[sp][m], np.float64))
                                       for m in METRICS},
            "teacher": {m: _mean_ci(np.asarray(teacher_q[sp][m], np.float64)) for m in METRICS},
        }
    return row, teacher


def _ci(c: tuple[float, float, float]) -> str:
    return f"{c[0]:.4f} [{c[1]:.4f}, {c[2]:.4f}]"


def markdown(doc: dict[str, Any]) -> str:
    from edgecart.recs.experiments import fmt_ci

    t = doc["teacher"]
    lines = [f"# Quality vs size, image search (grocery photos -> 81 product pictures), {len(doc['seeds'])} seeds",
             "", f"Teacher (the demo's fine-tuned EfficientNet-Lite0): {t['params'] / 1e6:.2f}M parameters, test "
             f"mAP@10 {_ci(t['test']['map@10'])}, R@10 {_ci(t['test']['recall@10'])}, p50 {t['p50_ms']:.2f} ms. "
             f"Students: {doc['students']}.", ""]
    for sp, title in (("test", "Test (reported)"), ("val", "Validation")):
        lines += [f"## {title}", "",
                  "| width | params (x teacher) | p50 ms | mAP@10 distilled | mAP@10 label-only | mAP@10 distilled - "
                  "label-only | R@10 distilled | R@10 label-only | R@10 distilled - label-only | mAP@10 distilled / "
                  "teacher |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in doc["rows"]:
            s = r[sp]
            lines.append(
                f"| {r['width']} | {r['params'] / 1e3:.0f}k ({r['params'] / t['params']:.3f}) | {r['p50_ms']:.2f} | "
                f"{_ci(s['distilled']['map@10'])} | {_ci(s['labels']['map@10'])} | "
                f"{fmt_ci(s['distilled_minus_labels']['map@10'])} | {_ci(s['distilled']['recall@10'])} | "
                f"{_ci(s['labels']['recall@10'])} | {fmt_ci(s['distilled_minus_labels']['recall@10'])} | "
                f"{fmt_ci(s['distilled_over_teacher']['map@10'], 'ratio')} |")
        lines.append("")
    lines += [doc["intervals"], "", doc["latency"], "", f"Command: `{doc['command']}`", ""]
    return "\n".join(lines)


def plot(doc: dict[str, Any], dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, t = doc["rows"], doc["teacher"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for i, (metric, name) in enumerate((("map@10", "mAP@10"), ("recall@10", "R@10"))):
        for j, (key, xlabel) in enumerate((("params", "parameters"), ("p50_ms", "p50 latency, ms (ONNX Runtime)"))):
            ax = axes[i, j]
            x = [r[key] for r in rows]
            for kind, label, color in (("distilled", "distilled", "C0"), ("labels", "label-only", "C1")):
                ci = np.array([r["test"][kind][metric] for r in rows])
                ax.errorbar(x, ci[:, 0], yerr=[ci[:, 0] - ci[:, 1], ci[:, 2] - ci[:, 0]], marker="o", capsize=3,
                            color=color, label=label)
            tc = t["test"][metric]
            ax.errorbar([t[key]], [tc[0]], yerr=[[tc[0] - tc[1]], [tc[2] - tc[0]]], marker="*", markersize=12,
                        color="k", capsize=3, label="teacher")
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"test {name} (95% CI)")
            ax.grid(alpha=0.3)
            ax.legend()
    fig.suptitle("image search (grocery): quality vs size, students over seeds")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True, help="build cache holding the teacher and the students")
    ap.add_argument("--widths", default="24,32,44,64", help="comma-separated student widths")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs", type=int, default=200, help="timed runs per latency")
    ap.add_argument("--data", type=Path, default=None, help="grocery data root (default: the bundled copy)")
    ap.add_argument("--out", type=Path, required=True, help="output stem (.json, .md and .png are added)")
    args = ap.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not widths or not seeds or min(widths) < 1:
        ap.error("--widths and --seeds need at least one value each; widths >= 1")

    rows = []
    for w in widths:
        say(f"width {w}")
        row, teacher_model = width_row(args.cache, w, seeds, args.runs, args.data)
        rows.append(row)
    first = rows[0]
    from edgecart.vision.demo import DEMO_CONFIG

    teacher = {"params": first["teacher_params"], "p50_ms": onnx_p50_ms(teacher_model, args.runs),
               **{sp: first[sp]["teacher"] for sp in ("val", "test")}}
    for r in rows:
        r["teacher_p50_ms"] = teacher["p50_ms"]
    s = DEMO_CONFIG.student
    doc = {"teacher": teacher, "rows": rows, "seeds": seeds,
           "students": f"{s.size}x{s.size} MobileStudent, {s.epochs} epochs; distilled = the demo's recipe (cosine "
                       f"{s.w_cosine}, relational {s.w_relational}, label {s.w_label}, soft {s.w_soft} at "
                       f"T={s.temperature}, teacher run on the student's augmented view); label-only = the label "
                       f"term alone; seeds {', '.join(map(str, seeds))}",
           "intervals": "Each side: the per-query metric averaged over the seeds; 95% percentile bootstrap over the "
                        "queries (2000 resamples); differences and ratios paired per query.",
           "latency": "p50: one picture through the fp32 ONNX export on ONNX Runtime, 1 thread (the seed-0 distilled "
                      f"student; {args.runs} timed runs), on the shared 2-core machine.",
           "command": "EDGECART_THREADS=1 .venv/bin/python scripts/vision_curve.py " + shlex.join(
               sys.argv[1:] if argv is None else argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    args.out.with_suffix(".md").write_text(markdown(doc))
    plot(doc, args.out.with_suffix(".png"))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
