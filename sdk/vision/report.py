"""The image-search build's report: ``summary.json`` (everything), ``summary.md`` (tables, targets, choices, time,
skipped pictures) and ``summary.png`` (quality against single-image latency, marker area = file size)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def summarise(ctx: Any, rows: list[dict[str, Any]], arts: list[dict[str, Any]], choice: dict[str, Any],
              history: list[dict[str, float]], gates: dict[str, Any], bundle: Path, threads: int,
              seeds: list[dict[str, Any]], teacher_ms: float) -> dict[str, Any]:
    from .metrics import paired_diff_ci, paired_ratio_ci

    data, cfg, ev = ctx.data, ctx.cfg, ctx.eval
    teacher = ev["teacher|catalog"]["instance"]
    comparisons: dict[str, Any] = {}
    base = ev["imagenet|catalog"]["instance"]
    comparisons["fine-tuned teacher minus ImageNet-only teacher (test, 95% CI)"] = {
        m: _triple(paired_diff_ci(teacher[m], base[m])) for m in ("recall@1", "recall@5", "map@10", "map")}
    targets: dict[str, Any] = {}
    t_params = next(r["params"] for r in rows if r["model"].startswith("teacher"))
    s_params = next(r["params"] for r in rows if r["model"].startswith(
        "distilled" if choice["student"].startswith("distilled") else "label-only"))
    targets["student params / teacher params (<= 0.10)"] = {"value": round(s_params / t_params, 4),
                                                            "reached": s_params <= 0.1 * t_params}
    for a in arts:
        if a["precision"] != "int8":
            continue
        pq = ev[f"artifact:{a['artifact']}"]["instance"]
        for m in ("recall@1", "map"):
            r = paired_ratio_ci(pq[m], teacher[m])
            targets[f"{a['artifact']} {m} / teacher {m} (>= 0.90)"] = {"value": _triple(r), "reached": r[0] >= 0.9}
    diff = comparisons["fine-tuned teacher minus ImageNet-only teacher (test, 95% CI)"]
    targets["fine-tuned beats ImageNet-only (R@1 and mAP, CI above 0)"] = {
        "value": {m: diff[m] for m in ("recall@1", "map")},
        "reached": bool(diff["recall@1"][1] > 0 and diff["map"][1] > 0)}
    if seeds:
        per = [(s["val"]["distilled"]["map@10"] - s["val"]["labels"]["map@10"],
                s["val"]["distilled"]["recall@10"] - s["val"]["labels"]["recall@10"]) for s in seeds]
        targets[f"distilled beats label-only on validation mAP@10 and R@10 ({len(seeds)} seed(s))"] = {
            "value": {"mean mAP@10 diff": float(np.mean([p[0] for p in per])),
                      "mean R@10 diff": float(np.mean([p[1] for p in per])), "per seed": per},
            "reached": all(p[0] > 0 and p[1] >= 0 for p in per)}
    else:
        targets["distilled beats label-only"] = {"value": "not measured in this build (student.baseline = false)",
                                                 "reached": False}
    shipped_p10 = {a["artifact"]: a["precision@10"] for a in arts}
    per_label = np.bincount(data.catalog.labels)
    if np.median(per_label[per_label > 0]) >= 10:  # P@10 is meaningful only with >= 10 relevant catalog items
        targets["precision@10 of the shipped artifacts on held-out photos (>= 0.6 for user catalogs)"] = {
            "value": shipped_p10, "reached": bool(shipped_p10) and min(shipped_p10.values()) >= 0.6}
    return {
        "name": data.name, "hit": data.hit, "config": cfg.to_dict(), "threads": threads,
        "data": {"train": len(data.train), "val": len(data.val), "test": len(data.test), "catalog": len(data.catalog),
                 "shipped_catalog": len(data.shipped),
                 "extra_catalogs": {k: len(v) for k, v in data.extra_catalogs.items()},
                 "skipped": [{"path": p, "reason": r} for p, r in data.skipped]},
        "teacher_history": history, "pick": choice["name"], "pick_validation": choice["validation"],
        "models": rows, "artifacts": arts, "seeds": seeds, "comparisons": comparisons, "targets": targets,
        "gates": gates, "teacher_eager_p50_ms": teacher_ms, "timings": ctx.timings, "cached": ctx.cached,
        "bundle": str(bundle),
    }


def _triple(t: tuple[float, float, float]) -> list[float]:
    return [round(float(x), 4) for x in t]


def markdown(s: dict[str, Any]) -> str:
    d = s["data"]
    lines = [f"# Image search build: {s['name']}", "",
             f"{d['train']} training pictures; {d['val']} validation and {d['test']} test queries; evaluation catalog "
             f"{d['catalog']} items, shipped catalog {d['shipped_catalog']} items; hit = {s['hit']}. Choices on "
             f"validation, figures on test. {s['threads']} torch thread(s).", ""]
    if d["skipped"]:
        lines += [f"**Skipped {len(d['skipped'])} unreadable picture(s):**", ""]
        lines += [f"- {x['path']}: {x['reason']}" for x in d["skipped"]] + [""]
    lines += ["## Models (eager, test queries)", "",
              "| model | catalog | params | R@1 | R@5 | R@10 | P@10 | mAP@10 | mAP | coarse R@1 | coarse P@10 |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in s["models"]:
        c = r.get("coarse") or {}
        lines.append(f"| {r['model']} | {r['catalog']} | {r['params']:,} | {r['recall@1']:.4f} | {r['recall@5']:.4f} | "
                     f"{r['recall@10']:.4f} | {r['precision@10']:.4f} | {r['map@10']:.4f} | {r['map']:.4f} | "
                     + (f"{c['recall@1']:.4f} | {c['precision@10']:.4f} |" if c else "- | - |"))
    lines += ["", "## Artifacts through the runtime (test queries, int8 catalog)", "",
              "| artifact | backend | bytes | R@1 | R@5 | mAP@10 | mAP | P@10 | coarse R@1 | p50 ms (1 image) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for a in s["artifacts"]:
        c = a.get("coarse") or {}
        name = a["artifact"] + (f" [{a['recipe']}]" if a.get("recipe") else "")
        lines.append(f"| {name} | {a['backend']} | {a['bytes']:,} | {a['recall@1']:.4f} | {a['recall@5']:.4f} | "
                     f"{a['map@10']:.4f} | {a['map']:.4f} | {a['precision@10']:.4f} | "
                     + (f"{c['recall@1']:.4f}" if c else "-") + f" | {a['p50_ms']:.3f} |")
    lines += ["", f"Teacher, eager torch, 1 picture: p50 {s['teacher_eager_p50_ms']:.2f} ms (reference point).", "",
              "## Comparisons (paired bootstrap over test queries, 95% intervals)", ""]
    for k, v in s["comparisons"].items():
        lines.append(f"- {k}: " + ", ".join(f"{m} {x[0]:+.4f} [{x[1]:+.4f}, {x[2]:+.4f}]" for m, x in v.items()))
    if s["seeds"]:
        lines += ["", "## Distilled vs label-only students, per seed (each searching its own catalog)", "",
                  "| seed | val mAP@10 dist / labels | val R@10 dist / labels | test mAP@10 diff [95% CI] | "
                  "test R@10 diff [95% CI] |", "|---:|---|---|---|---|"]
        for r in s["seeds"]:
            v, t = r["val"], r["test_diff"]
            lines.append(f"| {r['seed']} | {v['distilled']['map@10']:.4f} / {v['labels']['map@10']:.4f} | "
                         f"{v['distilled']['recall@10']:.4f} / {v['labels']['recall@10']:.4f} | "
                         f"{t['map@10'][0]:+.4f} [{t['map@10'][1]:+.4f}, {t['map@10'][2]:+.4f}] | "
                         f"{t['recall@10'][0]:+.4f} [{t['recall@10'][1]:+.4f}, {t['recall@10'][2]:+.4f}] |")
    lines += ["", "## Targets", ""]
    for k, v in s["targets"].items():
        lines.append(f"- {k}: {json.dumps(v['value'])} — **{'reached' if v['reached'] else 'NOT reached'}**")
    lines += ["", "## Choices (validation queries)", "",
              "- teacher epochs: " + ", ".join(f"{h['epoch']}: val mAP@10 {h.get('val', float('nan')):.4f}"
                                               for h in s["teacher_history"]),
              f"- exported: {s['pick']} — " + ", ".join(f"{k}: mAP@10 {v['map@10']:.4f}"
                                                       for k, v in s["pick_validation"].items())]
    for fmt, g in (s["gates"] or {}).items():
        chosen = (g or {}).get("chosen")
        lines.append(f"- int8 {fmt}: " + (f"recipe {chosen} (gate: {g['metric']} within {g['max_drop']})" if chosen
                                          else "no recipe passed the gate; fp32 only"))
    lines += ["", "## Time", "", "- " + ", ".join(f"{k} {v:.0f} s" for k, v in s["timings"].items())
              + "; cached: " + (", ".join(f"{k}={v}" for k, v in s["cached"].items()) or "nothing"), ""]
    return "\n".join(lines)


def plot(s: dict[str, Any], path: Path) -> None:
    """Instance R@1 against p50 latency (log scale); marker area proportional to the artifact's bytes."""
    from edgecart.plots import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.5))
    arts = s["artifacts"]
    if arts:
        big = max(a["bytes"] for a in arts)
        offsets = [(6, 8), (6, -18), (-70, 8), (-70, -18), (6, 22), (-70, 22)]  # keep close points' labels apart
        for i, a in enumerate(arts):
            ax.scatter(a["p50_ms"], a["recall@1"], s=40 + 400 * a["bytes"] / big, alpha=0.6,
                       marker="o" if a["precision"] == "fp32" else "s", label=f"{a['format']} {a['precision']}")
            ax.annotate(f"{a['format']} {a['precision']}, {a['bytes'] / 1e3:.0f} KB", (a["p50_ms"], a["recall@1"]),
                        fontsize=6, xytext=offsets[i % len(offsets)], textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "lw": 0.4})
    t = next((r for r in s["models"] if r["model"].startswith("teacher") and r["catalog"] == "evaluation catalog"),
             None)
    if t is not None:
        ax.scatter(s["teacher_eager_p50_ms"], t["recall@1"], marker="*", s=200, color="black")
        ax.annotate(f"teacher (eager torch)\n{t['params'] / 1e6:.1f}M params", (s["teacher_eager_p50_ms"],
                    t["recall@1"]), fontsize=7, xytext=(4, -14), textcoords="offset points")
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.2)
    ax.set_xlabel("p50 latency, 1 picture (ms, log scale)")
    ax.set_ylabel("instance R@1 (test queries)")
    ax.set_title(f"{s['name']}: quality vs latency vs size (marker area ~ bytes)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(s: dict[str, Any], out: Path) -> None:
    out = Path(out)
    (out / "summary.json").write_text(json.dumps(s, indent=2, default=_default) + "\n")
    (out / "summary.md").write_text(markdown(s))
    plot(s, out / "summary.png")


def _default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


__all__ = ["markdown", "plot", "summarise", "write"]
