"""An optional approximate index for big catalogs: IVF (inverted file) over spherical k-means centroids, numpy only.

Built once, at bundle time, from the catalog's embeddings: ``lists`` centroids are trained with spherical k-means on
a sample of the rows, every row goes to its nearest centroid, and the rows are stored grouped by list. A query scores
the centroids, takes the ``nprobe`` best lists and scores only their rows exactly — a fraction ``~ nprobe / lists``
of the catalog — then keeps the top k (ties to the lower catalog index). What it misses is measured against the exact
scan and written into the manifest (``recall_at_10``).

In the bundle (all files role ``catalog``, listed in the manifest)::

    "catalog": {..., "index": {"kind": "ivf", "lists": L, "nprobe": P, "items": N, "dim": D,
                               "centroids_path": "catalog/index/centroids.f32.npy",     # (L, D) float32, unit rows
                               "order_path": "catalog/index/order.i32.npy",             # (N,) catalog rows by list
                               "offsets_path": "catalog/index/offsets.i64.npy",         # (L + 1,) list starts
                               "recall_at_10": 0.97, "recall_queries": 500, "target_recall": 0.95,
                               "scanned_fraction": 0.016, "built_from": "int8"}}

    from edgecart.runtime.index import add_index
    add_index(writer, embeddings)        # with an exporters.BundleWriter, after the catalog is set on it
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .errors import InputSpecError, ManifestError

INDEX_DIR = "catalog/index"


@dataclass(frozen=True)
class IVFIndex:
    """Centroids (L, D), catalog row numbers grouped by list (N,), and where each list starts (L + 1,)."""

    centroids: np.ndarray
    order: np.ndarray
    offsets: np.ndarray
    nprobe: int = 8

    def __post_init__(self) -> None:
        c, o, off = self.centroids, self.order, self.offsets
        if c.ndim != 2 or o.ndim != 1 or off.shape != (len(c) + 1,):
            raise ManifestError(f"IVF index shapes do not fit: centroids {c.shape}, order {o.shape}, offsets "
                                f"{off.shape}; rebuild the index")
        if off[0] != 0 or off[-1] != len(o) or (np.diff(off) < 0).any():
            raise ManifestError("IVF index offsets must rise from 0 to the number of rows; rebuild the index")
        if not 1 <= self.nprobe:
            raise InputSpecError(f"nprobe must be >= 1, got {self.nprobe}")

    @property
    def lists(self) -> int:
        return len(self.centroids)

    def probe(self, query: np.ndarray, nprobe: int | None = None) -> np.ndarray:
        """The ``nprobe`` lists nearest to one (D,) query, best first."""
        from .topk import top_k_row

        p = self.nprobe if nprobe is None else int(nprobe)
        if p < 1:
            raise InputSpecError(f"nprobe must be >= 1, got {p}")
        return top_k_row(np.einsum("ld,d->l", self.centroids, query), min(p, self.lists))

    def candidates(self, query: np.ndarray, nprobe: int | None = None) -> np.ndarray:
        """Catalog row numbers in the probed lists of one (D,) query."""
        lists = self.probe(query, nprobe)
        return np.concatenate([self.order[self.offsets[i]:self.offsets[i + 1]] for i in lists])


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _assign(x: np.ndarray, centroids: np.ndarray, block: int = 65536) -> np.ndarray:
    """Nearest centroid (largest dot product) per row, in blocks so the (rows, L) scores stay small."""
    out = np.empty(len(x), np.int64)
    for a in range(0, len(x), block):
        xb = np.asarray(x[a:a + block], np.float32)
        out[a:a + block] = np.argmax(xb @ centroids.T, axis=1)
    return out


def default_lists(n: int) -> int:
    """About ``2 sqrt(N)`` lists (1M rows: 2,000 lists of ~500), at least 1 and at most N."""
    return max(1, min(n, int(round(2 * math.sqrt(n)))))


def build_ivf(embeddings: np.ndarray, scales: np.ndarray | None = None, *, lists: int | None = None,
              nprobe: int | None = None, iterations: int = 12, sample: int | None = None,
              seed: int = 0) -> IVFIndex:
    """Train an IVF index on catalog rows (float32, or int8 with per-row ``scales``; cosine metric).

    ``lists``: number of centroids (default :func:`default_lists`); ``nprobe``: lists searched by default (default
    ``max(1, lists // 32)``; :func:`add_index` picks it for a target recall); k-means runs ``iterations`` rounds on
    ``sample`` rows (default ``64 * lists``).
    """
    n = len(embeddings)
    if n == 0:
        raise InputSpecError("cannot index an empty catalog")
    lists = default_lists(n) if lists is None else int(lists)
    if not 1 <= lists <= n:
        raise InputSpecError(f"lists must be in 1..{n} (the number of rows), got {lists}")
    rng = np.random.default_rng(seed)

    def rows(idx: np.ndarray | slice) -> np.ndarray:
        x = np.asarray(embeddings[idx], np.float32)
        return x if scales is None else x * np.asarray(scales[idx], np.float32)[:, None]

    take = min(n, sample or 64 * lists)
    train = _unit(rows(np.sort(rng.choice(n, take, replace=False))))
    cent = train[rng.choice(take, lists, replace=False)].copy()
    for _ in range(iterations):
        a = _assign(train, cent)
        sums = np.zeros_like(cent)
        np.add.at(sums, a, train)
        empty = np.bincount(a, minlength=lists) == 0
        if empty.any():  # restart empty lists on random training rows
            sums[empty] = train[rng.choice(take, int(empty.sum()), replace=False)]
        cent = _unit(sums).astype(np.float32)
    assign = np.empty(n, np.int64)
    block = 65536
    for a in range(0, n, block):
        assign[a:a + block] = _assign(_unit(rows(slice(a, a + block))), cent)
    order = np.argsort(assign, kind="stable").astype(np.int32)
    offsets = np.zeros(lists + 1, np.int64)
    np.cumsum(np.bincount(assign, minlength=lists), out=offsets[1:])
    return IVFIndex(cent, order, offsets, nprobe if nprobe is not None else max(1, lists // 32))


def exact_top_k(rows: np.ndarray, queries: np.ndarray, k: int = 10) -> list[np.ndarray]:
    """The exact top ``k`` rows of every query (float32 ``rows``), in chunks of 32 queries (one product each)."""
    from .topk import top_k

    queries = np.asarray(queries, np.float32)
    return [r for a in range(0, len(queries), 32) for r in top_k((rows @ queries[a:a + 32].T).T, k)[0]]


def measure_recall(index: IVFIndex, rows: np.ndarray, queries: np.ndarray, k: int = 10, nprobe: int | None = None,
                   exact: list[np.ndarray] | None = None) -> float:
    """Mean fraction of the exact top ``k`` (over float32 ``rows``) that the index's search also returns, over (Q, D)
    ``queries``; the candidates are scored exactly, so only what the probed lists miss is lost. ``exact``: the exact
    answers when already known (:func:`exact_top_k`)."""
    from .topk import merge_top_k

    queries = np.asarray(queries, np.float32)
    if len(queries) == 0:
        return float("nan")
    exact = exact_top_k(rows, queries, k) if exact is None else exact
    hits = []
    for q, want in zip(queries, exact, strict=True):
        cand = index.candidates(q, nprobe)
        got = merge_top_k(cand, rows[cand] @ q, k)[0]
        hits.append(len(np.intersect1d(want, got)) / len(want))
    return float(np.mean(hits))


class _Writer(Protocol):
    catalog: dict[str, Any] | None

    def add_file(self, rel: str, role: str, data: Any = None) -> Any: ...


def describe(index: IVFIndex, **extra: Any) -> dict[str, Any]:
    """The manifest's ``catalog.index`` entry for an index stored under :data:`INDEX_DIR`."""
    return {"kind": "ivf", "lists": index.lists, "nprobe": index.nprobe, "items": int(len(index.order)),
            "dim": int(index.centroids.shape[1]), "centroids_path": f"{INDEX_DIR}/centroids.f32.npy",
            "order_path": f"{INDEX_DIR}/order.i32.npy", "offsets_path": f"{INDEX_DIR}/offsets.i64.npy",
            "search": "approximate: score the centroids, scan the nprobe best lists exactly", **extra}


def add_index(writer: _Writer, embeddings: np.ndarray, scales: np.ndarray | None = None, *,
              queries: np.ndarray | None = None, recall_queries: int = 500, target_recall: float = 0.95,
              seed: int = 0, **build: Any) -> dict[str, Any]:
    """Build an IVF index of the catalog rows, add its files to a bundle writer (role ``catalog``) and describe it
    under ``writer.catalog["index"]``. Call after the catalog is set on the writer.

    Unless ``nprobe`` is given, the default ``nprobe`` is the smallest power of two whose recall@10 against the exact
    scan reaches ``target_recall`` on ``queries`` (default: ``recall_queries`` catalog rows with a little noise, a
    stand-in for photos of catalog products); the recall reached is written with it.
    """
    if not isinstance(writer.catalog, dict):
        raise InputSpecError("set the writer's catalog (write the catalog files) before adding an index")
    if not 0 < target_recall <= 1:
        raise InputSpecError(f"target_recall must be in (0, 1], got {target_recall}")
    index = build_ivf(embeddings, scales, seed=seed, **build)
    full = np.asarray(embeddings, np.float32)
    if scales is not None:
        full = full * np.asarray(scales, np.float32)[:, None]
    if queries is None:
        rng = np.random.default_rng(seed + 1)
        pick = rng.choice(len(full), min(recall_queries, len(full)), replace=False)
        queries = _unit(full[pick] + rng.normal(0, 0.05, (len(pick), full.shape[1])).astype(np.float32))
    queries = np.asarray(queries, np.float32)
    exact = exact_top_k(full, queries, 10)
    chosen = build.get("nprobe")
    if chosen is None:
        chosen = 1
        while True:
            recall = measure_recall(index, full, queries, 10, chosen, exact)
            if recall >= target_recall or chosen >= index.lists:
                break
            chosen = min(index.lists, 2 * chosen)
        index = IVFIndex(index.centroids, index.order, index.offsets, chosen)
    else:
        recall = measure_recall(index, full, queries, 10, None, exact)
    writer.add_file(f"{INDEX_DIR}/centroids.f32.npy", "catalog", index.centroids.astype(np.float32))
    writer.add_file(f"{INDEX_DIR}/order.i32.npy", "catalog", index.order.astype(np.int32))
    writer.add_file(f"{INDEX_DIR}/offsets.i64.npy", "catalog", index.offsets.astype(np.int64))
    entry = describe(index, recall_at_10=recall, recall_queries=int(len(queries)), target_recall=target_recall,
                     scanned_fraction=float(index.nprobe / index.lists),
                     built_from="int8" if scales is not None else "float32")
    writer.catalog = {**writer.catalog, "index": entry}
    return entry


def rebuild_index(writer: _Writer, entry: Any, embeddings: np.ndarray, scales: np.ndarray | None = None, *,
                  seed: int = 0) -> dict[str, Any]:
    """:func:`add_index` over changed catalog rows (a catalog update), with the settings the old ``catalog.index``
    ``entry`` records; returns the new entry (also set on ``writer.catalog["index"]``). ``embeddings`` (and
    ``scales``): the new rows, int8 with scales or float32 as the old entry's ``built_from`` says where both exist.

    Kept: the target recall, the number of recall queries (the default when the old ones were every row of a small
    catalog) and an ``nprobe`` given by hand (one whose recall fell short of the target with lists left unprobed;
    capped to the new number of lists), else ``nprobe`` is chosen again for the target. The number of lists follows
    the catalog's size when it was the default (:func:`default_lists`) for the old size, else it is kept, but never
    more than the rows. An entry this edgecart cannot rebuild (another kind, missing or malformed settings) is a
    :class:`ManifestError`, raised before anything is added to ``writer``.
    """
    if not isinstance(entry, dict):
        raise ManifestError(f"catalog index must be an object to be rebuilt, got {type(entry).__name__}")
    if entry.get("kind") != "ivf":
        raise ManifestError(f"catalog index kind {entry.get('kind')!r} cannot be rebuilt (only 'ivf')")
    n = len(embeddings)
    try:
        old_lists, old_items = int(entry["lists"]), int(entry["items"])
        target = float(entry.get("target_recall", 0.95))
        queries = int(entry.get("recall_queries", 500))
        nprobe, recall = entry.get("nprobe"), entry.get("recall_at_10")
        nprobe = None if nprobe is None else int(nprobe)
        recall = None if recall is None else float(recall)
        if old_lists < 1 or old_items < 1 or queries < 1 or (nprobe is not None and nprobe < 1):
            raise ValueError("lists, items, recall_queries and nprobe must be >= 1")
        if not 0 < target <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {target}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"catalog index is malformed ({type(exc).__name__}: {exc}); it cannot be rebuilt") \
            from None
    lists = default_lists(n) if old_lists == default_lists(old_items) else min(old_lists, max(n, 1))
    if queries >= old_items:  # every row of the old catalog was a query: the cap, not a choice
        queries = max(queries, 500)
    build: dict[str, Any] = {}
    if nprobe is not None and recall is not None and recall < target and nprobe < old_lists:
        build["nprobe"] = min(nprobe, lists)
    return add_index(writer, embeddings, scales, recall_queries=queries, target_recall=target, seed=seed,
                     lists=lists, **build)


def read_index(load_npy: Callable[[str], np.ndarray], entry: dict[str, Any], items: int, dim: int) -> IVFIndex:
    """The index a manifest's ``catalog.index`` entry describes (``load_npy``: the bundle's verified reader)."""
    try:
        if entry.get("kind") != "ivf":
            raise ManifestError(f"catalog index kind {entry.get('kind')!r} is not supported (only 'ivf')")
        index = IVFIndex(load_npy(entry["centroids_path"]).astype(np.float32, copy=False),
                         load_npy(entry["order_path"]).astype(np.int64, copy=False),
                         load_npy(entry["offsets_path"]).astype(np.int64, copy=False), int(entry.get("nprobe", 8)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"catalog index is malformed ({type(exc).__name__}: {exc}); rebuild it") from None
    if len(index.order) != items or index.centroids.shape[1] != dim:
        raise ManifestError(f"catalog index covers {len(index.order)} rows of dimension {index.centroids.shape[1]}, "
                            f"the catalog {items} x {dim}; rebuild the index")
    if len(index.order) and (index.order.min() < 0 or index.order.max() >= items):
        raise ManifestError("catalog index refers to rows outside the catalog; rebuild the index")
    return index


__all__ = ["INDEX_DIR", "IVFIndex", "add_index", "build_ivf", "default_lists", "describe", "exact_top_k",
           "measure_recall", "read_index", "rebuild_index"]
