"""A shop's own interaction log (CSV or Parquet) as per-user item sequences, and optional item metadata.

One row per interaction: a user column, an item column and a time column (numbers or date-times) and/or an
order/position column (e.g. order number, then position in the basket); rows are ordered per user by those keys,
ties keep the file's order. Ids are kept exactly as written (a CSV's ids are its text, so ``00007`` and ``7`` are two
items; a Parquet file's integer ids stay integers). Rows that repeat another row's user, item and time/order keys are
dropped as duplicates (and counted in :class:`LogInfo`). Every problem is an :class:`InteractionLogError` that names
the fix: a missing file or column, an empty log, ids or times that are missing or unreadable, text that is not UTF-8,
too few users for the train/validation/test split, item metadata with duplicate ids or without the log's items.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgecart.runtime.errors import EdgecartError

from . import utf8_fix
from .sequences import SequenceData, build_sequences

FORMATS = (".csv", ".parquet", ".pq")
#: leave-last-out holds out each user's last item (test) and the one before it (validation): 3 items per user at least
MIN_LENGTH = 3
#: users the build needs: the int8 fine-tune (QAT fallback) trains on the histories of at least 2 users
MIN_USERS = 2
_LOG_HINT = "choose them with --user-col / --item-col / --time-col / --order-col"
_ITEMS_HINT = "name the item file's id column with --items-id-col, or items_id_col in the config's [data]"


class InteractionLogError(EdgecartError, ValueError):
    """The interaction log or item file cannot be used as given; the message says what to change."""


def _not_utf8(what: str, path: Path, where: str) -> InteractionLogError:
    return InteractionLogError(f"{what} {path}: {where} is not UTF-8 text; the file must be UTF-8: {utf8_fix(path)}")


def _read_table(path: Path, what: str, text_cols: Sequence[str] = ()) -> Any:
    """The file as a pyarrow table; a CSV's ``text_cols`` are read as raw text (no number inference)."""
    import pyarrow as pa

    if not path.is_file():
        raise InteractionLogError(f"{what} {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            # binary, not string: bytes that are not UTF-8 get a typed error naming the column (see _text)
            types = {c: pa.binary() for c in text_cols}
            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=types))
        elif suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            raise InteractionLogError(f"{what} {path}: unknown file type {suffix!r}; known: {', '.join(FORMATS)}")
    except (pa.ArrowInvalid, OSError) as exc:
        raise InteractionLogError(f"{what} {path} cannot be read ({exc}); give a CSV with a header row or a "
                                  "Parquet file") from None
    try:
        _ = table.column_names
    except UnicodeDecodeError:
        raise _not_utf8(what, path, "the header row") from None
    return table


def _column(table: Any, name: str, what: str, path: Path, hint: str = _LOG_HINT) -> Any:
    if name not in table.column_names:
        raise InteractionLogError(f"{what} {path} has no column {name!r}; its columns are {table.column_names} "
                                  f"({hint})")
    return table.column(name)


def _text(col: Any, name: str, what: str, path: Path) -> Any:
    """A binary column decoded as UTF-8 strings (other columns unchanged); bytes that are not UTF-8 are an error."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
        return col
    try:
        return pc.cast(col, pa.string())
    except pa.ArrowInvalid:
        pass
    for row, v in enumerate(col.to_pylist()):
        try:
            if v is not None:
                v.decode("utf-8")
        except UnicodeDecodeError:
            raise _not_utf8(what, path, f"column {name!r} (row {row + 1} after the header: {v!r})") from None
    raise _not_utf8(what, path, f"column {name!r}")


def _ids(col: Any, name: str, path: Path, what: str = "interaction log") -> np.ndarray:
    """Ids as written: integers stay int64 (integral floats too), text stays text (stripped); missing ids and
    non-integral numbers are errors."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if col.null_count:
        raise InteractionLogError(f"{path}: {col.null_count} rows have no {name!r}; drop or fill them")
    col = _text(col, name, what, path)
    t = col.type
    if pa.types.is_integer(t):
        v = col.to_numpy()
        if v.dtype.kind == "u" and v.size and v.max() > np.iinfo(np.int64).max:
            return v.astype(str)
        return v.astype(np.int64)
    if pa.types.is_floating(t):
        v = col.to_numpy()
        if np.all(np.isfinite(v)) and np.all(v == np.round(v)) and np.all(np.abs(v) < 2**53):
            return v.astype(np.int64)
        raise InteractionLogError(f"{path}: column {name!r} holds non-integral numbers; ids must be integers or text")
    v = pc.cast(col, pa.string()).to_numpy(zero_copy_only=False).astype(str)
    if np.any(np.char.str_len(np.char.strip(v)) == 0):
        raise InteractionLogError(f"{path}: column {name!r} has empty ids; drop or fill those rows")
    return np.char.strip(v)


def _order_key(col: Any, name: str, path: Path) -> np.ndarray:
    """A sortable int64/float64 key from numbers or date-times (timestamps, dates, ISO strings)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if col.null_count:
        raise InteractionLogError(f"{path}: {col.null_count} rows have no {name!r}; drop or fill them")
    col = _text(col, name, "interaction log", path)
    t = col.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return pc.cast(pc.cast(col, pa.timestamp("us")), pa.int64()).to_numpy()
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return col.to_numpy().astype(np.float64)
    try:
        return pc.cast(pc.cast(col, pa.timestamp("us")), pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InteractionLogError(f"{path}: column {name!r} holds neither numbers nor date-times (e.g. "
                                  "2024-05-01T10:00:00); give a sortable time or position column") from None


@dataclass(frozen=True)
class LogInfo:
    """What the loader did to the log: rows read, rows and users kept, and why others were dropped."""

    rows: int
    users: int
    items: int
    kept_rows: int
    kept_users: int
    kept_items: int
    ordered_by: tuple[str, ...]
    min_item_count: int
    min_length: int
    duplicates: int = 0  # rows dropped as exact duplicates of an earlier row in the columns ``duplicate_key``
    duplicate_key: tuple[str, ...] = ()

    def describe(self) -> str:
        dup = (f"; dropped {self.duplicates} exact duplicate rows (same {', '.join(self.duplicate_key)})"
               if self.duplicates else "")
        return (f"{self.rows} rows, {self.users} users, {self.items} items read{dup}; kept {self.kept_rows} rows of "
                f"{self.kept_users} users over {self.kept_items} items (items seen >= {self.min_item_count} times, "
                f"users with >= {self.min_length} interactions); ordered by {', '.join(self.ordered_by)}")


def first_occurrences(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Boolean mask of the rows that do not repeat an earlier row in every one of ``columns``."""
    n = len(columns[0]) if columns else 0
    if n == 0:
        return np.ones(0, bool)
    codes = [np.unique(np.asarray(c), return_inverse=True)[1].reshape(-1) for c in columns]
    order = np.lexsort(codes[::-1])  # stable: equal rows stay in file order, the first of each run is the earliest
    same = np.ones(n - 1, bool)
    for c in codes:
        cs = c[order]
        same &= cs[1:] == cs[:-1]
    keep = np.ones(n, bool)
    keep[order[1:][same]] = False
    return keep


def load_interactions(path: str | os.PathLike[str], *, user_col: str = "user_id", item_col: str = "item_id",
                      time_col: str | None = None, order_cols: Sequence[str] = (), min_item_count: int = 5,
                      min_length: int = 3, name: str | None = None) -> tuple[SequenceData, LogInfo]:
    """Read an interaction log (CSV or Parquet) into per-user sequences; returns them and what was kept.

    With a time or order column, rows that repeat an earlier row's user, item, time and order values are dropped
    (a doubled export would otherwise put each test item into the user's history); without one every row counts."""
    p = Path(path)
    if min_length < MIN_LENGTH or min_item_count < 1:
        raise InteractionLogError(f"min_length is {min_length} and min_item_count {min_item_count}: min_length must "
                                  f"be at least {MIN_LENGTH} (each user's last item is the test target, the one before "
                                  "it the validation target, the rest the training history) and min_item_count at "
                                  "least 1")
    table = _read_table(p, "interaction log", (user_col, item_col))
    if table.num_rows == 0:
        raise InteractionLogError(f"interaction log {p} is empty (no rows after the header); give at least "
                                  f"{min_length} interactions per user")
    users = _ids(_column(table, user_col, "interaction log", p), user_col, p)
    items = _ids(_column(table, item_col, "interaction log", p), item_col, p)
    keys_named = ([time_col] if time_col else []) + list(order_cols)
    keys = [_order_key(_column(table, c, "interaction log", p), c, p) for c in keys_named]
    uniq_users, user_code = np.unique(users, return_inverse=True)
    user_code, n_items = user_code.reshape(-1).astype(np.int64), int(len(np.unique(items)))
    duplicates = 0
    if keys:
        keep = first_occurrences([user_code, items, *keys])
        duplicates = int(len(keep) - keep.sum())
        if duplicates:
            user_code, items, keys = user_code[keep], items[keep], [k[keep] for k in keys]
    data = build_sequences(name or p.stem, user_code, items, keys, min_item_count=min_item_count,
                           min_length=min_length, source=str(p))
    if not data.sequences:
        raise InteractionLogError(
            f"interaction log {p}: no user has {min_length} or more interactions with items seen at least "
            f"{min_item_count} times ({table.num_rows} rows, {len(uniq_users)} users); lower [data] min_item_count in "
            "the --config file or give a longer log")
    if len(data.sequences) < MIN_USERS:
        raise InteractionLogError(
            f"interaction log {p}: only {len(data.sequences)} user has {min_length} or more interactions with items "
            f"seen at least {min_item_count} times ({table.num_rows} rows, {len(uniq_users)} user(s) in the file); "
            f"a build needs at least {MIN_USERS} users: each user's last item is held out as the test target and the "
            "one before it as the validation target, and the int8 fine-tune trains on the histories of at least 2 "
            "users; give a log with more users")
    data = SequenceData(data.name, data.item_ids, uniq_users[data.user_ids], data.sequences, data.source)
    used = np.unique(np.concatenate(data.sequences))
    info = LogInfo(int(table.num_rows), int(len(uniq_users)), n_items, data.num_interactions, len(data.sequences),
                   int(used.size), tuple(keys_named) or ("row order in the file",), min_item_count, min_length,
                   duplicates, (user_col, item_col, *keys_named) if keys_named else ())
    return data, info


def load_item_metadata(path: str | os.PathLike[str], item_ids: np.ndarray, *, id_col: str = "item_id",
                       ) -> tuple[list[dict[str, Any]], int]:
    """Per-item records (every column but the id) in the order of ``item_ids``; returns them and how many rows of
    the file name items outside the log (ignored). Duplicate ids, and log items the file lacks, are errors."""
    p = Path(path)
    table = _read_table(p, "item file", (id_col,))
    ids = _ids(_column(table, id_col, "item file", p, _ITEMS_HINT), id_col, p, "item file")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][:5].tolist()
        raise InteractionLogError(f"item file {p}: {int((counts > 1).sum())} ids appear more than once (e.g. {dup}); "
                                  "keep one row per item")
    want = np.asarray(item_ids)
    if want.dtype.kind != ids.dtype.kind:
        want, ids = want.astype(str), ids.astype(str)
    row_of = {v: i for i, v in enumerate(ids.tolist())}
    missing = [v for v in want.tolist() if v not in row_of]
    if missing:
        raise InteractionLogError(f"item file {p} lacks {len(missing)} of the log's {len(want)} items (e.g. "
                                  f"{missing[:5]}); add rows for them, or build without --items")
    cols = [c for c in table.column_names if c != id_col]
    values = {c: _text(table.column(c), c, "item file", p).to_pylist() for c in cols}
    records = [{c: json_value(values[c][row_of[v]]) for c in cols} for v in want.tolist()]
    return records, int(len(ids) - len(want))


def json_value(v: Any) -> Any:
    """A table cell as a JSON value: NaN/inf become null, bytes their UTF-8 text, other non-JSON types their string.
    Bytes that are not UTF-8 are an :class:`InteractionLogError` (never a ``"b'...'"`` repr)."""
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if np.isfinite(v) else None
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise InteractionLogError(f"a metadata cell holds bytes that are not UTF-8 text ({bytes(v)[:40]!r}); "
                                      "save the file as UTF-8, e.g. iconv -f latin1 -t utf-8 FILE > "
                                      "FILE-utf8.csv") from None
    return str(v)
