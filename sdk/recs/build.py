"""Next-item recommendations from your own interaction log: teacher, distilled student, verified bundle.

``edgecart build recommendations --interactions log.csv --user-col user --item-col item --time-col ts --out OUT``
(CSV or Parquet; ``--order-col`` for an order/position column instead of, or after, the time), optional
``--items items.csv`` whose columns (names, categories, ...) are carried into the bundle, ``--config build.toml`` for
the rest (see :func:`load_config`). The log is split leave-last-out per user: training, validation (every choice) and
test (the reported figures). ``OUT/bundle`` is the bundle; ``OUT/summary.md``, ``summary.json`` and ``summary.png``
the report. ``edgecart demo --task recommendations`` runs this same path (:func:`build`) on Instacart and
MovieLens-100K.

This module stays light at import (no torch): the CLI builds its parser from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecart.config import ConfigError, positive_int
from edgecart.outputs import BuildOutputError, check_out, remove_made
from edgecart.runtime.errors import EdgecartError

if TYPE_CHECKING:
    from edgecart.data.sequences import SequenceData

    from .config import RecsConfig
    from .pipeline import DatasetResult


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interactions", required=True, metavar="FILE", help="interaction log, CSV or Parquet, one row "
                   "per interaction")
    p.add_argument("--out", required=True, help="output folder (bundle under OUT/bundle, report OUT/summary.*)")
    p.add_argument("--user-col", default=None, help="user id column (default: the config's, else user_id)")
    p.add_argument("--item-col", default=None, help="item id column (default: the config's, else item_id)")
    p.add_argument("--time-col", default=None, help="time column: numbers or date-times")
    p.add_argument("--order-col", action="append", default=None, metavar="COL",
                   help="order/position column(s), sorted after --time-col; repeat for several (e.g. order number, "
                        "then position in the basket). Without time and order columns the file's row order is used")
    p.add_argument("--items", metavar="FILE", help="item file (CSV or Parquet): an id column (--items-id-col) and "
                   "any metadata columns, carried into the bundle")
    p.add_argument("--items-id-col", default=None, help="id column of --items (default: the --item-col name)")
    p.add_argument("--config", metavar="TOML", help="build.toml: [data] loader settings and the recommendations "
                   "settings (teacher, student, teacher_train, student_train, distill, formats, ...)")
    p.add_argument("--name", help="bundle name (default: the log's file name)")
    p.add_argument("--threads", type=positive_int, help="torch threads, >= 1 (default: the cores free now)")
    p.add_argument("--cache", help="cache for the teacher (default: OUT/cache)")
    p.add_argument("--no-cache", action="store_true", help="train everything afresh and cache nothing")


#: [data] keys of build.toml
DATA_KEYS = {"user_col": "user_id", "item_col": "item_id", "time_col": None, "order_cols": [],
             "items_id_col": None, "min_item_count": 5, "min_length": 3}


def load_config(path: str | Path | None) -> tuple[dict[str, Any], RecsConfig]:
    """(data settings, RecsConfig) from a build.toml; its top-level keys other than [data] are RecsConfig fields
    (unknown keys are an error that lists the known ones). Without a file: the build defaults. A file that sets
    ``[teacher] dim`` without ``teacher_dims`` gets that width only (no choice among the default widths).

    ``min_item_count`` (items seen fewer times are dropped from the log) belongs under ``[data]``; the RecsConfig
    field of that name is honoured at the top level too, and the two are kept equal (the bundle's manifest records
    the value used). Every problem is a :class:`~edgecart.config.ConfigError`."""
    import tomllib

    from .config import RecsConfig

    doc: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"--config {p}: no such file")
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--config {p} is not valid TOML: {exc}") from None
    data = dict(DATA_KEYS)
    given = doc.pop("data", {})
    if not isinstance(given, dict):
        raise ConfigError("config: [data] must be a table (a [data] section)")
    unknown = sorted(set(given) - set(DATA_KEYS))
    if unknown:
        raise ConfigError(f"config: unknown [data] keys {unknown}; known: {sorted(DATA_KEYS)}")
    data.update(given)
    if "min_item_count" in given:
        if "min_item_count" in doc and doc["min_item_count"] != given["min_item_count"]:
            raise ConfigError(f"config: min_item_count is set twice, {doc['min_item_count']!r} at the top level and "
                              f"{given['min_item_count']!r} under [data]; keep only [data] min_item_count")
        doc["min_item_count"] = given["min_item_count"]
    base = build_defaults().to_dict()
    if "dim" in doc.get("teacher", {}) and "teacher_dims" not in doc:
        base["teacher_dims"] = []  # a width the user names is the teacher's width, not one candidate among the defaults
    for k, v in doc.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    try:
        cfg = RecsConfig.from_dict(base)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config: {exc}") from None
    data["min_item_count"] = cfg.min_item_count
    return data, cfg


def build_defaults() -> RecsConfig:
    """The settings of a build without a config file: :func:`recipe`."""
    return recipe()


def recipe() -> RecsConfig:
    """The validated recommendations recipe (benchmarks/results/recs/README.md, rounds 3, 5 and 6): a teacher of three
    one-block SASRecs from seeds 0, 1, 2 (their mean log-probabilities), each 32-d or 60-d as the data set's
    validation prefers (one member of each width is compared; on Instacart 60-d wins, round 6), a 16-d one-block
    student (0.15 of a 32-d teacher's parameters), every model 30 epochs at lr 3e-3 with a cosine decay, batches of
    64, the best validation epoch kept; distillation over the teacher's top 10 at T=1, alpha 0.5 (on validation it
    beats the former top 100 at T=2 in every comparison made: 3 seeds on MovieLens-100K, one on Instacart and on
    MovieLens-1M). On MovieLens-100K small models generalise better than 64-d/128-d two-block ones (which overfit
    the 943 users' 97k training targets)."""
    from .config import DistillConfig, ModelSize, RecsConfig, TrainConfig

    train = TrainConfig(epochs=30, batch_size=64, lr=3e-3, schedule="cosine")
    return RecsConfig(teacher=ModelSize(32, 1, 1, 0.2), student=ModelSize(16, 1, 1, 0.1), teacher_seeds=3,
                      teacher_dims=(32, 60), teacher_train=train, student_train=train,
                      distill=DistillConfig(top_k=10, temperature=1.0, alpha=0.5))


def build(data: SequenceData, cfg: RecsConfig, out: Path, *, cache: Path | None, progress: Any = print,
          metadata: list[dict[str, Any]] | None = None, notes: tuple[str, ...] = ()) -> DatasetResult:
    """The one recommendations build: run the pipeline on ``data``, bundle to ``out/bundle``, report to ``out``."""
    from .pipeline import RecsSummary, run_dataset, write_summary
    from .report import plot_summary

    out = Path(out)
    res = run_dataset(data, cfg, out / "bundle", cache, progress, metadata=metadata)
    summary = RecsSummary((res,), res.seconds)
    write_summary(summary, out, notes=notes)
    plot_summary(summary, out / "summary.png")
    return res


def run(args: argparse.Namespace) -> int:
    from edgecart.data.interactions import InteractionLogError, load_interactions, load_item_metadata

    settings, cfg = load_config(args.config)
    user_col = args.user_col or settings["user_col"]
    item_col = args.item_col or settings["item_col"]
    time_col = args.time_col or settings["time_col"]
    order_cols = args.order_col or list(settings["order_cols"])
    out = Path(args.out)
    if args.threads is not None:
        import dataclasses

        cfg = dataclasses.replace(cfg, threads=args.threads)
    cache = None if args.no_cache else Path(args.cache) if args.cache else out / "cache"
    made = check_out(out, cache if args.cache and not args.no_cache else None)
    try:
        data, info = load_interactions(args.interactions, user_col=user_col, item_col=item_col, time_col=time_col,
                                       order_cols=order_cols, min_item_count=settings["min_item_count"],
                                       min_length=settings["min_length"], name=args.name)
        metadata = None
        notes = [f"log {args.interactions}: {info.describe()}"]
        if args.items:
            metadata, extra = load_item_metadata(args.items, data.item_ids,
                                                 id_col=args.items_id_col or settings["items_id_col"] or item_col)
            notes.append(f"items {args.items}: metadata for {len(metadata)} items carried into the bundle"
                         + (f"; {extra} rows name items not in the kept log (ignored)" if extra else ""))
        from .pipeline import check_student_size

        check_student_size(data, cfg)
    except InteractionLogError as exc:
        remove_made(made)
        print(f"edgecart build recommendations: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        remove_made(made)
        raise
    for n in notes:
        print(n, flush=True)
    if not (time_col or order_cols):
        print("note: no --time-col or --order-col: each user's rows are taken in the file's order", flush=True)
    try:
        res = build(data, cfg, out, cache=cache, metadata=metadata, notes=tuple(notes))
    except OSError as exc:
        if isinstance(exc, EdgecartError):
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        raise BuildOutputError(f"the build stopped on a file error: {exc.strerror or exc}{where}; free space or fix "
                               "the permissions there, or choose another --out (or --cache)") from None
    print((out / "summary.md").read_text(encoding="utf-8"))
    print(f"bundle: {res.bundle}")
    return 0
