"""On-device search-by-image: preprocess as the manifest says, embed with one artifact, scan the catalog exactly.

The bundle's ``manifest.catalog`` describes the catalog files (see :func:`read_catalog`)::

    {"kind": "image_embeddings", "items": N, "dim": D, "metric": "cosine",
     "embedded_by": "teacher" | "student", "model": {...},
     "items_file": "catalog/items.json",                       # {"ids": [...], "categories": [...]}
     "categories": ["T-shirt/top", ...],
     "embeddings": {"int8": {"path": ..., "dtype": "int8", "scale": "per-vector", "scale_path": ...},
                    "fp32": {"path": ..., "dtype": "float32"}},
     "default": "int8"}

int8 rows are ``round(e / s)`` with ``s = max|e| / 127`` per row (``scale: "per-vector"``) or one ``scale`` number
for all rows (``scale: "global"``, the value under ``scale_value``); a score is ``s * (q . row)`` for the float query.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import Bundle, open_bundle
from .errors import BundleError, InputSpecError, ManifestError
from .manifest import ImagePreprocessing
from .preprocess import preprocess
from .session import Session, load


@dataclass(frozen=True)
class Catalog:
    """Catalog embeddings (int8 with scales, or float32) with item ids and category indices."""

    ids: tuple[str, ...]
    categories: np.ndarray
    category_names: tuple[str, ...]
    embeddings: np.ndarray
    scales: np.ndarray | None
    metric: str
    embedded_by: str
    precision: str

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """(Q, N) similarity of float queries (Q, D) to every catalog row."""
        q = np.asarray(queries, np.float32)
        if q.ndim == 1:
            q = q[None]
        dim = self.embeddings.shape[1]
        if q.ndim != 2 or q.shape[1] != dim:
            raise InputSpecError(f"queries of shape {q.shape} do not match the catalog's dimension {dim}")
        s = q @ self.embeddings.astype(np.float32, copy=False).T
        if self.scales is not None:
            s *= self.scales[None, :]
        return s

    def top_k(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices (Q, k) and scores (Q, k) of the ``k`` best rows per query, best first (ties: lower index)."""
        return top_k(self.scores(queries), k)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k per row of a (Q, N) score matrix, best first; ties go to the lower index."""
    if k < 1:
        raise InputSpecError(f"k must be >= 1, got {k}")
    rows, n = scores.shape
    k = min(k, n)
    ties = np.zeros(rows, bool)
    if k < n:
        cand = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(scores, cand, axis=1)
        kth = vals.min(axis=1, keepdims=True)
        # where the k-th score is tied with items left out, argpartition chose among them arbitrarily
        ties = (scores == kth).sum(axis=1) != (vals == kth).sum(axis=1)
    else:
        cand = np.tile(np.arange(n), (rows, 1))
        vals = scores
    idx = np.take_along_axis(cand, np.lexsort((cand, -vals), axis=1), axis=1)
    for r in np.flatnonzero(ties):
        idx[r] = np.lexsort((np.arange(n), -scores[r]))[:k]
    return idx, np.take_along_axis(scores, idx, axis=1)


def quantize_rows(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: returns (int8 rows, float32 scales) with ``emb ~= rows * scales[:, None]``."""
    e = np.asarray(emb, np.float32)
    amax = np.abs(e).max(axis=1)
    scales = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(e / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales


def read_catalog(bundle: Bundle, precision: str | None = None) -> Catalog:
    """Load the catalog a bundle's manifest describes (``precision``: 'int8', 'fp32' or its default)."""
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
        items = json.loads(bundle.path(c["items_file"]).read_text(encoding="utf-8"))
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
    return Catalog(ids, cats, names, np.ascontiguousarray(emb), scales, metric, by, precision)


@dataclass(frozen=True)
class SearchResult:
    """The ``k`` best catalog items for one query, best first."""

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
    does; ``catalog_precision`` picks the catalog's int8 or fp32 embeddings (default: the manifest's default).
    """

    def __init__(self, bundle: str | os.PathLike[str] | Bundle, backend: str = "auto", threads: int | None = None, *,
                 artifact: str | None = None, precision: str | None = None,
                 catalog_precision: str | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
        m = self.bundle.manifest
        if m.task != "image_search":
            raise BundleError(f"bundle {m.name!r} is for task {m.task!r}, not image_search")
        if not isinstance(m.preprocessing, ImagePreprocessing):
            raise ManifestError(f"bundle {m.name!r} declares no image preprocessing; re-export it")
        self.preprocessing = m.preprocessing
        self.session: Session = load(self.bundle, backend, artifact=artifact, precision=precision, threads=threads)
        self.catalog = read_catalog(self.bundle, catalog_precision)
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
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
            raise InputSpecError(f"k must be an integer, got {type(k).__name__}")
        try:
            e = np.asarray(embedding, np.float32)
        except (TypeError, ValueError) as exc:
            raise InputSpecError(f"the query embedding must be numbers ({exc})") from None
        if not np.isfinite(e).all():
            raise InputSpecError("the query embedding holds NaN or Inf; it ranks nothing — check the model's input")
        idx, scores = self.catalog.top_k(e[None], int(k))
        idx, scores = idx[0], scores[0]
        c = self.catalog
        names = [c.category_names[int(i)] if 0 <= int(i) < len(c.category_names) else str(int(i))
                 for i in c.categories[idx]]
        meta = tuple({"id": c.ids[i], "category": names[j], "category_index": int(c.categories[i]),
                      "score": float(scores[j])} for j, i in enumerate(idx))
        return SearchResult(tuple(c.ids[i] for i in idx), scores, idx, tuple(names), meta)

    def __repr__(self) -> str:
        return (f"ImageSearch(bundle={self.bundle.manifest.name!r}, artifact={self.session.artifact.name!r}, "
                f"backend={self.session.backend.name!r}, catalog={len(self.catalog)} x {self.catalog.precision})")
