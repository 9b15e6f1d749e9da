"""Update a recommendations bundle's item table without re-exporting its model.

The model turns a history into a user vector; the bundle's int8 item table scores it. So the table can change while
the model files stay byte for byte the same: new embeddings for known items (e.g. after retraining only the table),
new items (recommendable at once; unknown to the model as history until the next export), removed items (never
recommended again; still understood in a history), new popularity or metadata. The result is a new bundle version
(models untouched, manifest and hashes rewritten, verified; the backend order ``edgecart prefer`` measured for the
models, ``backend_preference``, carried over).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgecart.data.interactions import json_value
from edgecart.runtime.archive import refuse_output_inside
from edgecart.runtime.bundle import open_bundle
from edgecart.runtime.errors import BundleError, EdgecartError, InputSpecError
from edgecart.runtime.item_to_item import ItemToItem, read_item_to_item
from edgecart.runtime.recommender import USER_VECTOR, item_index, lookup, read_item_table
from edgecart.runtime.search import quantize_rows

AVAILABLE = "catalog/available.npy"
#: where item metadata lives when an update brings the first of it (the build writes the same path)
METADATA = "catalog/items.json"


def _bump(version: str) -> str:
    parts = version.split(".")
    if parts and parts[-1].isdigit():
        parts[-1] = str(int(parts[-1]) + 1)
        return ".".join(parts)
    return version + ".1"


def update_item_table(bundle: str | os.PathLike[str], out: str | os.PathLike[str], *,
                      add: Mapping[Any, np.ndarray] | None = None, remove: Iterable[Any] = (),
                      embeddings: Mapping[Any, np.ndarray] | None = None,
                      popularity: Mapping[Any, float] | None = None,
                      metadata: Mapping[Any, dict[str, Any]] | None = None,
                      like: Mapping[Any, Any] | None = None, version: str | None = None) -> Path:
    """Write ``out``: ``bundle`` with its item table changed and its model files copied unchanged.

    ``add``: new item id -> float vector (the table's dimension); ``remove``: ids never to recommend again;
    ``embeddings``: known id -> new float vector; ``popularity``: id -> count (new items default to 0);
    ``metadata``: id -> record (a bundle built without item metadata gets it, ``{}`` for the other items);
    ``like``: new id -> the known id it resembles: in a bundle with an item-to-item table the new item becomes its
    twin's (it follows what its twin follows, and is followed by what follows its twin).
    Unknown ids in ``remove`` / ``embeddings`` / ``popularity`` / ``metadata``, ids in ``add`` that exist, and
    wrong vector sizes are :class:`InputSpecError`.
    """
    from edgecart.exporters.bundle import BundleWriter

    src = open_bundle(bundle)
    m = src.manifest
    cat = dict(m.catalog or {})
    if m.task != "recommendations" or cat.get("scoring") != USER_VECTOR:
        raise BundleError(f"bundle {m.name!r}: only a recommendations bundle whose model outputs a user vector has an "
                          "item table that can change without re-export; re-export it with this edgecart")
    table = read_item_table(src)
    if table.q is None or table.scales is None:
        raise BundleError(f"bundle {m.name!r} carries no item embeddings; re-export it")
    ids = table.ids.tolist()
    canon = _canon(ids)
    index = {v: i + 1 for i, v in enumerate(ids)}
    rows = table.q.astype(np.float32) * table.scales[:, None]
    pop = table.popularity.copy()
    avail = table.available.copy()
    dim = rows.shape[1]

    def vec(v: Any, what: str) -> np.ndarray:
        a = np.asarray(v, np.float32).reshape(-1)
        if a.shape != (dim,) or not np.all(np.isfinite(a)):
            raise InputSpecError(f"{what}: a vector of {dim} finite numbers is needed, got shape {np.shape(v)}")
        return a

    def idx(item: Any, what: str) -> int:
        i = index.get(canon(item))
        if i is None:
            raise InputSpecError(f"{what}: item {item!r} is not in the bundle's item table")
        return i

    for item, v in (embeddings or {}).items():
        rows[idx(item, "embeddings")] = vec(v, f"embeddings[{item!r}]")
    for item in remove:
        avail[idx(item, "remove")] = False
    new = list((add or {}).items())
    for item, _ in new:
        if canon(item) in index:
            raise InputSpecError(f"add: item {item!r} is already in the table; use embeddings= to change it")
    if new:
        kinds = {type(v) for v in ids}
        for item, _ in new:
            if type(canon(item)) not in kinds:
                raise InputSpecError(f"add: item id {item!r} is a {type(item).__name__}, the table's ids are "
                                     f"{sorted(k.__name__ for k in kinds)}")
        rows = np.concatenate([rows, np.stack([vec(v, f"add[{k!r}]") for k, v in new])])
        pop = np.concatenate([pop, np.zeros(len(new))])
        avail = np.concatenate([avail, np.ones(len(new), bool)])
        ids = ids + [canon(k) for k, _ in new]
        index.update({canon(k): len(ids) - len(new) + j + 1 for j, (k, _) in enumerate(new)})
    for item, c in (popularity or {}).items():
        pop[idx(item, "popularity")] = float(c)
    i2i = read_item_to_item(src)
    if i2i is not None and new:
        twins = {index[canon(k)]: idx(like[k], f"like[{k!r}]") for k, _ in new if like and k in like}
        i2i = _with_twins(i2i, len(ids) + 1, twins)
    q, scale = quantize_rows(rows)
    q[0], scale[0] = 0, 1.0

    records = None
    if isinstance(cat.get("metadata"), str):
        doc = json.loads(src.read_verified(cat["metadata"]).decode("utf-8"))
        records = list(doc["records"]) + [{} for _ in new]
        for item, rec in (metadata or {}).items():
            records[idx(item, "metadata") - 1] = dict(rec)
    elif metadata:  # the first metadata of a bundle built without --items
        records = [{} for _ in ids]
        for item, rec in metadata.items():
            records[idx(item, "metadata") - 1] = dict(rec)
        cat["metadata"] = METADATA

    emb = dict(cat["item_embeddings"])
    emb.update(rows=int(q.shape[0]), fp32_bytes=int(q.size * 4), int8_bytes=int(q.nbytes + scale.nbytes),
               saved_bytes=int(q.size * 4 - q.nbytes - scale.nbytes))
    cat.update(item_embeddings=emb, num_items=len(ids), available=AVAILABLE)
    cat.setdefault("model_items", table.model_items)
    item_arr = np.asarray(ids)
    if item_arr.dtype == object:
        raise InputSpecError("item ids must all be integers or all be strings")

    replaced = {cat["items"], cat["popularity"], emb["path"], emb["scale"], AVAILABLE}
    if i2i is not None and new:
        paths = {k: cat["item_to_item"][k] for k in ("indptr", "items", "weights")}
        cat["item_to_item"] = i2i.describe(paths)
        replaced |= set(paths.values())
    if m.golden is not None:
        replaced |= set(m.golden.inputs.values()) | set(m.golden.outputs.values())
    if records is not None:
        replaced.add(cat["metadata"])
    w = BundleWriter(out, name=m.name, version=version or _bump(m.version), task=m.task, inputs=m.inputs,
                     outputs=m.outputs, preprocessing=m.preprocessing, overwrite=True,
                     backend_preference=m.backend_preference)  # it ranks the models, which the table leaves alone
    with w:
        for f in m.files:
            if f.path in replaced:
                continue
            w.file_path(f.path).write_bytes(src.read_verified(f.path))  # checked as copied
            w.add_file(f.path, f.role)
        w.add_file(cat["items"], "catalog", item_arr)
        w.add_file(cat["popularity"], "catalog", pop.astype(np.float32))
        w.add_file(emb["path"], "catalog", q)
        w.add_file(emb["scale"], "catalog", scale.astype(np.float32))
        w.add_file(AVAILABLE, "catalog", avail)
        if i2i is not None and new:
            w.add_file(paths["indptr"], "catalog", i2i.indptr)
            w.add_file(paths["items"], "catalog", i2i.items)
            w.add_file(paths["weights"], "catalog", i2i.weights)
        if records is not None:
            w.add_file(cat["metadata"], "catalog", json.dumps({"ids": [_plain(v) for v in ids], "records": records},
                                                              ensure_ascii=False).encode("utf-8"))
        for a in m.artifacts:
            w.add_artifact(a)
        if m.golden is not None:  # the model did not change: the same reference inputs and outputs
            w.set_golden({n: src.load_npy(p) for n, p in m.golden.inputs.items()},
                         {n: src.load_npy(p) for n, p in m.golden.outputs.items()})
        w.catalog = cat
        w.quality = {**(m.quality or {}), "item_table_updated_from": m.version,
                     "note": "item table changed after export; the quality figures are those of the export"}
        return w.commit()


def _with_twins(i2i: ItemToItem, rows: int, twins: Mapping[int, int]) -> ItemToItem:
    """``i2i`` grown to ``rows`` rows, each new index of ``twins`` (new -> known) a copy of its twin: its row is the
    twin's row and it sits beside the twin, at the same weight, in every row that holds the twin."""
    r = np.repeat(np.arange(i2i.rows), np.diff(i2i.indptr))
    c, w = i2i.items.astype(np.int64), i2i.weights
    rs, cs, ws = [r], [c], [w]
    for new, twin in twins.items():
        a, b = i2i.indptr[twin], i2i.indptr[twin + 1]
        rs.append(np.full(b - a, new))
        cs.append(c[a:b])
        ws.append(w[a:b])
        hit = c == twin
        rs.append(r[hit])
        cs.append(np.full(int(hit.sum()), new))
        ws.append(w[hit])
    r, c, w = np.concatenate(rs), np.concatenate(cs), np.concatenate(ws)
    order = np.lexsort((c, r))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=rows))]).astype(np.int64)
    return ItemToItem(indptr, c[order].astype(np.int32), w[order].astype(np.float32), i2i.blend, i2i.recent,
                      i2i.decay, i2i.smoothing)


def _canon(table_ids: list[Any]) -> Callable[[Any], Any]:
    """A function mapping an id a user gives onto the bundle's own id, by the runtime's lookup rules (as written
    first, then a loose key where it is unambiguous: ``"7"`` finds item 7, but ``"00007"`` and ``"7"`` stay two
    items). An id the bundle lacks comes back stripped, as an integer when every id of the bundle is one."""
    index = item_index(table_ids)
    ints = bool(table_ids) and all(isinstance(v, int) for v in table_ids)

    def canon(v: Any) -> Any:
        if isinstance(v, np.generic):
            v = v.item()
        i = lookup(index, v)
        if i is not None:
            return table_ids[i - 1]
        if isinstance(v, str):
            s = v.strip()
            return int(s) if ints and s.lstrip("-").isdigit() else s
        return v

    return canon


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


# --- `edgecart catalog add|remove|update` on a recommendations bundle: item metadata from an items file ------------

ACTIONS = ("add", "remove", "update")
#: id column names tried, in order, when none is given
ID_COLUMNS = ("item_id", "id", "item", "product_id", "sku")
#: the column of an ``add`` file naming a known item whose embedding a new item starts from
LIKE_COLUMN = "like"


class ItemUpdateError(EdgecartError, ValueError):
    """An item file or id list cannot be applied to a recommendations bundle; the message says what to change."""


@dataclass(frozen=True)
class ItemUpdate:
    """What an item update did: the new bundle, its version, its item count and the ids touched."""

    path: Path
    version: str
    items: int
    added: tuple[Any, ...] = ()
    removed: tuple[Any, ...] = ()
    updated: tuple[Any, ...] = ()
    seconds: float = 0.0
    skipped: int = 0


def read_item_file(path: str | os.PathLike[str], id_col: str | None = None) -> tuple[str, list[Any], list[dict]]:
    """(id column, ids, records) of an items CSV or Parquet file: one row per item, every other column a metadata
    field. A missing file or id column, empty or duplicate ids are :class:`ItemUpdateError`."""
    import pyarrow as pa

    p = Path(path)
    if not p.is_file():
        raise ItemUpdateError(f"items file {p}: no such file")
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ItemUpdateError(f"items file {p}: unknown file type {suffix!r}; give a .csv or .parquet file")
    try:
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            # id columns as text: '007' stays '007' (matched to the bundle's ids as the runtime matches them)
            text = {c: pa.string() for c in (*ID_COLUMNS, *([id_col] if id_col else []))}
            table = pcsv.read_csv(p, convert_options=pcsv.ConvertOptions(column_types=text))
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ItemUpdateError(f"items file {p} cannot be read ({exc}); give a CSV with a header row or a Parquet "
                              "file") from None
    cols = table.column_names
    if id_col is None:
        id_col = next((c for c in ID_COLUMNS if c in cols), None)
        if id_col is None:
            raise ItemUpdateError(f"items file {p} has none of the id columns {list(ID_COLUMNS)}; its columns are "
                                  f"{cols}: name the id column with --id-col")
    elif id_col not in cols:
        raise ItemUpdateError(f"items file {p} has no column {id_col!r}; its columns are {cols}")
    if table.num_rows == 0:
        raise ItemUpdateError(f"items file {p} is empty (no rows after the header)")
    ids = table.column(id_col).to_pylist()
    blank = [n + 2 for n, v in enumerate(ids) if v is None or (isinstance(v, str) and not v.strip())]
    if blank:
        raise ItemUpdateError(f"items file {p}: empty id on line(s) {blank[:5]}; give every row an id")
    ids = [_plain(v.strip() if isinstance(v, str) else v) for v in ids]
    seen: dict[Any, int] = {}
    dup = []
    for n, v in enumerate(ids):
        if v in seen:
            dup.append(v)
        seen.setdefault(v, n)
    if dup:
        raise ItemUpdateError(f"items file {p}: {len(dup)} id(s) appear more than once (e.g. {dup[:5]}); keep one "
                              "row per item")
    fields = [c for c in cols if c != id_col]
    values = {c: table.column(c).to_pylist() for c in fields}
    records = [{c: _cell(values[c][n]) for c in fields} for n in range(len(ids))]
    return id_col, ids, records


def _cell(v: Any) -> Any:
    """An items-file cell as JSON: strings stripped, an empty cell None."""
    if isinstance(v, str):
        v = v.strip()
        return v or None
    return json_value(v)


def update_items(bundle: str | os.PathLike[str], action: str, *, items: str | os.PathLike[str] | None = None,
                 ids: Sequence[Any] | None = None, id_col: str | None = None,
                 out: str | os.PathLike[str] | None = None, skip_unknown: bool = False) -> ItemUpdate:
    """``edgecart catalog ACTION BUNDLE --items FILE`` on a recommendations bundle; writes the next version to
    ``out`` (default: replace ``bundle`` atomically), model files untouched, verified.

    - ``update``: the file's columns replace those fields of the named items' metadata (other fields are kept; an
      empty cell clears its field). A bundle built without ``--items`` gets its metadata from the first update.
      ``skip_unknown``: rows naming items the bundle does not hold (e.g. the shop's whole item file, where the build
      kept only the items seen often enough) are ignored and counted in ``ItemUpdate.skipped`` instead of an error.
    - ``add``: new items, each with a ``like`` column naming a known item whose embedding it starts from (a new
      size or colour of a product; the next build learns its own), and its metadata. It is recommendable at once.
    - ``remove``: the items of the file's id column, or ``ids``, are never recommended again (still understood
      in a history).

    Unknown ids (update, remove, ``like``), ids already in the bundle (add), duplicate or empty ids and missing
    columns are :class:`ItemUpdateError`.
    """
    import time

    t0 = time.perf_counter()
    if action not in ACTIONS:
        raise ItemUpdateError(f"unknown catalog action {action!r}; known: {', '.join(ACTIONS)}")
    src = open_bundle(bundle)
    m = src.manifest
    if out is not None:
        refuse_output_inside(Path(out), Path(src.root), kind="folder")
    if m.task != "recommendations":
        raise ItemUpdateError(f"bundle {m.name!r} is a {m.task} bundle; --items updates recommendation bundles "
                              "(use --images or --catalog for image search)")
    table = read_item_table(src)
    canon = _canon(table.ids.tolist())
    known = set(table.ids.tolist())
    dest = Path(out) if out is not None else Path(src.root)
    if dest.exists() and dest.absolute() != Path(src.root).absolute():
        raise BundleError(f"{dest} already exists; choose another --out (or leave --out out to replace the bundle)")
    version = _bump(m.version)

    def unknown(names: Sequence[Any], what: str, fix: str) -> None:
        bad = [v for v in names if canon(v) not in known]
        if bad:
            raise ItemUpdateError(f"{what}: {len(bad)} id(s) are not in the bundle's {len(known)} items (e.g. "
                                  f"{bad[:5]}); {fix}")

    added: list[Any] = []
    removed: list[Any] = []
    updated: list[Any] = []
    skipped = 0
    if action == "remove":
        if (items is None) == (ids is None):
            raise ItemUpdateError("catalog remove needs exactly one of --items FILE or --ids")
        gone = [canon(i) for i in (read_item_file(items, id_col)[1] if items is not None else ids or ())]
        if not gone:
            raise ItemUpdateError("catalog remove: no ids given")
        if len(set(gone)) != len(gone):
            raise ItemUpdateError("catalog remove: an id is named more than once; name each once")
        unknown(gone, "remove", "check the ids (they are the bundle's item ids)")
        path = update_item_table(src.root, dest, remove=gone, version=version)
        removed = list(gone)
    else:
        if items is None:
            raise ItemUpdateError(f"catalog {action} needs --items FILE (an id column and metadata columns)")
        _, new_ids, records = read_item_file(items, id_col)
        new_ids = [canon(i) for i in new_ids]
        if len(set(new_ids)) != len(new_ids):
            raise ItemUpdateError(f"items file {items}: two rows name the same item of the bundle; keep one row per "
                                  "item")
        if action == "update":
            if skip_unknown:
                keep = [n for n, i in enumerate(new_ids) if i in known]
                skipped = len(new_ids) - len(keep)
                new_ids, records = [new_ids[n] for n in keep], [records[n] for n in keep]
                if not new_ids:
                    raise ItemUpdateError(f"update: no row of {items} names an item of the bundle")
            unknown(new_ids, "update", "use 'catalog add' for new items, or skip_unknown (--skip-unknown) to "
                    "ignore rows of items the bundle does not hold")
            old = _records(src, len(table.ids))
            where = {v: n for n, v in enumerate(table.ids.tolist())}
            merged = {i: {**(old[where[i]] if old is not None else {}), **r} for i, r in zip(new_ids, records,
                                                                                            strict=True)}
            path = update_item_table(src.root, dest, metadata=merged, version=version)
            updated = list(new_ids)
        else:
            if not records or LIKE_COLUMN not in records[0]:
                raise ItemUpdateError(f"add: items file {items} has no {LIKE_COLUMN!r} column; a new item needs a "
                                      "starting embedding: add a column 'like' naming a known item it resembles "
                                      "(its embedding is copied), or rebuild the bundle with the item in the log")
            there = [i for i in new_ids if i in known]
            if there:
                raise ItemUpdateError(f"add: {len(there)} id(s) are already in the bundle (e.g. {there[:5]}); use "
                                      "'catalog update' to change their metadata")
            likes = [None if r[LIKE_COLUMN] is None else canon(r[LIKE_COLUMN]) for r in records]
            unknown([v for v in likes if v is not None], f"add: column {LIKE_COLUMN!r}",
                    "name a known item for each new one")
            if any(v is None for v in likes):
                raise ItemUpdateError(f"add: every new item needs a {LIKE_COLUMN!r} value naming a known item")
            rows = table.q.astype(np.float32) * table.scales[:, None]
            where = {v: n + 1 for n, v in enumerate(table.ids.tolist())}
            vectors = {i: rows[where[lk]] for i, lk in zip(new_ids, likes, strict=True)}
            meta = {i: {k: v for k, v in r.items() if k != LIKE_COLUMN} for i, r in zip(new_ids, records,
                                                                                            strict=True)}
            path = update_item_table(src.root, dest, add=vectors, metadata=meta, version=version,
                                     like=dict(zip(new_ids, likes, strict=True)))
            added = list(new_ids)
    b = open_bundle(path)  # verified as a reader sees it
    return ItemUpdate(Path(path), b.manifest.version, int(b.manifest.catalog["num_items"]), tuple(added),
                      tuple(removed), tuple(updated), time.perf_counter() - t0, skipped)


def _records(src: Any, n: int) -> list[dict[str, Any]] | None:
    name = (src.manifest.catalog or {}).get("metadata")
    if not isinstance(name, str):
        return None
    doc = json.loads(src.read_verified(name).decode("utf-8"))
    return [dict(r) for r in doc["records"]][:n]
