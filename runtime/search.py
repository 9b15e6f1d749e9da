"""On-device search-by-image: preprocess as the manifest says, embed with one artifact, scan the catalog exactly.

The bundle's ``manifest.catalog`` describes the catalog files (see :func:`read_catalog`)::

    {"kind": "image_embeddings", "items": N, "dim": D, "metric": "cosine",
     "embedded_by": "teacher" | "student", "model": {...},
     "items_file": "catalog/items.json",     # {"ids": [...], "categories": [...], "metadata": [{...}, ...]}
     "categories": ["T-shirt/top", ...],
     "embeddings": {"int8": {"path": ..., "dtype": "int8", "scale": "per-vector", "scale_path": ...},
                    "fp32": {"path": ..., "dtype": "float32"}},
     "default": "int8"}

int8 rows are ``round(e / s)`` with ``s = max|e| / 127`` per row (``scale: "per-vector"``) or one ``scale`` number
for all rows (``scale: "global"``, the value under ``scale_value``); a score is ``s * (q . row)`` for the float query.
``metadata`` (optional) holds one dict per item — the catalog's extra columns — returned with each hit. An optional
``"index"`` entry describes an approximate IVF index (:mod:`edgecart.runtime.index`).

Scoring runs on one thread: numpy's BLAS threads fought the engine's own thread pool (13.7 ms instead of 1.4 ms per
search with one core busy), so BLAS is limited to one thread for each scoring call (threadpoolctl, restored after);
without threadpoolctl a single query is scored with ``np.einsum`` (no BLAS at all; about 2x slower at 9k items).
An int8 catalog is scored from a float32 copy dequantised ONCE at load when that copy is at most
``FLOAT_COPY_LIMIT_BYTES`` (64 MiB: 131k items of dimension 128), else straight from the int8 rows, converted in
small chunks inside ``np.einsum`` (4x less memory, no per-query full copy, slower); ``scoring=`` forces either.
Measured figures: ``benchmarks/results/search/``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._open import open_task_bundle
from .bundle import Bundle
from .errors import BundleError, InputSpecError, ManifestError
from .index import IVFIndex, read_index
from .manifest import ImagePreprocessing
from .preprocess import preprocess
from .session import Session, load
from .topk import merge_top_k, top_k, top_k_row

#: An int8 catalog is dequantised to a float32 copy at load when the copy takes at most this many bytes.
FLOAT_COPY_LIMIT_BYTES = 64 * 2**20
SCORING = ("auto", "float32", "int8")
_QUERY_BLOCK = 16384  # catalog rows dequantised at a time when a batch of queries scores an int8 catalog
_blas_libs: list[Any] | None = None


def _blas() -> list[Any]:
    """numpy's BLAS libraries as threadpoolctl controllers (found once; empty without threadpoolctl)."""
    global _blas_libs
    if _blas_libs is None:
        try:
            from threadpoolctl import ThreadpoolController

            _blas_libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # not installed, or no BLAS found: nothing to limit
            _blas_libs = []
    return _blas_libs


@contextlib.contextmanager
def one_blas_thread() -> Iterator[bool]:
    """numpy's BLAS limited to one thread inside the block, restored after (a few microseconds: two library calls per
    BLAS); yields False when that cannot be done (no threadpoolctl), so callers can avoid BLAS instead."""
    libs = _blas()
    if not libs:
        yield False
        return
    before = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        yield True
    finally:
        for lib, n in zip(libs, before, strict=True):
            lib.set_num_threads(n)


def _matvec(m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(N,) = m (N, D) . q (D,) in float32 on one thread: BLAS limited to one thread, else numpy's einsum."""
    with one_blas_thread() as limited:
        if limited:
            return m @ q
    return np.einsum("nd,d->n", m, q)


@dataclass(frozen=True)
class Catalog:
    """Catalog embeddings (int8 with scales, or float32) with item ids, category indices and optional metadata.

    ``scoring``: ``"auto"`` (an int8 catalog is dequantised once to float32 when that copy is at most
    :data:`FLOAT_COPY_LIMIT_BYTES`, else scored from its int8 rows), ``"float32"`` (always the copy) or ``"int8"``
    (never). ``index``: an optional approximate index used by :meth:`search` when asked.
    """

    ids: tuple[str, ...]
    categories: np.ndarray
    category_names: tuple[str, ...]
    embeddings: np.ndarray
    scales: np.ndarray | None
    metric: str
    embedded_by: str
    precision: str
    metadata: tuple[dict[str, Any], ...] | None = None
    scoring: str = "auto"
    index: IVFIndex | None = None
    _matrix: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scoring not in SCORING:
            raise InputSpecError(f"scoring {self.scoring!r} is not one of {SCORING}")
        if self.metadata is not None and len(self.metadata) != len(self.ids):
            raise ManifestError(f"catalog metadata has {len(self.metadata)} entries for {len(self.ids)} items")
        e = self.embeddings
        if self.scales is None:
            m = np.ascontiguousarray(e, np.float32)
        elif self.scoring == "float32" or (self.scoring == "auto" and e.size * 4 <= FLOAT_COPY_LIMIT_BYTES):
            m = e.astype(np.float32)
            m *= self.scales[:, None]
        else:
            m = None
        object.__setattr__(self, "_matrix", m)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def scoring_path(self) -> str:
        """How queries are scored: ``float32`` (fp32 catalog), ``int8->float32 copy`` or ``int8 rows``."""
        if self.scales is None:
            return "float32"
        return "int8->float32 copy" if self._matrix is not None else "int8 rows"

    @property
    def scoring_bytes(self) -> int:
        """Bytes of embeddings that scoring reads (the float32 copy when one was made, else the stored rows)."""
        return int((self._matrix if self._matrix is not None else self.embeddings).nbytes)

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        """(Q, D) float32 queries from one (D,) query or a (Q, D) batch."""
        q = np.asarray(queries, np.float32)
        dim = self.embeddings.shape[1]
        if q.ndim not in (1, 2) or q.shape[-1] != dim:
            raise InputSpecError(f"queries of shape {q.shape}: the catalog takes one query of shape ({dim},) or a "
                                 f"batch of shape (Q, {dim}), {dim} being its dimension")
        return q[None] if q.ndim == 1 else q

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """(Q, N) similarity of float queries (Q, D) to every catalog row."""
        q = self._queries(queries)
        if len(q) == 1:
            return self.score_one(q[0])[None]
        if self._matrix is not None:
            with one_blas_thread():
                return q @ self._matrix.T
        out = np.empty((len(q), len(self)), np.float32)
        with one_blas_thread():
            for a in range(0, len(self), _QUERY_BLOCK):
                block = self.embeddings[a:a + _QUERY_BLOCK].astype(np.float32)
                np.matmul(q, block.T, out=out[:, a:a + _QUERY_BLOCK])
        out *= self.scales[None, :]
        return out

    def score_one(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """(N,) similarity of one (D,) float32 query to every row (or to catalog ``rows`` only), on one thread."""
        if self._matrix is not None:
            return _matvec(self._matrix if rows is None else self._matrix[rows], query)
        e = self.embeddings if rows is None else self.embeddings[rows]
        s = np.einsum("nd,d->n", e, query, dtype=np.float32, casting="unsafe")
        s *= self.scales if rows is None else self.scales[rows]
        return s

    def top_k(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices (Q, k) and scores (Q, k) of the ``k`` best rows per query, best first (ties: lower index)."""
        return top_k(self.scores(queries), k)

    def search_one(self, query: np.ndarray, k: int, *, approximate: bool = False,
                   nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices (k,) and scores (k,) for one (D,) query: exact, or through the IVF index when ``approximate``."""
        q = self._queries(query)[0]
        if not approximate:
            s = self.score_one(q)
            idx = top_k_row(s, min(k, len(s))) if len(s) else np.zeros(0, np.int64)
            return idx, s[idx]
        if self.index is None:
            raise BundleError("this catalog has no approximate index; build one at bundle time "
                              "(edgecart.runtime.index.add_index) or search exactly")
        cand = self.index.candidates(q, nprobe)
        return merge_top_k(cand, self.score_one(q, cand), k)


def quantize_rows(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: returns (int8 rows, float32 scales) with ``emb ~= rows * scales[:, None]``."""
    e = np.asarray(emb, np.float32)
    amax = np.abs(e).max(axis=1)
    scales = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(e / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales


def read_catalog(bundle: Bundle, precision: str | None = None, scoring: str = "auto") -> Catalog:
    """Load the catalog a bundle's manifest describes (``precision``: 'int8', 'fp32' or its default; ``scoring``: see
    :class:`Catalog`), with its item metadata and approximate index when the bundle has them."""
    m = bundle.manifest
    c = m.catalog
    if not c or c.get("kind") != "image_embeddings":
        raise BundleError(f"bundle {m.name!r} carries no image catalog (manifest.catalog.kind != 'image_embeddings');"
                          " export it with the image-search pipeline")
    try:
        variants = c["embeddings"]
        precision = precision or c.get("default") or next(iter(variants))
        if precision not in variants:
            raise BundleError(f"catalog of {m.name!r} has no {precision!r} embeddings; it has {sorted(variants)}")
        v = variants[precision]
        items = json.loads(bundle.read_verified(c["items_file"]).decode("utf-8"))
        ids, cats = tuple(str(i) for i in items["ids"]), np.asarray(items["categories"], np.int64)
        emb = bundle.load_npy(v["path"])
        scales = None
        if v["dtype"] == "int8":
            if v.get("scale") == "per-vector":
                scales = bundle.load_npy(v["scale_path"]).astype(np.float32)
            elif v.get("scale") == "global":
                scales = np.full(len(ids), float(v["scale_value"]), np.float32)
            else:
                raise ManifestError(f"catalog int8 scale {v.get('scale')!r} must be 'per-vector' or 'global'")
        metadata = _metadata(items.get("metadata"), len(ids))
        names = tuple(c.get("categories", ()))
        metric, by = str(c.get("metric", "cosine")), str(c.get("embedded_by", ""))
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ManifestError(f"catalog of {m.name!r} is malformed ({type(exc).__name__}: {exc}); re-export the bundle") \
            from None
    want_dtype = np.int8 if v["dtype"] == "int8" else np.float32
    if emb.dtype != want_dtype or emb.ndim != 2 or len(emb) != len(ids) or len(cats) != len(ids):
        raise ManifestError(f"catalog of {m.name!r}: embeddings {emb.dtype}{emb.shape} do not match {len(ids)} items "
                            f"of dtype {v['dtype']}; re-export the bundle")
    if scales is not None and scales.shape != (len(ids),):
        raise ManifestError(f"catalog of {m.name!r}: {scales.shape} scales for {len(ids)} items; re-export the bundle")
    if metric != "cosine":
        raise ManifestError(f"catalog metric {metric!r} is not supported (only 'cosine')")
    index = None
    if c.get("index") is not None:
        if not isinstance(c["index"], dict):
            raise ManifestError(f"catalog of {m.name!r}: 'index' must be an object; rebuild the index")
        index = read_index(bundle.load_npy, c["index"], len(ids), emb.shape[1])
    return Catalog(ids, cats, names, np.ascontiguousarray(emb), scales, metric, by, precision, metadata, scoring,
                   index)


def _metadata(meta: Any, n: int) -> tuple[dict[str, Any], ...] | None:
    """The items file's optional per-item metadata: a list of one dict (or null) per item."""
    if meta is None:
        return None
    if not isinstance(meta, list) or len(meta) != n or not all(x is None or isinstance(x, dict) for x in meta):
        raise ValueError(f"'metadata' must be a list of {n} objects (one per item, null for none)")
    return tuple({} if x is None else x for x in meta)


@dataclass(frozen=True)
class SearchResult:
    """The ``k`` best catalog items for one query, best first. ``metadata[j]`` holds hit j's catalog metadata (the
    items file's extra columns) plus its ``id``, ``category``, ``category_index`` and ``score`` (these four win over
    metadata keys of the same name)."""

    ids: tuple[str, ...]
    scores: np.ndarray
    indices: np.ndarray
    categories: tuple[str, ...]
    metadata: tuple[dict[str, Any], ...]

    def __len__(self) -> int:
        return len(self.ids)


class ImageSearch:
    """Search a bundle's catalog with a picture: ``ImageSearch(bundle).search(image, k=10)``.

    ``backend``/``artifact``/``precision``/``threads`` choose the embedding model as :func:`edgecart.runtime.load`
    does; ``catalog_precision`` picks the catalog's int8 or fp32 embeddings (default: the manifest's default);
    ``scoring`` how an int8 catalog is scored (see :class:`Catalog`). ``index``: ``"auto"`` searches through the
    bundle's approximate index when it has one, ``"exact"`` always scans every row, ``"ivf"`` requires the index;
    ``nprobe`` overrides the index's default number of lists searched.
    """

    def __init__(self, bundle: str | os.PathLike[str] | Bundle, backend: str = "auto", threads: int | None = None, *,
                 artifact: str | None = None, precision: str | None = None,
                 catalog_precision: str | None = None, scoring: str = "auto", index: str = "auto",
                 nprobe: int | None = None, public_key: Any = None) -> None:
        if index not in ("auto", "exact", "ivf"):
            raise InputSpecError(f"index {index!r} is not one of ('auto', 'exact', 'ivf')")
        if nprobe is not None and (isinstance(nprobe, bool) or not isinstance(nprobe, int) or nprobe < 1):
            raise InputSpecError(f"nprobe must be an integer >= 1, got {nprobe!r}")
        self.bundle = open_task_bundle(bundle, "image_search", ImagePreprocessing, "ImageSearch", public_key)
        m = self.bundle.manifest
        self.preprocessing = m.preprocessing
        self.session: Session = load(self.bundle, backend, artifact=artifact, precision=precision, threads=threads)
        self.catalog = read_catalog(self.bundle, catalog_precision, scoring)
        if index == "ivf" and self.catalog.index is None:
            raise BundleError(f"bundle {m.name!r} has no approximate index (manifest.catalog.index); rebuild the "
                              "bundle with one (edgecart.runtime.index.add_index) or use index='exact' (--index exact)")
        self.approximate = index != "exact" and self.catalog.index is not None
        self.nprobe = nprobe
        out = m.outputs[0]
        if out.shape[-1] != self.catalog.embeddings.shape[1]:
            raise ManifestError(f"model output {out.name!r} has dimension {out.shape[-1]}, the catalog "
                                f"{self.catalog.embeddings.shape[1]}; re-export the bundle")
        self._out = out.name

    def embed(self, image: Any) -> np.ndarray:
        """The (D,) embedding of one picture (path, PIL image or uint8 array)."""
        x = preprocess(image, self.preprocessing)
        return self.embed_input(x)

    def embed_input(self, x: np.ndarray) -> np.ndarray:
        """The (D,) embedding of an already preprocessed model input."""
        return self.session.run(x)[self._out].reshape(-1)

    def search(self, image: Any, k: int = 10) -> SearchResult:
        """The ``k`` catalog items most similar to ``image``, best first."""
        return self.search_embedding(self.embed(image), k)

    def search_embedding(self, embedding: np.ndarray, k: int = 10) -> SearchResult:
        """The ``k`` catalog items most similar to a (D,) embedding, best first."""
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
            raise InputSpecError(f"k must be an integer, got {type(k).__name__}")
        try:
            e = np.asarray(embedding, np.float32)
        except (TypeError, ValueError) as exc:
            raise InputSpecError(f"the query embedding must be numbers ({exc})") from None
        dim = self.catalog.embeddings.shape[1]
        if e.size != dim:  # (D,), or any shape holding D numbers ((1, D)) is one embedding
            raise InputSpecError(f"the query embedding has shape {e.shape}; search_embedding takes one embedding of "
                                 f"shape ({dim},) (or (1, {dim})), the catalog's dimension; search a batch (Q, {dim}) "
                                 "with .catalog.top_k(queries, k)")
        if not np.isfinite(e).all():
            raise InputSpecError("the query embedding holds NaN or Inf; it ranks nothing — check the model's input")
        c = self.catalog
        idx, scores = c.search_one(e.reshape(-1), int(k), approximate=self.approximate, nprobe=self.nprobe)
        names = [c.category_names[int(i)] if 0 <= int(i) < len(c.category_names) else str(int(i))
                 for i in c.categories[idx]]
        extra = c.metadata or ({},) * len(c)
        meta = tuple({**extra[i], "id": c.ids[i], "category": names[j], "category_index": int(c.categories[i]),
                      "score": float(scores[j])} for j, i in enumerate(idx))
        return SearchResult(tuple(c.ids[i] for i in idx), scores, idx, tuple(names), meta)

    def __repr__(self) -> str:
        return (f"ImageSearch(bundle={self.bundle.manifest.name!r}, artifact={self.session.artifact.name!r}, "
                f"backend={self.session.backend.name!r}, catalog={len(self.catalog)} x {self.catalog.precision}, "
                f"scoring={self.catalog.scoring_path!r}, approximate={self.approximate})")
