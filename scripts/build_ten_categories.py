"""Make a shop's picture folder from the Grocery Store Dataset: its 10 largest coarse classes, about ``--total``
pictures in all (each class capped at the smallest per-class count that reaches the total, a seeded sample over the
train, val and test photos), one sub-folder per category.

    .venv/bin/python scripts/build_ten_categories.py OUT_DIR [--total 2000] [--classes 10] [--seed 0]

With the defaults: 8 classes of 213 photos, Potato 155, Satsumas 143 = 2,002 pictures.

Then ``edgecart build image-search --images OUT_DIR --out BUILD``. Nothing is written outside OUT_DIR; the pictures
are copied byte for byte (JPEG, longer side 128 px in the project's copy of the data set).
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "grocery-store"


def coarse_names(data: Path) -> dict[int, str]:
    with open(data / "classes.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    return {int(r[3]): r[2].strip() for r in rows}


def photos_by_coarse(data: Path) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for split in ("train", "val", "test"):
        for line in (data / f"{split}.txt").read_text(encoding="utf-8").splitlines():
            if line.strip():
                path, _fine, coarse = (x.strip() for x in line.split(","))
                out[int(coarse)].append(path)
    return out


def cap_for_total(sizes: list[int], total: int) -> int:
    """The smallest per-class cap k with sum(min(n, k)) >= total (or the largest class when the total is out of
    reach)."""
    for k in range(1, max(sizes) + 1):
        if sum(min(n, k) for n in sizes) >= total:
            return k
    return max(sizes)


def make_folder(out: Path, *, data: Path = DATA, classes: int = 10, total: int = 2000, seed: int = 0) -> dict:
    names = coarse_names(data)
    by = photos_by_coarse(data)
    top = sorted(by, key=lambda c: (-len(by[c]), c))[:classes]
    per_class = cap_for_total([len(by[c]) for c in top], total)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty; give a new folder")
    rng = random.Random(seed)
    counts = {}
    for c in top:
        paths = sorted(by[c])
        pick = sorted(rng.sample(paths, min(per_class, len(paths))))
        d = out / names[c]
        d.mkdir(parents=True, exist_ok=True)
        for p in pick:
            # train/, val/ and test/ reuse file names: keep the split in the copy's name
            shutil.copyfile(data / p, d / f"{p.split('/', 1)[0]}-{Path(p).name}")
        counts[names[c]] = len(pick)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to create (one sub-folder per category)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--total", type=int, default=2000, help="about this many pictures in all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=str(DATA), help="the grocery-store copy (default: the project's data/)")
    a = ap.parse_args(argv)
    counts = make_folder(Path(a.out), data=Path(a.data), classes=a.classes, total=a.total, seed=a.seed)
    for k, v in counts.items():
        print(f"{k:<16} {v}")
    print(f"{sum(counts.values())} pictures in {len(counts)} categories under {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
