"""Quality vs size from saved fits (issue 12, item 5): for each student size, its distilled and label-only fits
over several seeds against one teacher, with 95% intervals, plotted against parameters and against p50 latency.

    EDGECART_THREADS=1 .venv/bin/python scripts/recs_curve.py --dataset instacart \\
        --teacher I-S60-label30-s0+I-S60-label30-s1+I-S60-label30-s2 \\
        --size 16=I-S16-kd60x3d1-s0,I-S16-kd60x3d1-s1,I-S16-kd60x3d1-s2:I-S16-label30-s0,I-S16-label30-s1,... \\
        --out benchmarks/results/recs/round8/curve-instacart

The fits are those ``recs_round3.py fit`` keeps under ``--scores``. Each side of a size is the per-user test NDCG@10
averaged over its seeds, so every interval (percentile bootstrap over test users, 2000 resamples) is over users.
Latency: one recommendation through the runtime (ONNX fp32 user-vector model + the int8 item table, 1 thread), the
seed-0 distilled student of each size; a seed ensemble's figure is the sum of its members' (run one after another).
Writes ``OUT.json``, ``OUT.md`` and ``OUT.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from recs_experiments import _ci, _latency_ms, _plot  # noqa: E402
from recs_round3 import _seed_mean_ndcg, load_fits  # noqa: E402


def _size(text: str) -> tuple[int, list[str], list[str]]:
    dim, sep, sides = text.partition("=")
    distilled, sep2, label_only = sides.partition(":")
    if not (sep and sep2 and dim.isdigit() and distilled and label_only):
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected DIM=DISTILLED,...:LABEL_ONLY,...")
    return int(dim), distilled.split(","), label_only.split(",")


def _params(models: list) -> int:
    from edgecart.models.sasrec import num_params

    return sum(num_params(m) for m in models)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=("movielens-100k", "instacart", "movielens-1m"))
    p.add_argument("--teacher", required=True, help="'+'-joined tags of the teacher's saved fits")
    p.add_argument("--size", type=_size, action="append", required=True,
                   help="DIM=DISTILLED,...:LABEL_ONLY,... (the seeds' fit tags of each side)")
    p.add_argument("--exclude-seen", action="store_true",
                   help="rank only items outside the user's history (the runtime's default; on MovieLens nobody "
                   "rates a film twice)")
    p.add_argument("--recipe", default="", help="how the distilled students were trained (for the table)")
    p.add_argument("--scores", type=Path, default=Path("/tmp/recs3"))
    p.add_argument("--out", type=Path, required=True, help="output stem (.json, .md and .png are added)")
    args = p.parse_args(argv)

    from edgecart.data.sequences import leave_last_out
    from edgecart.recs.experiments import fmt_ci
    from edgecart.recs.metrics import paired_bootstrap
    from edgecart.recs.pipeline import _load
    from edgecart.threads import set_torch_threads

    set_torch_threads(1)
    data = _load(args.dataset, 5)
    split = leave_last_out(data)
    target = split.test_target
    seen = split.test_history if args.exclude_seen else None
    seen_v = split.valid_history if args.exclude_seen else None

    def test_u(tags: str):
        return _seed_mean_ndcg(tags, args.scores, target, seen)

    def valid_mean(tags: str) -> float:
        return float(_seed_mean_ndcg(tags, args.scores, split.valid_target, seen_v, "valid").mean())

    teacher_u = test_u(args.teacher)
    t_models = load_fits(args.teacher, args.scores)
    t_params = _params(t_models)
    t_ms = sum(_latency_ms(m, data, split) for m in t_models)
    teacher = {"fits": args.teacher, "params": t_params, "p50_ms": t_ms, "ci": _ci(teacher_u),
               "valid_ndcg": valid_mean(args.teacher)}
    rows = []
    for dim, distilled, label_only in sorted(args.size):
        sides = {"distilled": ",".join(distilled), "label_only": ",".join(label_only)}
        seeds_u = {"distilled": [test_u(t) for t in distilled], "label_only": [test_u(t) for t in label_only]}
        u = {k: np.mean(v, axis=0) for k, v in seeds_u.items()}  # as _seed_mean_ndcg of the ','-joined side
        first = load_fits(distilled[0], args.scores)
        params = _params(first)
        if params != _params(load_fits(label_only[0], args.scores)):
            raise SystemExit(f"size {dim}: the distilled and label-only fits differ in size")
        rows.append({
            "dim": dim, "params": params, "params_ratio": params / t_params,
            "p50_ms": _latency_ms(first[0], data, split), "fits": sides,
            "per_seed_test_ndcg": {k: [float(x.mean()) for x in v] for k, v in seeds_u.items()},
            "valid_ndcg": {k: valid_mean(v) for k, v in sides.items()},
            "ci_distilled": _ci(u["distilled"]), "ci_label_only": _ci(u["label_only"]),
            "distilled_minus_label_only": paired_bootstrap(u["distilled"], u["label_only"]),
            "distilled_over_teacher": paired_bootstrap(u["distilled"], teacher_u),
            "label_only_over_teacher": paired_bootstrap(u["label_only"], teacher_u),
            "teacher_minus_each_label_only": [paired_bootstrap(teacher_u, x) for x in seeds_u["label_only"]]})
    command = "EDGECART_THREADS=1 .venv/bin/python scripts/recs_curve.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    doc = {"dataset": data.describe(), "teacher": teacher, "rows": rows, "recipe": args.recipe,
           "exclude_seen": args.exclude_seen,
           "seeds": "each side: per-user test NDCG@10 averaged over its seeds; intervals over test users",
           "latency": "p50 of one recommendation through ONNX Runtime (fp32 user-vector model + int8 item table, "
                      "1 thread), the seed-0 distilled student; the teacher: the sum of its members'",
           "command": command}
    md = [f"# Quality vs size, {data.describe()}", "",
          f"Teacher {args.teacher}: {t_params / 1e3:.1f}k params, valid NDCG@10 {teacher['valid_ndcg']:.4f}, test "
          f"{teacher['ci'][0]:.4f} [{teacher['ci'][1]:.4f}, {teacher['ci'][2]:.4f}], p50 {t_ms:.2f} ms. "
          f"Distilled students: {args.recipe or 'see the fits'}. {doc['seeds']}. NDCG@10 "
          + ("with the user's seen items excluded (the runtime's default)." if args.exclude_seen else
             "over every item, seen ones included."), "",
          "| student | params (× teacher) | p50 ms | valid distilled / label-only | distilled NDCG@10 [95% CI] | "
          "label-only NDCG@10 [95% CI] | distilled − label-only [95% CI] | distilled / teacher | "
          "label-only / teacher | teacher − each label-only seed |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        cd, cl = r["ci_distilled"], r["ci_label_only"]
        md.append(f"| {r['dim']}-d, {len(r['per_seed_test_ndcg']['distilled'])} seeds | {r['params'] / 1e3:.1f}k "
                  f"({r['params_ratio']:.3f}) | {r['p50_ms']:.2f} | {r['valid_ndcg']['distilled']:.4f} / "
                  f"{r['valid_ndcg']['label_only']:.4f} | {cd[0]:.4f} [{cd[1]:.4f}, {cd[2]:.4f}] | "
                  f"{cl[0]:.4f} [{cl[1]:.4f}, {cl[2]:.4f}] | {fmt_ci(r['distilled_minus_label_only'])} | "
                  f"{fmt_ci(r['distilled_over_teacher'], 'ratio')} | {fmt_ci(r['label_only_over_teacher'], 'ratio')} "
                  f"| {'; '.join(fmt_ci(c) for c in r['teacher_minus_each_label_only'])} |")
    md += ["", f"{doc['latency']}; measured on the shared 2-core machine.", "", f"Command: `{command}`", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(md))
    _plot(doc, args.out.with_suffix(".png"))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
