"""Did moving the image student onto the shared trainer (edgecart.compress.distill) cost quality?

Compares, on the grocery demo configuration and the same cached teacher, the distilled student of one seed trained
by the pipeline's former loop (cache entry of key version 1, e.g. the demo's cache before this change) with the one
trained through ``distill`` (key version 2): validation and test R@1, R@10, mAP@10 (each student searching the
catalog it embeds), and the paired difference new minus old with a bootstrap interval over queries.

    EDGECART_THREADS=1 .venv/bin/python scripts/vision_trainer_check.py --cache .edgecart-cache --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

METRICS = ("recall@1", "recall@10", "map@10")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    from edgecart.cache import Cache
    from edgecart.models.vision import MobileStudent
    from edgecart.threads import set_torch_threads
    from edgecart.vision.config import config_hash
    from edgecart.vision.demo import DEMO_CONFIG, grocery_search_data
    from edgecart.vision.metrics import means, paired_diff_ci
    from edgecart.vision.pipeline import _Context

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    cfg = DEMO_CONFIG.replace(student={"seed": args.seed})
    set_torch_threads(cfg.threads)
    data = grocery_search_data(cfg)
    vc = Cache(args.cache, "vision")
    ctx = _Context(data, cfg, vc, {}, {}, say)
    teacher, _ = ctx.teacher()
    temb = ctx.embeddings("teacher", teacher, cfg.teacher_preprocessing, ctx.teacher_key)
    new = ctx.student("distilled", args.seed, teacher, temb)
    # the former loop's cache key (version 1 hashed the whole student section except ``baseline``)
    v1 = config_hash({"student": {k: v for k, v in cfg.to_dict()["student"].items() if k != "baseline"},
                      "teacher": ctx.teacher_key, "kind": "distilled", "seed": args.seed, "v": 1})
    hit = vc.load_state("student-distilled", v1)
    if hit is None:
        raise SystemExit(f"no student of the former trainer in {args.cache} (student-distilled-{v1}.pt): run the "
                         "demo of the previous version with this cache first")
    pre, sc = cfg.student_preprocessing, cfg.student
    old_model = MobileStudent(cfg.teacher.dim, len(data.train.classes), size=sc.size, width=sc.width)
    old_model.load_state_dict(hit[0])
    with torch.no_grad():
        old = ctx.embed_sets(old_model.eval(), pre, ["val", "test", "catalog"], desc="former student embeds")
    out = {"seed": args.seed, "old_key": v1, "teacher_key": ctx.teacher_key}
    for sp, q in (("val", data.val), ("test", data.test)):
        nq = ctx._score(new["emb"][sp], q, new["emb"]["catalog"], data.catalog)
        oq = ctx._score(old[sp], q, old["catalog"], data.catalog)
        out[sp] = {"distill": means(nq), "former loop": means(oq),
                   "diff": {m: paired_diff_ci(nq[m], oq[m], seed=args.seed) for m in METRICS}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trainer_check.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["| split | metric | former loop | distill | difference [95% CI] |", "|---|---|---:|---:|---|"]
    for sp in ("val", "test"):
        for m in METRICS:
            d = out[sp]["diff"][m]
            lines.append(f"| {sp} | {m} | {out[sp]['former loop'][m]:.4f} | {out[sp]['distill'][m]:.4f} | "
                         f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}] |")
    (args.out / "trainer_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
