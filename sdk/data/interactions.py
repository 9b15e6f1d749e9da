"""A shop's own interaction log (CSV or Parquet) as per-user item sequences, and optional item metadata.

One row per interaction: a user column, an item column and a time column (numbers or date-times) and/or an
order/position column (e.g. order number, then position in the basket); rows are ordered per user by those keys,
ties keep the file's order. Ids may be integers or strings. Every problem is an :class:`InteractionLogError` that
names the fix: a missing file or column, an empty log, ids or times that are missing or unreadable, item metadata
with duplicate ids or without the log's items.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgecart.runtime.errors import EdgecartError

from .sequences import SequenceData, build_sequences

FORMATS = (".csv", ".parquet", ".pq")


class InteractionLogError(EdgecartError, ValueError):
    """The interaction log or item file cannot be used as given; the message says what to change."""


def _read_table(path: Path, what: str) -> Any:
    import pyarrow as pa

    if not path.is_file():
        raise InteractionLogError(f"{what} {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path)
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InteractionLogError(f"{what} {path} cannot be read ({exc}); give a CSV with a header row or a "
                                  "Parquet file") from None
    raise InteractionLogError(f"{what} {path}: unknown file type {suffix!r}; known: {', '.join(FORMATS)}")


def _column(table: Any, name: str, what: str, path: Path) -> Any:
    if name not in table.column_names:
        raise InteractionLogError(f"{what} {path} has no column {name!r}; its columns are {table.column_names} "
                                  "(choose them with --user-col / --item-col / --time-col / --order-col)")
    return table.column(name)


def _ids(col: Any, name: str, path: Path) -> np.ndarray:
    """Ids as int64 when every value is integral, else as strings; missing ids are an error."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if col.null_count:
        raise InteractionLogError(f"{path}: {col.null_count} rows have no {name!r}; drop or fill them")
    t = col.type
    if pa.types.is_integer(t):
        return col.to_numpy().astype(np.int64)
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

    def describe(self) -> str:
        return (f"{self.rows} rows, {self.users} users, {self.items} items read; kept {self.kept_rows} rows of "
                f"{self.kept_users} users over {self.kept_items} items (items seen >= {self.min_item_count} times, "
                f"users with >= {self.min_length} interactions); ordered by {', '.join(self.ordered_by)}")


def load_interactions(path: str | os.PathLike[str], *, user_col: str = "user_id", item_col: str = "item_id",
                      time_col: str | None = None, order_cols: Sequence[str] = (), min_item_count: int = 5,
                      min_length: int = 3, name: str | None = None) -> tuple[SequenceData, LogInfo]:
    """Read an interaction log (CSV or Parquet) into per-user sequences; returns them and what was kept."""
    p = Path(path)
    table = _read_table(p, "interaction log")
    if table.num_rows == 0:
        raise InteractionLogError(f"interaction log {p} is empty (no rows after the header); give at least "
                                  f"{min_length} interactions per user")
    users = _ids(_column(table, user_col, "interaction log", p), user_col, p)
    items = _ids(_column(table, item_col, "interaction log", p), item_col, p)
    keys_named = ([time_col] if time_col else []) + list(order_cols)
    keys = [_order_key(_column(table, c, "interaction log", p), c, p) for c in keys_named]
    uniq_users, user_code = np.unique(users, return_inverse=True)
    data = build_sequences(name or p.stem, user_code.astype(np.int64), items, keys, min_item_count=min_item_count,
                           min_length=min_length, source=str(p))
    if not data.sequences:
        raise InteractionLogError(
            f"interaction log {p}: no user has {min_length} or more interactions with items seen at least "
            f"{min_item_count} times ({table.num_rows} rows, {len(uniq_users)} users); lower min_item_count in "
            "the config or give a longer log")
    data = SequenceData(data.name, data.item_ids, uniq_users[data.user_ids], data.sequences, data.source)
    used = np.unique(np.concatenate(data.sequences))
    info = LogInfo(int(table.num_rows), int(len(uniq_users)), int(len(np.unique(items))), data.num_interactions,
                   len(data.sequences), int(used.size), tuple(keys_named) or ("row order in the file",),
                   min_item_count, min_length)
    return data, info


def load_item_metadata(path: str | os.PathLike[str], item_ids: np.ndarray, *, id_col: str = "item_id",
                       ) -> tuple[list[dict[str, Any]], int]:
    """Per-item records (every column but the id) in the order of ``item_ids``; returns them and how many rows of
    the file name items outside the log (ignored). Duplicate ids, and log items the file lacks, are errors."""
    p = Path(path)
    table = _read_table(p, "item file")
    ids = _ids(_column(table, id_col, "item file", p), id_col, p)
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
    values = {c: table.column(c).to_pylist() for c in cols}
    records = [{c: json_value(values[c][row_of[v]]) for c in cols} for v in want.tolist()]
    return records, int(len(ids) - len(want))


def json_value(v: Any) -> Any:
    """A table cell as a JSON value: NaN/inf become null, other non-JSON types their string."""
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if np.isfinite(v) else None
    return str(v)
