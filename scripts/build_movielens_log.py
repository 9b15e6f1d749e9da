"""Write MovieLens-100K as a shop's own files: an interaction log CSV and an items CSV, under a folder you give.

    .venv/bin/python scripts/build_movielens_log.py OUT_DIR

OUT_DIR/ratings.csv: user_id, item_id, rating, timestamp (100,000 rows, the file order of the copy shipped in the
``recbole`` wheel); OUT_DIR/items.csv: item_id, title, year, genres. Then::

    edgecart build recommendations --interactions OUT_DIR/ratings.csv --user-col user_id --item-col item_id \\
        --time-col timestamp --items OUT_DIR/items.csv --out BUILD

MovieLens terms (GroupLens): research use; cite F. M. Harper and J. A. Konstan, ACM TiiS 5(4), 2015.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    header = [h.split(":")[0] for h in lines[0].split("\t")]
    return header, [ln.split("\t") for ln in lines[1:] if ln.strip()]


def write_files(out: Path) -> tuple[Path, Path, int, int]:
    from edgecart.data.movielens import movielens_path

    inter = movielens_path()
    out.mkdir(parents=True, exist_ok=True)
    header, rows = _rows(inter)
    ratings = out / "ratings.csv"
    with open(ratings, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    iheader, irows = _rows(inter.with_suffix(".item"))
    names = {"movie_title": "title", "release_year": "year", "class": "genres"}
    items = out / "items.csv"
    with open(items, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([names.get(h, h) for h in iheader])
        w.writerows(r + [""] * (len(iheader) - len(r)) for r in irows)
    return ratings, items, len(rows), len(irows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to write ratings.csv and items.csv into")
    a = ap.parse_args(argv)
    ratings, items, n, m = write_files(Path(a.out))
    print(f"{ratings}: {n} interactions; {items}: {m} items", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
