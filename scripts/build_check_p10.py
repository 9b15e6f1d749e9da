"""Check a finished ``edgecart build image-search --images DIR`` from the raw files: the held-out test photos (the
same seeded per-category split the build made) are searched, through the runtime, in the evaluation catalog (the
training photos), both embedded by each of the bundle's artifacts; precision@10 with hit = same sub-folder
(category), with a 95% bootstrap interval over the queries.

    .venv/bin/python scripts/build_check_p10.py BUILD_OUT --images DIR [--config build.toml]

Reads only; prints a Markdown table (and ``--json FILE`` writes it as JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def check(bundle: Path, images: Path, config: Path | None = None, threads: int = 1) -> list[dict]:
    from edgecart.runtime import open_bundle
    from edgecart.runtime.backends import backend_for_format
    from edgecart.runtime.search import ImageSearch, quantize_rows
    from edgecart.vision.build import user_data
    from edgecart.vision.config import BuildConfig
    from edgecart.vision.metrics import bootstrap_ci, full_ranking, means, per_query

    cfg = BuildConfig.from_toml(config) if config else BuildConfig()
    data = user_data(cfg, images=images)
    b = open_bundle(bundle)
    rows = []
    for a in b.manifest.artifacts:
        be = backend_for_format(a.format)
        if not be.available():
            continue
        s = ImageSearch(b, be.name, threads=threads, artifact=a.name)

        def emb(pics: np.ndarray, s: ImageSearch = s) -> np.ndarray:
            e = np.stack([s.embed(p) for p in pics]).astype(np.float32)
            return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

        g8, gs = quantize_rows(emb(data.catalog.images))
        pq = per_query(full_ranking(emb(data.test.images), g8, gs), data.test.labels, data.catalog.labels)
        lo, hi = bootstrap_ci(pq["precision@10"])
        rows.append({"artifact": a.name, "backend": be.name, "queries": len(data.test), "catalog": len(data.catalog),
                     **means(pq), "precision@10_ci": [lo, hi]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", help="the build's --out folder (its bundle/ is read)")
    ap.add_argument("--images", required=True, help="the folder the build was made from")
    ap.add_argument("--config", help="the build's --config, if it had one")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args(argv)
    rows = check(Path(a.build) / "bundle", Path(a.images), Path(a.config) if a.config else None)
    print(f"held-out test photos: {rows[0]['queries']}; evaluation catalog: {rows[0]['catalog']} training photos; "
          "hit = same category (sub-folder); int8 catalog rows, each side embedded by the artifact", file=sys.stderr)
    print("| artifact | backend | P@10 [95% CI] | R@1 | mAP@10 |\n|---|---|---|---:|---:|")
    for r in rows:
        lo, hi = r["precision@10_ci"]
        print(f"| {r['artifact']} | {r['backend']} | {r['precision@10']:.3f} [{lo:.3f}, {hi:.3f}] | "
              f"{r['recall@1']:.3f} | {r['map@10']:.3f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
