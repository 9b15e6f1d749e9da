"""``edgecart demo``: the main job on the bundled real data."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

TASKS = ("smoke", "image-search", "recommendations", "text")
#: What ``make demo`` trains for recommendations: MovieLens-100K fits the demo's time budget, Instacart does not.
DEMO_RECS_DATASETS = ("movielens-100k",)
#: each task's cache namespace (where its shipped teachers go)
NAMESPACES = {"image-search": "vision", "recommendations": "recs", "text": "text"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job on the bundled real data (bundles under --out)")
    p.add_argument("--task", choices=(*TASKS, "all"), default="all",
                   help="which pipeline to run (default: all = smoke, image-search, recommendations, text)")
    p.add_argument("--out", default="out", help="where bundles go (default: ./out)")
    p.add_argument("--cache", default=None, help="cache for trained teachers and embeddings (default: OUT/cache)")
    p.add_argument("--train-teachers", action="store_true",
                   help="train the teachers here instead of starting from the ones shipped in data/teachers "
                        "(verified by SHA-256, copied into the cache); adds ~15-25 min to a first run on 2 cores")
    p.add_argument("--recs-datasets", default=",".join(DEMO_RECS_DATASETS),
                   help="recommendation data sets, comma-separated, from instacart, movielens-100k (default: "
                        f"{','.join(DEMO_RECS_DATASETS)}: Instacart's build takes ~30 minutes on one core, beyond "
                        "the demo's 30-minute budget; run it with --recs-datasets instacart,movielens-100k)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from edgecart.recs.pipeline import DATASETS
    from edgecart.runtime.errors import UnknownNameError

    recs = tuple(d.strip() for d in args.recs_datasets.split(",") if d.strip())
    bad = [d for d in recs if d not in DATASETS]
    if bad or not recs:
        raise UnknownNameError(f"unknown recommendation data set(s) {bad or recs}; known: {', '.join(DATASETS)}")
    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out / "cache"
    tasks = TASKS if args.task == "all" else (args.task,)
    if not args.train_teachers:
        from edgecart.teachers import seed_cache, shipped_dir

        root = shipped_dir()
        copied = seed_cache(cache, root, tuple(NAMESPACES[t] for t in tasks if t in NAMESPACES))
        if root is None:
            print("teachers: none shipped here (no data/teachers); they are trained", flush=True)
        else:
            print(f"teachers: starting from those shipped in {root} (SHA-256 checked; {len(copied)} files copied "
                  f"into {cache}); --train-teachers trains them instead", flush=True)
    for task in tasks:
        t0 = time.perf_counter()
        print(f"== {task} ==", flush=True)
        if task == "smoke":
            from edgecart.demo import smoke

            rows = smoke(out)
            print(f"{'artifact':<28} {'backend':<12} {'bytes':>8} {'max|Δ| golden':>14} {'cosine':>9} {'ms/run':>8}")
            for r in rows:
                print(f"{r.artifact:<28} {r.backend:<12} {r.bytes:>8} {r.max_abs_diff:>14.2e} {r.cosine:>9.6f} "
                      f"{r.ms_per_run:>8.3f}")
        elif task == "image-search":
            from edgecart.vision.build import _print_result
            from edgecart.vision.demo import run_grocery_demo

            _print_result(run_grocery_demo(out / "image_search", cache=cache), out / "image_search")
        elif task == "text":
            from edgecart.text.pipeline import run_demo as run_text

            print(run_text(out / "text", cache=cache))
        else:
            from edgecart.recs.pipeline import run_demo as run_recs

            print(run_recs(out / "recommendations", cache=cache, datasets=recs))
        print(f"== {task}: done in {time.perf_counter() - t0:.0f} s ==", flush=True)
    return 0
