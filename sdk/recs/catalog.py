"""Update a recommendations bundle's item table without re-exporting its model.

The model turns a history into a user vector; the bundle's int8 item table scores it. So the table can change while
the model files stay byte for byte the same: new embeddings for known items (e.g. after retraining only the table),
new items (recommendable at once; unknown to the model as history until the next export), removed items (never
recommended again; still understood in a history), new popularity or metadata. The result is a new bundle version
(models untouched, manifest and hashes rewritten, verified).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from edgecart.runtime.bundle import open_bundle
from edgecart.runtime.errors import BundleError, InputSpecError
from edgecart.runtime.recommender import USER_VECTOR, read_item_table
from edgecart.runtime.search import quantize_rows

AVAILABLE = "catalog/available.npy"


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
                      version: str | None = None) -> Path:
    """Write ``out``: ``bundle`` with its item table changed and its model files copied unchanged.

    ``add``: new item id -> float vector (the table's dimension); ``remove``: ids never to recommend again;
    ``embeddings``: known id -> new float vector; ``popularity``: id -> count (new items default to 0);
    ``metadata``: id -> record (when the bundle carries item metadata). Unknown ids in ``remove`` /
    ``embeddings`` / ``popularity`` / ``metadata``, ids in ``add`` that exist, and wrong vector sizes are
    :class:`InputSpecError`.
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
    index = {_norm(v): i + 1 for i, v in enumerate(ids)}
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
        i = index.get(_norm(item))
        if i is None:
            raise InputSpecError(f"{what}: item {item!r} is not in the bundle's item table")
        return i

    for item, v in (embeddings or {}).items():
        rows[idx(item, "embeddings")] = vec(v, f"embeddings[{item!r}]")
    for item in remove:
        avail[idx(item, "remove")] = False
    new = list((add or {}).items())
    for item, _ in new:
        if _norm(item) in index:
            raise InputSpecError(f"add: item {item!r} is already in the table; use embeddings= to change it")
    if new:
        kinds = {type(_norm(v)) for v in ids}
        for item, _ in new:
            if type(_norm(item)) not in kinds:
                raise InputSpecError(f"add: item id {item!r} is a {type(item).__name__}, the table's ids are "
                                     f"{sorted(k.__name__ for k in kinds)}")
        rows = np.concatenate([rows, np.stack([vec(v, f"add[{k!r}]") for k, v in new])])
        pop = np.concatenate([pop, np.zeros(len(new))])
        avail = np.concatenate([avail, np.ones(len(new), bool)])
        ids = ids + [k for k, _ in new]
        index.update({_norm(k): len(ids) - len(new) + j + 1 for j, (k, _) in enumerate(new)})
    for item, c in (popularity or {}).items():
        pop[idx(item, "popularity")] = float(c)
    q, scale = quantize_rows(rows)
    q[0], scale[0] = 0, 1.0

    records = None
    if isinstance(cat.get("metadata"), str):
        doc = json.loads(src.path(cat["metadata"]).read_text(encoding="utf-8"))
        records = list(doc["records"]) + [{} for _ in new]
        for item, rec in (metadata or {}).items():
            records[idx(item, "metadata") - 1] = dict(rec)
    elif metadata:
        raise InputSpecError("metadata: this bundle carries no item metadata; build it with --items")

    emb = dict(cat["item_embeddings"])
    emb.update(rows=int(q.shape[0]), fp32_bytes=int(q.size * 4), int8_bytes=int(q.nbytes + scale.nbytes),
               saved_bytes=int(q.size * 4 - q.nbytes - scale.nbytes))
    cat.update(item_embeddings=emb, num_items=len(ids), available=AVAILABLE)
    cat.setdefault("model_items", table.model_items)
    item_arr = np.asarray(ids)
    if item_arr.dtype == object:
        raise InputSpecError("item ids must all be integers or all be strings")

    replaced = {cat["items"], cat["popularity"], emb["path"], emb["scale"], AVAILABLE}
    if m.golden is not None:
        replaced |= set(m.golden.inputs.values()) | set(m.golden.outputs.values())
    if records is not None:
        replaced.add(cat["metadata"])
    w = BundleWriter(out, name=m.name, version=version or _bump(m.version), task=m.task, inputs=m.inputs,
                     outputs=m.outputs, preprocessing=m.preprocessing, overwrite=True)
    with w:
        for f in m.files:
            if f.path in replaced:
                continue
            shutil.copyfile(src.path(f.path), w.file_path(f.path))
            w.add_file(f.path, f.role)
        w.add_file(cat["items"], "catalog", item_arr)
        w.add_file(cat["popularity"], "catalog", pop.astype(np.float32))
        w.add_file(emb["path"], "catalog", q)
        w.add_file(emb["scale"], "catalog", scale.astype(np.float32))
        w.add_file(AVAILABLE, "catalog", avail)
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


def _norm(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    return v


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
