"""Search speed figures (issue 10 item 6): catalog scoring and exact top-10 at 10k / 100k / 1M int8 items, the IVF
index's speed and recall at 100k / 1M, and the scoring paths' memory — on one thread, interleaved, medians.

    python -m edgecart.benchmarks.search_speed --out benchmarks/results/search [--sizes 10000,100000,1000000]

Writes ``scoring.json`` and ``scoring.md`` into ``--out``. The end-to-end figures (picture -> top-10 beside the model)
come from ``edgecart bench BUNDLE --task-level --busy 0,1`` on a bundle made by ``--bundle-out`` (a MobileStudent at
the demo's size, random weights, exported to every format, over a generated 9,000-item catalog).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .catalogs import random_catalog, with_catalog
from .remote_runner import cpu_model
from .stats import interleaved_times, p50_ms
from .task_level import busy_cores


def _old_scores(q: np.ndarray, emb: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The scoring before the fix, kept verbatim as the baseline: the int8 catalog cast to float32 on every query and
    one BLAS product with numpy's default BLAS threads."""
    s = q[None] @ emb.astype(np.float32, copy=False).T
    s *= scales[None, :]
    return s


def measure_size(n: int, dim: int, *, reps: int, budget_s: float, with_old: bool, ivf: bool,
                 seed: int = 0) -> dict[str, Any]:
    """One catalog size: scoring + exact top-10 on each path (and the old one), and the IVF index when asked."""
    from edgecart.runtime.index import build_ivf, exact_top_k, measure_recall
    from edgecart.runtime.search import Catalog, quantize_rows
    from edgecart.runtime.topk import top_k

    emb = random_catalog(n, dim, clusters=max(10, n // 100), seed=seed)
    q8, scales = quantize_rows(emb)
    del emb
    ids = tuple(str(i) for i in range(n))
    cats = np.zeros(n, np.int64)
    mk = {path: Catalog(ids, cats, ("x",), q8, scales, "cosine", "generated", "int8", scoring=path)
          for path in ("float32", "int8")}
    rng = np.random.default_rng(seed + 1)
    rows = q8[rng.integers(0, n, 64)].astype(np.float32) * scales[rng.integers(0, n, 64)][:, None]
    queries = rows + rng.normal(0, 0.05, rows.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    state = {"i": 0}

    def nextq() -> np.ndarray:
        state["i"] += 1
        return queries[state["i"] % len(queries)]

    given = mk["float32"].score_one(queries[0])
    fns: dict[str, Callable[[], Any]] = {
        "exact top-10, float32 copy": lambda: mk["float32"].search_one(nextq(), 10),
        "exact top-10, int8 rows": lambda: mk["int8"].search_one(nextq(), 10),
        "top-10 only (scores given)": lambda: top_k(given, 10),
    }
    if with_old:
        fns["old: astype + BLAS (default threads) + top-10"] = lambda: top_k(_old_scores(nextq(), q8, scales), 10)
    row: dict[str, Any] = {"items": n, "dim": dim,
                           "memory_mb": {"int8 rows + scales": round((q8.nbytes + scales.nbytes) / 2**20, 1),
                                         "float32 copy (extra)": round(n * dim * 4 / 2**20, 1)}}
    if ivf:
        t0 = time.perf_counter()
        index = build_ivf(q8, scales, seed=seed)
        row["ivf_build_s"] = round(time.perf_counter() - t0, 1)
        cat_ivf = Catalog(ids, cats, ("x",), q8, scales, "cosine", "generated", "int8", scoring="int8", index=index)
        full = mk["float32"]._matrix
        exact = exact_top_k(full, queries, 10)
        probes = sorted({1, 2, 4, 8, 16, 32, index.nprobe})
        row["ivf"] = {"lists": index.lists, "recall_at_10": {str(p): round(measure_recall(index, full, queries, 10, p,
                                                                                          exact), 3)
                                                             for p in probes}}
        for p in (4, 16, 32):
            fns[f"IVF int8 rows, nprobe={p}"] = (lambda p=p: cat_ivf.search_one(nextq(), 10, approximate=True,
                                                                                  nprobe=p))
    samples = interleaved_times(fns, reps, budget_s)
    row["p50_ms"] = {k: round(p50_ms(v), 3) for k, v in samples.items()}
    row["min_ms"] = {k: round(float(np.min(v)) * 1e3, 3) for k, v in samples.items()}
    row["n"] = {k: len(v) for k, v in samples.items()}
    return row


def measure_recall_on(kind: str, n: int, dim: int, seed: int = 0) -> dict[str, Any]:
    """IVF recall@10 on ``uniform`` rows (no structure: the worst case for any partition index) or ``loose``
    clusters (noise as large as the centre), queries drawn the same way."""
    from edgecart.runtime.index import build_ivf, exact_top_k, measure_recall
    from edgecart.runtime.search import quantize_rows

    opts: dict[str, Any] = {} if kind == "uniform" else {"clusters": max(10, n // 100), "spread": 1.0}
    both = random_catalog(n + 64, dim, seed=seed, **opts)
    q8, scales = quantize_rows(both[:n])
    index = build_ivf(q8, scales, seed=seed)
    full = q8.astype(np.float32) * scales[:, None]
    queries = both[n:]
    exact = exact_top_k(full, queries, 10)
    return {"kind": kind, "items": n, "lists": index.lists,
            "recall_at_10": {str(p): round(measure_recall(index, full, queries, 10, p, exact), 3)
                             for p in (4, 16, 64, 256)}}


def build_demo_bundle(out: Path, items: int = 9000, dim: int = 128) -> Path:
    """A MobileStudent at the demo's size (28x28 grayscale, dim 128, width 32; random weights), exported fp32 and
    int8 to every format, then given a generated ``items``-item int8 catalog."""
    import torch
    from edgecart.exporters import BundleWriter, export_artifact, golden_from_model
    from edgecart.models.vision import MobileStudent
    from edgecart.runtime import ImagePreprocessing

    torch.manual_seed(0)
    model = MobileStudent(dim=dim, size=28, in_channels=1, width=32).eval()
    rng = np.random.default_rng(0)

    def image() -> tuple[Any, ...]:
        return (torch.from_numpy(rng.uniform(-1, 1, (1, 1, 28, 28)).astype(np.float32)),)

    samples = [image() for _ in range(3)]
    calibration = [image() for _ in range(32)]
    pre = ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))
    io = model.io_spec
    golden = golden_from_model(model, samples, io)
    plain = out.with_name(out.name + ".model")
    with BundleWriter(plain, name="search-speed", version="0.1.0", task="generic", inputs=io.inputs,
                      outputs=io.outputs, preprocessing=pre, overwrite=True) as w:
        w.set_golden(*golden)
        for fmt in ("executorch", "onnx", "tflite"):
            export_artifact(w, model, samples[0], fmt, golden=golden)
            # random weights: int8 parity is not the point here (speed is), so it is recorded, not enforced
            export_artifact(w, model, samples[0], fmt, precision="int8", calibration=calibration, golden=golden,
                            check=False)
        w.commit()
    return with_catalog(plain, out, random_catalog(items, dim, clusters=90, seed=0), preprocessing=pre)


def to_markdown(doc: dict[str, Any]) -> str:
    lines = ["# Search speed: catalog scoring and exact top-10 (one query, one thread)", "",
             f"Measured on a shared, loaded 2-core machine ({doc['host']['cpu']}); {doc['created_at']}. "
             f"Command: `{doc['command']}`. Medians of interleaved rounds (order rotated each round).", "",
             "Queries: catalog rows plus noise (a photo of a product), unit norm. Catalog: clustered unit rows "
             "(n/100 centres), int8 with per-row scales, dimension 128. `float32 copy`: the int8 rows dequantised "
             "once at load (the default up to 64 MiB); `int8 rows`: scored from the int8 rows in numpy's buffered "
             "einsum (no full copy); `old`: the code before this change (cast per query, BLAS with default threads). "
             f"Busy spinning processes beside the run: {doc['busy']}.", ""]
    keys: list[str] = []
    for r in doc["sizes"]:
        keys += [k for k in r["p50_ms"] if k not in keys]
    lines += ["| path | " + " | ".join(f"{r['items']:,} items: p50 (min) ms" for r in doc["sizes"]) + " |",
              "|---|" + "---|" * len(doc["sizes"])]
    for k in keys:
        cells = [f"{r['p50_ms'][k]} ({r['min_ms'][k]})" if k in r["p50_ms"] else "–" for r in doc["sizes"]]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "min: the fastest call, what the work costs when the machine leaves it alone; p50 on this loaded "
              "machine includes time the process waited for a core."]
    lines += ["", "| memory | " + " | ".join(f"{r['items']:,}" for r in doc["sizes"]) + " |",
              "|---|" + "---|" * len(doc["sizes"])]
    for k in doc["sizes"][0]["memory_mb"]:
        lines.append(f"| {k} MB | " + " | ".join(str(r["memory_mb"][k]) for r in doc["sizes"]) + " |")
    ivf = [r for r in doc["sizes"] if "ivf" in r]
    if ivf:
        lines += ["", "IVF index (spherical k-means, ~2 sqrt(N) lists), recall@10 against the exact scan:", ""]
        for r in ivf:
            rec = ", ".join(f"nprobe {p}: {v}" for p, v in r["ivf"]["recall_at_10"].items())
            lines.append(f"- {r['items']:,} clustered items, {r['ivf']['lists']} lists, built in "
                         f"{r['ivf_build_s']} s — {rec}")
        for u in doc.get("other_recall", []):
            rec = ", ".join(f"nprobe {p}: {v}" for p, v in u["recall_at_10"].items())
            what = "uniform (structureless)" if u["kind"] == "uniform" else "loosely clustered (noise = centre)"
            lines.append(f"- {u['items']:,} {what} items, {u['lists']} lists — {rec}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgecart.benchmarks.search_speed", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--reps", type=int, default=60)
    p.add_argument("--budget-s", type=float, default=60.0, help="time budget per size (at least 5 rounds)")
    p.add_argument("--ivf-from", type=int, default=100000, help="measure the IVF index from this size on")
    p.add_argument("--busy", type=int, default=0, help="spinning processes beside the run")
    p.add_argument("--bundle-out", default=None, help="also write the demo-like search bundle here")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EDGECART_THREADS", "1")
    if args.bundle_out:
        print(f"bundle: {build_demo_bundle(Path(args.bundle_out))}", flush=True)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    doc: dict[str, Any] = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "command": " ".join(["python -m edgecart.benchmarks.search_speed", *(argv or sys.argv[1:])]),
                           "host": {"cpu": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(),
                                    "numpy": np.__version__},
                           "busy": args.busy, "sizes": []}
    with busy_cores(args.busy):
        for n in sizes:
            print(f"measuring {n:,} items ...", flush=True)
            doc["sizes"].append(measure_size(n, args.dim, reps=args.reps, budget_s=args.budget_s, with_old=True,
                                             ivf=n >= args.ivf_from))
            print(json.dumps(doc["sizes"][-1]["p50_ms"]), flush=True)
        if any(n >= args.ivf_from for n in sizes):
            doc["other_recall"] = [measure_recall_on(kind, min(100000, max(sizes)), args.dim)
                                   for kind in ("loose", "uniform")]
    (out / "scoring.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "scoring.md").write_text(to_markdown(doc))
    print(to_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
