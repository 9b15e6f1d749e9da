"""Distilled vs label-only image-search students over several seeds, on the grocery demo's configuration.

For each seed the distilled student and the label-only student (same width, epochs, augmentation) are trained (or
read from the build cache) and each searches the catalog it embeds itself. Reported per seed and pooled, on the
validation queries (where choices are made) and on the test queries (reported only): the difference distilled minus
label-only of R@10 and mAP@10 (and R@1). Intervals: paired percentile bootstrap over queries; the pooled interval
resamples the queries once for all seeds (the per-query difference averaged over the seeds), so it measures how the
mean over seeds would move with another draw of query photos.

    EDGECART_THREADS=1 nice -n 10 .venv/bin/python scripts/vision_seeds.py --out results/image_search/NAME \\
        --cache .edgecart-cache [--seeds 0,1,2] [--set student.w_relational=2 ...]

Training is cached per (student config, teacher, kind, seed), so several processes may train disjoint parts
(``--kinds distilled`` / ``--kinds labels`` with ``--train-only``) and a last run writes the report from the cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("recall@10", "map@10", "recall@1")


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, val = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. student.width=44")
        out.setdefault(section, {})[name] = _value(val)
    return out


def pooled_diff(diffs: list[np.ndarray], resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds of the mean per-query difference, with a bootstrap interval resampling the queries (the same
    draw for every seed: the per-query difference is first averaged over the seeds)."""
    from edgecart.vision.metrics import bootstrap_ci

    per_query = np.mean(np.stack(diffs), axis=0)
    lo, hi = bootstrap_ci(per_query, resamples=resamples, seed=seed)
    return float(per_query.mean()), lo, hi


def interval_variants(diffs: list[np.ndarray], resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The same mean difference over seeds with three intervals, and where its variance comes from.

    ``seed_averaged`` (the one the targets read): each query's difference averaged over the seeds, then the queries
    resampled -- the query is the unit that was sampled, and a query's differences under the seeds stay together.
    ``rows_pooled``: the seeds x queries differences resampled as if independent -- too narrow, since the same query
    enters once per seed and its differences are correlated. ``two_level``: seeds resampled (with replacement), then
    queries -- also covers seed-to-seed variation, crudely with 3 seeds. ``variance``: the standard deviation of the
    per-seed mean differences (training noise on these queries) and the mean over seeds of the per-seed query
    standard error (query noise)."""
    from edgecart.vision.metrics import bootstrap_ci

    d = np.stack(diffs).astype(np.float64)  # seeds x queries
    rng = np.random.default_rng(seed)
    n_s, n_q = d.shape
    s_idx = rng.integers(0, n_s, (resamples, n_s))
    q_idx = rng.integers(0, n_q, (resamples, n_q))
    two = np.array([d[si][:, qi].mean() for si, qi in zip(s_idx, q_idx, strict=True)])
    per_seed = d.mean(axis=1)
    return {
        "mean": float(d.mean()),
        "seed_averaged": bootstrap_ci(d.mean(axis=0), resamples=resamples, seed=seed),
        "rows_pooled": bootstrap_ci(d.reshape(-1), resamples=resamples, seed=seed),
        "two_level": tuple(float(x) for x in np.quantile(two, [0.025, 0.975])),
        "variance": {"per_seed_means": [float(x) for x in per_seed],
                     "sd_between_seeds": float(per_seed.std(ddof=1)) if n_s > 1 else 0.0,
                     "se_queries_per_seed": float(np.mean(d.std(axis=1, ddof=1) / np.sqrt(n_q))),
                     "se_queries_seed_averaged": float(d.mean(axis=0).std(ddof=1) / np.sqrt(n_q))},
    }


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def setup(cache: Path, changes: dict[str, dict[str, Any]], data_root: Path | None = None) -> tuple[Any, ...]:
    """The grocery demo's configuration with ``changes`` (one student per kind and seed, label-only ones included),
    its data with the students compared on the 81 catalog pictures only, a pipeline context on ``cache``, and the
    demo's teacher with its embeddings (read from the cache when there). Returns ``(cfg, data, ctx, teacher,
    teacher_embeddings, threads)``."""
    from edgecart.cache import Cache
    from edgecart.threads import set_torch_threads
    from edgecart.vision.demo import DEMO_CONFIG, grocery_search_data
    from edgecart.vision.pipeline import _Context

    changes = {k: dict(v) for k, v in changes.items()}
    changes.setdefault("student", {}).update(baseline=True, seeds=1)
    cfg = DEMO_CONFIG.replace(**changes)
    threads = set_torch_threads(cfg.threads)
    full = grocery_search_data(cfg, data_root)
    # the students are compared on the 81 catalog pictures only: they do not embed the second catalog (the training
    # photos; it changes no student and no cache key)
    data = dataclasses.replace(full, extra_catalogs={})
    ctx = _Context(data, cfg, Cache(cache, "vision"), {}, {}, say)
    tctx = _Context(full, cfg, ctx.vc, {}, ctx.cached, say)  # the teacher's embeddings keep their cache key
    if cfg.student.size != cfg.teacher.size:
        # the same teacher as at the demo's size: its pictures decoded at its own size (not resized from the
        # student's), so its cache key, weights and embeddings are those of the demo
        tcfg = cfg.replace(student={"size": cfg.teacher.size})
        tdata = grocery_search_data(tcfg, data_root)
        if tdata.train.ids != data.train.ids or tdata.val.ids != data.val.ids or tdata.test.ids != data.test.ids:
            raise SystemExit("the pictures read at the teacher's and the student's sizes differ")
        tctx = _Context(tdata, tcfg, ctx.vc, {}, ctx.cached, say)
    ctx.teacher_key = tctx.teacher_key
    teacher, _ = tctx.teacher()
    if not ctx.cached.get("teacher"):
        say("note: the teacher was not in the cache and has been trained now")
    temb = tctx.embeddings("teacher", teacher, cfg.teacher_preprocessing, tctx.teacher_key)
    return cfg, data, ctx, teacher, temb, threads


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="folder for summary.md / summary.json (not needed with --train-only)")
    ap.add_argument("--cache", type=Path, required=True, help="build cache (holds the teacher and its embeddings)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated student seeds")
    ap.add_argument("--kinds", choices=("both", "distilled", "labels"), default="both")
    ap.add_argument("--train-only", action="store_true", help="train (and cache) the students, write no report")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="change the demo configuration, e.g. student.w_relational=2 (repeatable)")
    ap.add_argument("--data", type=Path, default=None, help="grocery data root (default: the bundled copy)")
    ap.add_argument("--render", action="store_true", help="only rewrite --out's summary.md from its summary.json")
    args = ap.parse_args(argv)
    if args.render:
        render(args.out)
        return 0
    if not args.train_only and args.out is None:
        ap.error("--out is required unless --train-only")

    from edgecart.vision.metrics import means, paired_diff_ci

    t_start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    cfg, data, ctx, teacher, temb, threads = setup(args.cache, parse_sets(args.set), args.data)
    kinds = ("distilled", "labels") if args.kinds == "both" else (args.kinds,)
    students: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        for kind in kinds:
            t0, c0 = time.perf_counter(), time.process_time()
            students[f"{kind}/{seed}"] = ctx.student(kind, seed, teacher, temb)
            say(f"{kind} seed {seed}: {'cached' if ctx.cached[f'student_{kind}_{seed}'] else 'trained'} in "
                f"{time.perf_counter() - t0:.0f} s ({time.process_time() - c0:.0f} CPU s, training and embedding)")
    if args.train_only:
        return 0

    splits = {"val": data.val, "test": data.test}
    rows: list[dict[str, Any]] = []
    diffs: dict[str, dict[str, list[np.ndarray]]] = {sp: {m: [] for m in METRICS} for sp in splits}
    arrays: dict[str, np.ndarray] = {}
    for seed in seeds:
        d, lab = students[f"distilled/{seed}"]["emb"], students[f"labels/{seed}"]["emb"]
        row: dict[str, Any] = {"seed": seed}
        for sp, qset in splits.items():
            dq = ctx._score(d[sp], qset, d["catalog"], data.catalog)
            lq = ctx._score(lab[sp], qset, lab["catalog"], data.catalog)
            tq = ctx._score(d[sp], qset, temb["catalog"], data.catalog)
            row[sp] = {"distilled": means(dq), "labels": means(lq), "distilled_teacher_catalog": means(tq),
                       "diff": {m: paired_diff_ci(dq[m], lq[m], seed=seed) for m in METRICS}}
            for m in METRICS:
                diffs[sp][m].append(dq[m] - lq[m])
                arrays[f"{sp}/distilled/{seed}/{m}"], arrays[f"{sp}/labels/{seed}/{m}"] = dq[m], lq[m]
        rows.append(row)
    pooled = {sp: {m: pooled_diff(diffs[sp][m]) for m in METRICS} for sp in splits}
    variants = {sp: {m: interval_variants(diffs[sp][m]) for m in ("recall@10", "map@10")} for sp in splits}
    teacher_q = {sp: means(ctx._score(temb[sp], q, temb["catalog"], data.catalog)) for sp, q in splits.items()}
    summary = {
        "config": cfg.to_dict()["student"], "seeds": seeds, "threads": threads, "per_seed": rows, "pooled": pooled,
        "interval_variants": variants,
        "teacher": teacher_q, "queries": {sp: len(q) for sp, q in splits.items()},
        "interval": "paired percentile bootstrap over queries (2000 resamples); pooled: per-query differences "
                    "averaged over the seeds, then the queries resampled",
        "target": targets(pooled),
        "cached": ctx.cached, "seconds": time.perf_counter() - t_start,
        "command": "scripts/vision_seeds.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    np.savez_compressed(args.out / "per_query.npz", **arrays)
    (args.out / "summary.md").write_text(markdown(summary))
    say(f"wrote {args.out / 'summary.md'}")
    print(markdown(summary))
    return 0


def targets(pooled: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Issue 12 item 6, read on the pooled differences (mean over seeds, interval over queries)."""
    v, t = pooled["val"], pooled["test"]
    return {
        "validation: mean distilled minus label-only >= 0 on R@10 and mAP@10": v["recall@10"][0] >= 0 <= v["map@10"][0],
        "validation: R@10 difference interval above 0": v["recall@10"][1] > 0,
        "validation: mAP@10 difference interval above 0": v["map@10"][1] > 0,
        "test (reported): mean difference >= 0 on R@10 and mAP@10, mAP@10 interval above 0":
            t["recall@10"][0] >= 0 <= t["map@10"][0] and t["map@10"][1] > 0,
    }


def render(folder: Path) -> None:
    """Rewrite ``folder``'s summary.md (and the targets in summary.json) from its summary.json."""
    s = json.loads((folder / "summary.json").read_text())
    s["target"] = targets(s["pooled"])
    (folder / "summary.json").write_text(json.dumps(s, indent=1, default=float) + "\n")
    (folder / "summary.md").write_text(markdown(s))


def _ci(x: tuple[float, float, float]) -> str:
    return f"{x[0]:+.4f} [{x[1]:+.4f}, {x[2]:+.4f}]"


def markdown(s: dict[str, Any]) -> str:
    c = s["config"]
    lines = [
        f"# Distilled vs label-only image-search students, {len(s['seeds'])} seeds",
        "",
        f"Grocery demo configuration: student {c['size']}x{c['size']}, width {c['width']}, {c['epochs']} epochs, "
        f"loss weights cosine {c['w_cosine']}, relational {c['w_relational']}, label {c['w_label']}, soft "
        f"{c['w_soft']} (T={c['temperature']})"
        + (f", contrastive {c['w_contrastive']}" if c.get("w_contrastive") else "")
        + (", teacher run on the student's augmented view (consistent)" if c.get("consistent_teacher") else "")
        + f"; {s['queries']['val']} validation and {s['queries']['test']} test queries searching the 81 catalog "
        "pictures, each student in the catalog it embeds itself; hit = same product. Trained through "
        "`edgecart.compress.distill`, " + f"{s['threads']} torch thread(s).",
        "",
        f"Intervals: {s['interval']}.",
        "",
    ]
    for sp, title in (("val", "Validation (choices)"), ("test", "Test (reported only)")):
        lines += [f"## {title}", "",
                  "| seed | R@10 dist / labels | mAP@10 dist / labels | R@1 dist / labels | R@10 diff [95% CI] | "
                  "mAP@10 diff [95% CI] |", "|---:|---|---|---|---|---|"]
        for r in s["per_seed"]:
            d, lab = r[sp]["distilled"], r[sp]["labels"]
            lines.append(f"| {r['seed']} | {d['recall@10']:.4f} / {lab['recall@10']:.4f} | {d['map@10']:.4f} / "
                         f"{lab['map@10']:.4f} | {d['recall@1']:.4f} / {lab['recall@1']:.4f} | "
                         f"{_ci(r[sp]['diff']['recall@10'])} | {_ci(r[sp]['diff']['map@10'])} |")
        p = s["pooled"][sp]
        mean = {k: np.mean([r[sp][k][m] for r in s["per_seed"]]) for k in ("distilled", "labels")
                for m in ("recall@10",)}
        lines.append(f"| mean | {mean['distilled']:.4f} / {mean['labels']:.4f} | "
                     f"{np.mean([r[sp]['distilled']['map@10'] for r in s['per_seed']]):.4f} / "
                     f"{np.mean([r[sp]['labels']['map@10'] for r in s['per_seed']]):.4f} | "
                     f"{np.mean([r[sp]['distilled']['recall@1'] for r in s['per_seed']]):.4f} / "
                     f"{np.mean([r[sp]['labels']['recall@1'] for r in s['per_seed']]):.4f} | "
                     f"{_ci(p['recall@10'])} | {_ci(p['map@10'])} |")
        t = s["teacher"][sp]
        lines += ["", f"Teacher on the same queries: R@10 {t['recall@10']:.4f}, mAP@10 {t['map@10']:.4f}, "
                      f"R@1 {t['recall@1']:.4f}.", ""]
    if s.get("interval_variants"):
        lines += ["## Where the variance comes from", "",
                  "Mean difference (distilled minus label-only) with three intervals: seed-averaged per-query "
                  "bootstrap (the one the targets read), the seeds x queries rows pooled as if independent (too "
                  "narrow), and a two-level bootstrap (seeds, then queries); SD between the per-seed mean "
                  "differences (training noise) against the query standard error of one seed and of the "
                  "seed-averaged difference.", "",
                  "| split | metric | mean | seed-averaged | rows pooled | two-level | per-seed means | SD seeds | "
                  "SE queries (1 seed / avg) |", "|---|---|---:|---|---|---|---|---:|---|"]
        for sp, ms in s["interval_variants"].items():
            for m, v in ms.items():
                va = v["variance"]
                lines.append(
                    f"| {sp} | {m} | {v['mean']:+.4f} | [{v['seed_averaged'][0]:+.4f}, {v['seed_averaged'][1]:+.4f}] "
                    f"| [{v['rows_pooled'][0]:+.4f}, {v['rows_pooled'][1]:+.4f}] | [{v['two_level'][0]:+.4f}, "
                    f"{v['two_level'][1]:+.4f}] | {', '.join(f'{x:+.3f}' for x in va['per_seed_means'])} | "
                    f"{va['sd_between_seeds']:.4f} | {va['se_queries_per_seed']:.4f} / "
                    f"{va['se_queries_seed_averaged']:.4f} |")
        lines.append("")
    lines += ["## Target", ""]
    for k, v in s["target"].items():
        lines.append(f"- {k}: **{'reached' if v else 'NOT reached'}**")
    lines += ["", f"Command: `{s['command']}`; {s['seconds']:.0f} s (students cached: "
                  f"{', '.join(k for k, v in s['cached'].items() if v and k.startswith('student'))}).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
