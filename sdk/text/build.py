"""Build a customer-service text bundle (routing + similar-text search) from your own CSV of messages.

``edgecart build text --csv messages.csv --text-column text --label-column topic [--group-column team]``: the
MiniLM teacher embeds the messages, a small student is distilled into its space, routing heads are fitted for the
label (``class``) and the group (``department``; the label again when no group column is given), and a verified
``text_search`` bundle is written with int8 through the quality gate. Light at import (no torch).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", required=True, help="a CSV file with a header row")
    p.add_argument("--text-column", default="text", help="column holding the message (default: text)")
    p.add_argument("--label-column", required=True, help="column holding the routing label")
    p.add_argument("--group-column", default=None, help="optional coarser label (default: the label again)")
    p.add_argument("--out", default="out/text", help="where the bundle and summary go (default: out/text)")
    p.add_argument("--name", default="text-custom", help="bundle name (default: text-custom)")
    p.add_argument("--cache", default=None, help="cache for teacher embeddings and students (default: OUT/cache)")
    p.add_argument("--config", default=None, help="a JSON file of TextConfig fields to override")
    p.add_argument("--valid", type=float, default=0.15, help="validation share (default: 0.15)")
    p.add_argument("--test", type=float, default=0.15, help="test share (default: 0.15)")
    p.add_argument("--formats", default=None, help="comma-separated formats (default: executorch,onnx,tflite)")


def read_csv(path: Path, text_col: str, label_col: str, group_col: str | None):  # -> TextSet
    import numpy as np
    from edgecart.data.reviews import TextSet
    from edgecart.data.sequences import DatasetMissingError

    if not path.is_file():
        raise DatasetMissingError(f"{path}: no such file; pass --csv with your messages")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        for c in (text_col, label_col, group_col):
            if c is not None and c not in cols:
                raise ValueError(f"{path}: no column {c!r}; the columns are {cols}")
        rows = [(r[text_col] or "", r[label_col] or "", (r[group_col] or "") if group_col else r[label_col] or "")
                for r in reader]
    rows = [r for r in rows if r[0].strip() and r[1].strip()]
    if len(rows) < 20:
        raise ValueError(f"{path}: {len(rows)} usable rows (text and label present); at least 20 are needed")
    labels, groups = sorted({r[1] for r in rows}), sorted({r[2] for r in rows})
    li, gi = {v: i for i, v in enumerate(labels)}, {v: i for i, v in enumerate(groups)}
    return TextSet(path.stem, tuple(r[0] for r in rows), np.zeros(len(rows), np.int64),
                   np.asarray([gi[r[2]] for r in rows], np.int64), np.asarray([li[r[1]] for r in rows], np.int64),
                   tuple(groups), tuple(labels), tuple(f"row-{i + 1}" for i in range(len(rows))))


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from edgecart.data.reviews import stratified_split

    from .config import TextConfig
    from .pipeline import run as run_pipeline
    from .pipeline import write_summary

    data = read_csv(Path(args.csv), args.text_column, args.label_column, args.group_column)
    if not (0 < args.valid < 0.5 and 0 < args.test < 0.5):
        raise SystemExit("edgecart build text: --valid and --test must be shares in (0, 0.5)")
    n_valid, n_test = max(1, int(len(data) * args.valid)), max(1, int(len(data) * args.test))
    cfg = TextConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config else TextConfig()
    cfg = dataclasses.replace(cfg, train=len(data) - n_valid - n_test, valid=n_valid, test=n_test,
                              gate_queries=min(cfg.gate_queries, n_valid), catalog_grocery=False)
    if args.formats:
        cfg = dataclasses.replace(cfg, formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()))
    split = stratified_split(data, n_valid, n_test, seed=cfg.split_seed)
    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out / "cache"
    summary = run_pipeline(cfg, out, cache=cache, split=split, grocery=(), name=args.name)
    write_summary(summary, out)
    print(summary)
    return 0
