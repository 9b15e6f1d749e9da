"""Fashion-MNIST products photographed the way a shopper does, searched by two students built with
``edgecart build image-search``: one from plain Fashion-MNIST pictures, one from the same products rendered with
polarity, background, scale, shift and colour variation.

    .venv/bin/python scripts/build_fashion_shopper.py OUT [--per-class 200] [--queries 1000] [--catalog 2000]

Writes under OUT only: ``plain/`` and ``augmented/`` (one sub-folder of PNGs per category, the same training
products), ``build.toml`` (a small, cheap configuration), the two builds ``build-plain/`` and ``build-augmented/``
(bundle + summary each), and ``summary.md`` / ``summary.json``.

Evaluation, through the runtime (``ImageSearch`` on each bundle's artifacts, int8 catalog rows): the catalog is
``--catalog`` clean Fashion-MNIST *test* products (a shop's product pictures); the queries are ``--queries`` other
test products, once clean (white on black, 28x28) and once shopper-style: dark product on a light, slightly coloured
background, RGB, a random scale and shift on a 64x64 canvas, a dark colour tint and pixel noise. Hit = same
category; precision@10, recall@1 and mAP@10 with 95% bootstrap intervals, and the paired difference augmented minus
plain. The training renderings and the shopper renderings are drawn from different random streams; the training
renderings cover both polarities and any background colour (not only the query style).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = """\
# small and cheap: 32x32 RGB, a short teacher fine-tune, a narrow student, ONNX only, 1 thread
threads = 1
[teacher]
size = 32
epochs = {teacher_epochs}
freeze_blocks = 3
[student]
size = 32
width = {width}
epochs = {student_epochs}
baseline = false
[export]
formats = ["onnx"]
latency_runs = 20
"""


def _paste(product: np.ndarray, canvas: int, scale: float, dx: float, dy: float) -> np.ndarray:
    """The 28x28 mask ``product`` (0..1) resized to ``scale`` of a ``canvas`` square and placed at a shift."""
    from PIL import Image

    side = max(8, int(round(canvas * scale)))
    m = np.asarray(Image.fromarray((product * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR),
                   np.float32) / 255
    out = np.zeros((canvas, canvas), np.float32)
    room = canvas - side
    x0, y0 = int(round(room * dx)), int(round(room * dy))
    out[y0:y0 + side, x0:x0 + side] = m
    return out


def render(product: np.ndarray, rng: np.random.Generator, *, style: str, canvas: int = 64) -> np.ndarray:
    """One RGB uint8 rendering of a white-on-black 28x28 Fashion-MNIST product.

    ``shopper``: dark product on a light background (the query style). ``train``: either polarity, any background
    and product colour with enough contrast, a scale and shift; a third of them stay plain (white on black)."""
    p = product.astype(np.float32) / 255
    if style == "train" and rng.random() < 1 / 3:
        return np.repeat(product[:, :, None], 3, axis=2)
    scale = rng.uniform(0.55, 0.95) if style == "shopper" else rng.uniform(0.45, 1.0)
    mask = _paste(p, canvas, scale, rng.uniform(), rng.uniform())
    if style == "shopper":
        bg = rng.uniform(200, 255) - rng.uniform(0, 25, 3)  # light, slightly tinted paper / table
        fg = rng.uniform(10, 90, 3)  # a dark product of some colour
        noise = 8.0
    else:
        while True:
            bg, fg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            if abs(bg.mean() - fg.mean()) > 80:
                break
        noise = rng.uniform(0, 12)
    img = bg[None, None, :] * (1 - mask[:, :, None]) + fg[None, None, :] * mask[:, :, None]
    img = img + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_folders(out: Path, train_images: np.ndarray, train_labels: np.ndarray, classes: tuple[str, ...],
                  seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed + 1)
    for i, (img, lab) in enumerate(zip(train_images, train_labels, strict=True)):
        name = classes[int(lab)].replace("/", "-")
        for kind, pic in (("plain", img), ("augmented", render(img, rng, style="train", canvas=32))):
            d = out / kind / name
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pic).save(d / f"{i:05d}.png")


def build(out: Path, kind: str, threads: int) -> dict[str, Any]:
    entry = "import sys; from edgecart.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", entry, "build", "image-search", "--images", str(out / kind), "--out",
           str(out / f"build-{kind}"), "--config", str(out / "build.toml"), "--name", f"fashion-{kind}",
           "--threads", str(threads)]
    t0, c0 = time.perf_counter(), _child_cpu()
    with open(out / f"build-{kind}.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise SystemExit(f"build {kind} failed (rc {rc}); see {out / f'build-{kind}.log'}")
    return {"command": " ".join(cmd[3:]), "wall_s": time.perf_counter() - t0, "cpu_s": _child_cpu() - c0}


def _child_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def evaluate(bundle: Path, catalog: np.ndarray, catalog_labels: np.ndarray,
             queries: dict[str, np.ndarray], query_labels: np.ndarray) -> dict[str, Any]:
    """Every artifact of ``bundle`` through the runtime: the catalog pictures and each query set embedded one picture
    at a time, the catalog as int8 rows, exact search; per-query figures kept for the paired comparison."""
    from edgecart.runtime import open_bundle
    from edgecart.runtime.search import ImageSearch, quantize_rows
    from edgecart.vision.metrics import full_ranking, per_query

    def emb(s: ImageSearch, pics: np.ndarray) -> np.ndarray:
        e = np.stack([s.embed(p) for p in pics]).astype(np.float32)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    b = open_bundle(bundle)
    out: dict[str, Any] = {}
    for a in b.manifest.artifacts:
        s = ImageSearch(b, "onnxruntime", threads=1, artifact=a.name)
        g8, gs = quantize_rows(emb(s, catalog))
        out[a.name] = {"precision": a.precision,
                       "queries": {name: per_query(full_ranking(emb(s, q), g8, gs), query_labels, catalog_labels)
                                   for name, q in queries.items()}}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=200, help="training products per category")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--catalog", type=int, default=2000)
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--student-epochs", type=int, default=6)
    ap.add_argument("--width", type=int, default=16, help="student width")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from edgecart.data.fashion_mnist import CLASSES, load_fashion_mnist
    from edgecart.vision.metrics import bootstrap_ci, means, paired_diff_ci

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_fashion_mnist()
    rng = np.random.default_rng(a.seed)
    pick = np.sort(np.concatenate([rng.permutation(np.flatnonzero(train.labels == c))[:a.per_class]
                                   for c in range(len(CLASSES))]))
    if not (out / "plain").is_dir():
        write_folders(out, train.images[pick], train.labels[pick], CLASSES, a.seed)
    (out / "build.toml").write_text(CONFIG.format(teacher_epochs=a.teacher_epochs, student_epochs=a.student_epochs,
                                                       width=a.width))
    order = rng.permutation(len(test))
    qi, ci = order[:a.queries], order[a.queries:a.queries + a.catalog]
    qrng = np.random.default_rng(a.seed + 1000)
    queries = {"clean": test.images[qi],
               "shopper": np.stack([render(im, qrng, style="shopper") for im in test.images[qi]])}
    from PIL import Image

    (out / "examples").mkdir(exist_ok=True)
    for i in range(8):
        Image.fromarray(queries["shopper"][i]).save(out / "examples" / f"shopper-{i}.png")
    builds = {k: build(out, k, a.threads) for k in ("plain", "augmented")}
    results = {k: evaluate(out / f"build-{k}" / "bundle", test.images[ci], test.labels[ci], queries,
                           test.labels[qi]) for k in builds}

    rows, summary = [], {"config": vars(a), "builds": builds, "artifacts": {}, "differences": {}}
    for k, arts in results.items():
        for name, r in arts.items():
            entry = {}
            for qname, pq in r["queries"].items():
                m = means(pq)
                lo, hi = bootstrap_ci(pq["precision@10"])
                entry[qname] = {**m, "precision@10_ci": [lo, hi]}
                rows.append(f"| {k} | {name} | {qname} | {m['precision@10']:.3f} [{lo:.3f}, {hi:.3f}] | "
                            f"{m['recall@1']:.3f} | {m['map@10']:.3f} |")
            summary["artifacts"][f"{k}/{name}"] = entry
    diffs = []
    for prec in ("fp32", "int8"):
        pa = next((r for r in results["plain"].values() if r["precision"] == prec), None)
        pb = next((r for r in results["augmented"].values() if r["precision"] == prec), None)
        if pa is None or pb is None:
            continue
        for qname in queries:
            d = paired_diff_ci(pb["queries"][qname]["precision@10"], pa["queries"][qname]["precision@10"])
            summary["differences"][f"{prec}/{qname}"] = d
            diffs.append(f"- {prec}, {qname} queries: augmented minus plain P@10 {d[0]:+.3f} [{d[1]:+.3f}, "
                         f"{d[2]:+.3f}]")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    md = [f"# Fashion-MNIST on shopper-style renderings ({len(pick)} training products, {a.queries} queries, "
          f"{a.catalog}-product clean catalog; hit = same category)", "",
          "| build | artifact | queries | P@10 [95% CI] | R@1 | mAP@10 |", "|---|---|---|---|---:|---:|", *rows, "",
          "Paired bootstrap over the same queries (95%):", "", *diffs, "",
          "Builds (1 torch thread, measured on a shared, loaded 2-core machine):", ""]
    md += [f"- {k}: `edgecart {b['command']}` — wall {b['wall_s']:.0f} s, CPU {b['cpu_s']:.0f} s"
           for k, b in builds.items()]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
