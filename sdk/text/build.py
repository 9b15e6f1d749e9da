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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecart.config import ConfigError
from edgecart.data import utf8_fix
from edgecart.runtime.errors import EdgecartError

if TYPE_CHECKING:
    from edgecart.data.reviews import TextSet, TextSplit

    from .config import TextConfig

#: texts may be long (a pasted e-mail thread): the csv module's default field limit is 128 KiB
FIELD_LIMIT = 16 * 1024 * 1024
#: how many row numbers a note lists before "..."
SHOW_ROWS = 10
MIN_ROWS = 20


class TextDataError(EdgecartError, ValueError):
    """The messages CSV of ``edgecart build text`` cannot be used: not UTF-8, a missing column, too few usable rows
    or fewer than two labels."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", required=True, help="a CSV file with a header row")
    p.add_argument("--text-column", default="text", help="column holding the message (default: text)")
    p.add_argument("--label-column", required=True, help="column holding the routing label")
    p.add_argument("--group-column", default=None, help="optional coarser label (default: the label again)")
    p.add_argument("--out", default="out/text", help="where the bundle and summary go (default: out/text)")
    p.add_argument("--name", default="text-custom", help="bundle name, the folder OUT/NAME (default: text-custom)")
    p.add_argument("--cache", default=None, help="cache for teacher embeddings and students (default: OUT/cache)")
    p.add_argument("--config", default=None, help="a JSON file of TextConfig fields to override")
    p.add_argument("--valid", type=float, default=0.15, help="validation share (default: 0.15)")
    p.add_argument("--test", type=float, default=0.15, help="test share (default: 0.15)")
    p.add_argument("--formats", default=None, help="comma-separated formats (default: executorch,onnx,tflite)")


@dataclass(frozen=True)
class CsvMessages:
    """The usable messages of a CSV, and the data rows (1 = the first row after the header) left out."""

    data: TextSet
    rows: int
    dropped: tuple[int, ...]
    required: str
    source: str

    def note(self) -> str:
        if not self.dropped:
            return ""
        shown = ", ".join(str(r) for r in self.dropped[:SHOW_ROWS]) + (", ..." if len(self.dropped) > SHOW_ROWS
                                                                          else "")
        return (f"{self.source}: left out {len(self.dropped)} rows of {self.rows} without {self.required} "
                f"(data rows {shown}; catalog ids row-N keep the CSV's data row numbers)")


def read_messages(path: Path, text_col: str, label_col: str, group_col: str | None) -> CsvMessages:
    """Read the CSV (UTF-8, a byte-order mark allowed). The message of data row N (the N-th row after the header)
    gets the id ``row-N``; rows without text or label (or group, with a group column) are left out and listed."""
    import numpy as np
    from edgecart.data.reviews import TextSet
    from edgecart.data.sequences import DatasetMissingError

    path = Path(path)
    if not path.is_file():
        raise DatasetMissingError(f"{path}: no such file; pass --csv with your messages")
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise TextDataError(f"{path}: empty file; the first row must name the columns (e.g. text,label)")
            cols = [c.strip() for c in header]
            where = {}
            for c, flag in ((text_col, "--text-column"), (label_col, "--label-column"), (group_col, "--group-column")):
                if c is None:
                    continue
                if c not in cols:
                    raise TextDataError(f"{path}: no column {c!r} for {flag}; the columns are {cols}; pass {flag} "
                                        "with one of them")
                where[c] = cols.index(c)
            records = list(reader)
    except UnicodeDecodeError as exc:
        raise TextDataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); {utf8_fix(path)}, and pass "
                            "the converted file") from None
    except csv.Error as exc:
        raise TextDataError(f"{path}: not a readable CSV ({exc}); save it as CSV (comma-separated, UTF-8)") from None
    while records and not records[-1]:  # blank lines at the end of the file are not rows
        records.pop()

    def cell(r: list[str], c: str | None) -> str:
        i = where.get(c, len(r)) if c is not None else len(r)
        return r[i] if i < len(r) else ""

    kept: list[tuple[str, str, str, int]] = []
    dropped: list[int] = []
    for n, r in enumerate(records, 1):
        text, label = cell(r, text_col), cell(r, label_col).strip()
        group = cell(r, group_col).strip() if group_col else label
        if text.strip() and label and group:
            kept.append((text, label, group, n))
        else:
            dropped.append(n)
    required = "text or label" + (" or group" if group_col else "")
    if len(kept) < MIN_ROWS:
        raise TextDataError(f"{path}: {len(kept)} usable rows of {len(records)} (text and label present in columns "
                            f"{text_col!r} and {label_col!r}); at least {MIN_ROWS} are needed: add messages or pass "
                            "the right --text-column / --label-column")
    labels, groups = sorted({r[1] for r in kept}), sorted({r[2] for r in kept})
    li, gi = {v: i for i, v in enumerate(labels)}, {v: i for i, v in enumerate(groups)}
    data = TextSet(path.stem, tuple(r[0] for r in kept), np.zeros(len(kept), np.int64),
                   np.asarray([gi[r[2]] for r in kept], np.int64), np.asarray([li[r[1]] for r in kept], np.int64),
                   tuple(groups), tuple(labels), tuple(f"row-{r[3]}" for r in kept))
    return CsvMessages(data, len(records), tuple(dropped), required, str(path))


def read_csv(path: Path, text_col: str, label_col: str, group_col: str | None) -> TextSet:
    """The usable messages of the CSV (see :func:`read_messages`)."""
    return read_messages(path, text_col, label_col, group_col).data


def _is_number(text: str) -> bool:
    try:
        float(text.strip().replace(",", ""))
    except ValueError:
        return False
    return True


def check_data(data: TextSet, text_col: str, label_col: str, source: str | None = None) -> list[str]:
    """Refuse data the routing head cannot learn from (fewer than two labels); return warnings (texts that are all
    numbers: most likely the wrong column)."""
    if len(data.class_names) < 2:
        raise TextDataError(f"{source or data.name}: every message has the label {data.class_names[0]!r} in column "
                            f"{label_col!r}; routing needs at least two labels to choose between: pass the right "
                            "--label-column or add messages of other labels")
    notes = []
    if all(_is_number(t) for t in data.texts):
        notes.append(f"every text in column {text_col!r} is a number: is --text-column the column holding the "
                     "messages?")
    return notes


def split_notes(split: TextSplit) -> list[str]:
    """What the shipped bundle leaves out: the held-out messages (not in the catalog) and the labels left with no
    training example (the routing head knows their name but never learned them)."""
    held = len(split.valid) + len(split.test)
    notes = [f"the catalog ships the {len(split.train)} training messages; the {held} held-out validation and test "
             "messages (they measure the bundle) are not in the catalog"]
    for level, flag in (("class", "label"), ("department", "group")):
        names = split.train.label_names(level)
        seen = set(split.train.labels(level).tolist())
        missing = [names[i] for i in range(len(names)) if i not in seen]
        if missing and (level == "class" or names != split.train.class_names):
            notes.append(f"{len(missing)} {flag}(s) have no training example (their only messages were held out), "
                         f"so routing never learned them and the catalog holds none of their messages: {missing}; "
                         f"give every {flag} at least 3 messages")
    return notes


def check_name(name: str) -> None:
    """The bundle goes to OUT/NAME: one plain folder name, as the image build's ``name`` rule."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise TextDataError(f"--name {name!r} must be a non-empty bundle name without '/' (nor '.' or '..'): the "
                            "bundle is written to OUT/NAME")


def check_out(out: Path, cache: Path, name: str) -> list[Path]:
    """Refuse, before anything is read or trained, an ``--out`` (or ``--cache``) the build could not write, or an
    OUT/NAME that is not an edgecart bundle (the build would replace it). Returns the folders it made."""
    from edgecart import outputs

    if (out / name).absolute() == cache.absolute():
        raise outputs.BuildOutputError(f"--name {name!r}: OUT/{name} is the cache folder {cache}; choose another "
                                       "--name (or another --cache)")
    return outputs.check_out(out, cache, bundle=name)


def load_config(path: str | None) -> TextConfig:
    from .config import TextConfig

    if path is None:
        return TextConfig()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {p}: no such file; pass a JSON file of TextConfig fields")
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--config {p}: not valid JSON ({exc}); fix the file") from None
    try:
        return TextConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"--config {p}: {exc}") from None


def parse_formats(text: str) -> tuple[str, ...]:
    from .config import FORMATS

    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"--formats {text!r}: expected a comma-separated subset of {', '.join(FORMATS)}")
    return formats


def _say(note: str) -> None:
    print(f"edgecart build text: note: {note}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from edgecart.outputs import remove_made

    check_name(args.name)
    if not (0 < args.valid < 0.5 and 0 < args.test < 0.5):
        raise ConfigError("--valid and --test must be shares in (0, 0.5), e.g. --valid 0.15 --test 0.15")
    formats = parse_formats(args.formats) if args.formats else None
    cfg = load_config(args.config)
    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out / "cache"
    made = check_out(out, cache, args.name)
    try:
        msgs = read_messages(Path(args.csv), args.text_column, args.label_column, args.group_column)
        data = msgs.data
        notes = [msgs.note()] if msgs.dropped else []
        notes += check_data(data, args.text_column, args.label_column, args.csv)
        n_valid, n_test = max(1, int(len(data) * args.valid)), max(1, int(len(data) * args.test))
        try:
            cfg = dataclasses.replace(cfg, train=len(data) - n_valid - n_test, valid=n_valid, test=n_test,
                                      gate_queries=min(cfg.gate_queries, n_valid), catalog_grocery=False,
                                      **({"formats": formats} if formats else {}))
        except ValueError as exc:
            raise ConfigError(f"edgecart build text: {exc}") from None
    except EdgecartError:
        remove_made(made)
        raise

    from edgecart.data.reviews import stratified_split

    from .pipeline import run as run_pipeline
    from .pipeline import write_summary

    split = stratified_split(data, n_valid, n_test, seed=cfg.split_seed)
    notes += split_notes(split)
    for n in notes:
        _say(n)
    summary = run_pipeline(cfg, out, cache=cache, split=split, grocery=(), name=args.name)
    summary.extra["data"] = _data_record(msgs)
    summary.extra["notes"] = notes
    write_summary(summary, out)
    print(summary)
    for n in notes:
        _say(n)
    return 0


def _data_record(msgs: CsvMessages) -> dict[str, Any]:
    return {"csv": msgs.source, "rows": msgs.rows, "messages": len(msgs.data), "dropped_rows": len(msgs.dropped),
            "dropped_first": list(msgs.dropped[:SHOW_ROWS]), "labels": len(msgs.data.class_names),
            "groups": len(msgs.data.department_names)}
