"""CPU cost of the demo's distilled student per training step: cached teacher targets vs the consistent teacher
(the teacher run on every augmented batch), through :func:`edgecart.vision.train.train_student` itself.

Both kinds train on the same random pictures (cost does not depend on content) for a few batches, interleaved over
several rounds; the figure is CPU seconds (``time.process_time``) per batch, so that a loaded machine slows both
alike. The teacher is the demo's, read from a build cache (its weights do not change the cost, its shape does).

    EDGECART_THREADS=1 .venv/bin/python scripts/vision_step_cost.py --cache CACHE [--rounds 3 --batches 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True, help="build cache holding the demo's teacher")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=8, help="batches per kind and round")
    ap.add_argument("--size", type=int, default=None, help="student input size (default: the demo's)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    import torch
    from edgecart.cache import Cache
    from edgecart.data.image_folder import ImageSet
    from edgecart.models.vision import LiteTeacher
    from edgecart.threads import set_torch_threads
    from edgecart.vision.demo import DEMO_CONFIG
    from edgecart.vision.train import train_student

    cfg = DEMO_CONFIG if args.size is None else DEMO_CONFIG.replace(student={"size": args.size})
    threads = set_torch_threads(cfg.threads)
    tc, sc = cfg.teacher, cfg.student
    entries = sorted((args.cache / "vision").glob("teacher-*.pt"))
    if not entries:
        raise SystemExit(f"no teacher in {args.cache}/vision: run the demo (or vision_seeds.py) with this cache first")
    key = entries[0].stem.split("-", 1)[1]
    state, _ = Cache(args.cache, "vision").load_state("teacher", key)
    classes = state["classifier.weight"].shape[0]
    teacher = LiteTeacher(tc.dim, classes, tc.size, pretrained=False)
    teacher.load_state_dict(state)
    teacher.eval()
    protos = torch.nn.functional.normalize(teacher.classifier.weight.detach(), dim=1).numpy()

    n = sc.batch_size * args.batches
    rng = np.random.default_rng(0)
    side = max(tc.size, sc.size)
    data = ImageSet(rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8), rng.integers(0, classes, n),
                    tuple(f"c{i}" for i in range(classes)), tuple(f"p{i}" for i in range(n)))
    temb = rng.normal(size=(n, tc.dim)).astype(np.float32)
    temb /= np.linalg.norm(temb, axis=1, keepdims=True)
    kinds = {"cached teacher targets": dataclasses.replace(sc, consistent_teacher=False, epochs=1),
             "consistent teacher": dataclasses.replace(sc, consistent_teacher=True, epochs=1)}
    per: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for name, c in kinds.items():
            c0 = time.process_time()
            train_student(data, c, cfg.student_preprocessing, dim=tc.dim, teacher_emb=temb, prototypes=protos,
                          proto_scale=teacher.classifier.scale, teacher=teacher, teacher_size=tc.size, seed=r,
                          desc=f"{name} round {r + 1}")
            per[name].append((time.process_time() - c0) / args.batches)
    med = {k: float(np.median(v)) for k, v in per.items()}
    out = {"cpu_s_per_batch": per, "median": med, "ratio": med["consistent teacher"] / med["cached teacher targets"],
           "threads": threads, "batch_size": sc.batch_size, "student_size": sc.size, "teacher_size": tc.size,
           "command": "scripts/vision_step_cost.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
