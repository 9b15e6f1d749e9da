"""The interaction-log loader on user-supplied files: ids kept as the file's text, non-UTF-8 bytes as typed errors,
exact duplicate rows dropped (and counted), too few users refused up front. Loader functions only, no training."""

from __future__ import annotations

import pytest
from edgecart.data.interactions import InteractionLogError, json_value, load_interactions, load_item_metadata
from edgecart.runtime.errors import EdgecartError

COLS = {"user_col": "user", "item_col": "item", "time_col": "ts"}


def _write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _cycle(users: list[str], items: list[str], length: int = 6) -> str:
    """A CSV log: user n walks ``items`` from position n, one step per second."""
    lines = ["user,item,ts"]
    for n, u in enumerate(users):
        lines += [f"{u},{items[(n + t) % len(items)]},{100 + t}" for t in range(length)]
    return "\n".join(lines) + "\n"


def _seqs(data) -> list[list]:
    return [[data.item_ids[i - 1].item() for i in s] for s in data.sequences]


def test_numeric_looking_csv_ids_are_kept_as_the_files_text(tmp_path):
    items = ["00007", "7", "1.0", "1", "1.5", "007"]
    p = _write(tmp_path / "log.csv", _cycle(["001", "1", "01"], items))
    data, info = load_interactions(p, **COLS, min_item_count=1)
    assert sorted(data.item_ids.tolist()) == sorted(items) and data.item_ids.dtype.kind == "U"
    assert sorted(data.user_ids.tolist()) == ["001", "01", "1"]
    assert (info.users, info.items, info.kept_users, info.kept_items) == (3, 6, 3, 6)
    assert _seqs(data)[0] == ["00007", "7", "1.0", "1", "1.5", "007"]


def test_parquet_integer_ids_stay_integers_and_float_ids_do_not_merge(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    users, items = [1, 1, 1, 2, 2, 2], [7, 8, 9, 9, 8, 7]
    ts = [1, 2, 3, 1, 2, 3]
    pq.write_table(pa.table({"user": users, "item": items, "ts": ts}), tmp_path / "int.parquet")
    data, _ = load_interactions(tmp_path / "int.parquet", **COLS, min_item_count=1)
    assert data.item_ids.dtype.kind == "i" and data.item_ids.tolist() == [7, 8, 9]
    assert _seqs(data) == [[7, 8, 9], [9, 8, 7]]
    floats = [1.0, 1.5, 2.0, 1.5, 1.0, 2.0]
    pq.write_table(pa.table({"user": users, "item": floats, "ts": ts}), tmp_path / "float.parquet")
    with pytest.raises(InteractionLogError, match="'item' holds non-integral numbers"):
        load_interactions(tmp_path / "float.parquet", **COLS, min_item_count=1)


def test_item_metadata_matches_text_ids_exactly(tmp_path):
    p = _write(tmp_path / "log.csv", _cycle(["u1", "u2"], ["00007", "7", "8"]))
    data, _ = load_interactions(p, **COLS, min_item_count=1)
    items = _write(tmp_path / "items.csv", "item,name\n7,seven\n00007,padded seven\n8,eight\n")
    records, extra = load_item_metadata(items, data.item_ids, id_col="item")
    assert extra == 0
    assert {i: r["name"] for i, r in zip(data.item_ids.tolist(), records, strict=True)} == {
        "00007": "padded seven", "7": "seven", "8": "eight"}


@pytest.mark.parametrize("case, where", [
    ("item", "column 'item'"), ("user", "column 'user'"), ("header", "header row"), ("time", "column 'ts'")])
def test_non_utf8_bytes_in_the_log_are_a_typed_error(tmp_path, case, where):
    text = _cycle(["u1", "u2"], ["sku-1", "sku-2", "sku-3"])
    raw = text.encode("utf-8")
    if case == "item":
        raw = raw.replace(b"sku-2", "sku-é".encode("latin-1"), 1)
    elif case == "user":
        raw = raw.replace(b"u2,", "ü2,".encode("latin-1"), 1)
    elif case == "header":
        raw = raw.replace(b"user,", "usér,".encode("latin-1"), 1)
    else:
        raw = raw.replace(b",101\n", b",10\xe91\n", 1)
    p = _write(tmp_path / "log.csv", raw)
    cols = {**COLS, "user_col": "usér"} if case == "header" else COLS
    with pytest.raises(InteractionLogError, match="UTF-8") as err:
        load_interactions(p, **cols, min_item_count=1)
    msg = str(err.value)
    assert str(p) in msg and where in msg and "iconv -f latin1 -t utf-8" in msg
    assert isinstance(err.value, EdgecartError)


def test_non_utf8_bytes_in_the_item_file_are_a_typed_error(tmp_path):
    p = _write(tmp_path / "log.csv", _cycle(["u1", "u2"], ["sku-1", "sku-2", "sku-3"]))
    data, _ = load_interactions(p, **COLS, min_item_count=1)
    items = _write(tmp_path / "items.csv", "item,name,price\nsku-1,Café,1.0\nsku-2,Tea,2.0\nsku-3,Milk,3.0\n"
                   .encode("latin-1"))
    with pytest.raises(InteractionLogError, match="UTF-8") as err:
        load_item_metadata(items, data.item_ids, id_col="item")
    msg = str(err.value)
    assert str(items) in msg and "column 'name'" in msg and "iconv -f latin1 -t utf-8" in msg
    header = _write(tmp_path / "header.csv", "item,désignation\nsku-1,a\nsku-2,b\nsku-3,c\n".encode("latin-1"))
    with pytest.raises(InteractionLogError, match="header row .*UTF-8"):
        load_item_metadata(header, data.item_ids, id_col="item")


def test_json_value_never_writes_a_bytes_repr():
    assert json_value("Café".encode()) == "Café"
    with pytest.raises(InteractionLogError, match="UTF-8"):
        json_value("Café".encode("latin-1"))


def test_exact_duplicate_rows_are_dropped_and_counted(tmp_path):
    text = _cycle(["u1", "u2", "u3"], ["sku-1", "sku-2", "sku-3", "sku-4"])
    once, _ = load_interactions(_write(tmp_path / "once.csv", text), **COLS, min_item_count=1)
    body = text.splitlines()[1:]
    doubled = _write(tmp_path / "twice.csv", "\n".join(["user,item,ts", *body, *body[::-1]]) + "\n")
    data, info = load_interactions(doubled, **COLS, min_item_count=1)
    assert _seqs(data) == _seqs(once) and info.duplicates == len(body)
    assert (info.rows, info.kept_rows) == (2 * len(body), len(body))
    assert f"dropped {len(body)} exact duplicate rows (same user, item, ts)" in info.describe()
    assert "duplicate" not in load_interactions(_write(tmp_path / "once.csv", text), **COLS, min_item_count=1)[1] \
        .describe()


def test_repeated_purchases_at_other_times_or_positions_are_kept(tmp_path):
    log = "user,item,ts,pos\n" + "".join(f"{u},sku-1,{t},{k}\n" for u in ("u1", "u2") for t in (1, 2, 3)
                                         for k in (1, 2))
    p = _write(tmp_path / "log.csv", log + "u1,sku-1,1,1\n")
    data, info = load_interactions(p, **COLS, order_cols=["pos"], min_item_count=1)
    assert info.duplicates == 1 and [len(s) for s in data.sequences] == [6, 6]
    assert "same user, item, ts, pos" in info.describe()
    data, info = load_interactions(p, **COLS, min_item_count=1)  # time only: one purchase per user and time
    assert info.duplicates == 7 and [len(s) for s in data.sequences] == [3, 3]
    data, info = load_interactions(p, user_col="user", item_col="item", min_item_count=1)  # file order: all kept
    assert info.duplicates == 0 and [len(s) for s in data.sequences] == [7, 6]


def test_a_single_user_log_is_refused_up_front(tmp_path):
    p = _write(tmp_path / "log.csv", _cycle(["u1"], ["sku-1", "sku-2", "sku-3"], length=40))
    with pytest.raises(InteractionLogError, match="1 user .*at least 2 users") as err:
        load_interactions(p, **COLS, min_item_count=1)
    assert "validation" in str(err.value) and "test" in str(err.value)
    short = _write(tmp_path / "short.csv", _cycle(["u1"], ["a", "b", "c"], length=40) + "u2,a,1\nu2,b,2\n")
    with pytest.raises(InteractionLogError, match="at least 2 users"):
        load_interactions(short, **COLS, min_item_count=1)
    two, info = load_interactions(_write(tmp_path / "two.csv", _cycle(["u1", "u2"], ["a", "b", "c"])), **COLS,
                                  min_item_count=1)
    assert len(two.sequences) == 2 and info.kept_users == 2


def test_min_length_below_three_is_refused(tmp_path):
    p = _write(tmp_path / "log.csv", _cycle(["u1", "u2"], ["a", "b", "c"]))
    with pytest.raises(InteractionLogError, match="min_length .*at least 3"):
        load_interactions(p, **COLS, min_item_count=1, min_length=2)


def test_a_wrong_item_file_id_column_names_the_items_flag(tmp_path):
    p = _write(tmp_path / "log.csv", _cycle(["u1", "u2"], ["a", "b", "c"]))
    data, _ = load_interactions(p, **COLS, min_item_count=1)
    items = _write(tmp_path / "items.csv", "sku,name\na,x\nb,y\nc,z\n")
    with pytest.raises(InteractionLogError, match="has no column 'item'") as err:
        load_item_metadata(items, data.item_ids, id_col="item")
    assert "--items-id-col" in str(err.value) and "--user-col" not in str(err.value)
    with pytest.raises(InteractionLogError, match="--user-col / --item-col"):
        load_interactions(p, user_col="customer", item_col="item", time_col="ts", min_item_count=1)
