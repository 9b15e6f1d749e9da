"""Item-to-item co-occurrence blended with the model's scores: the recommendations bundle's optional second scorer.

Many interaction logs hold sessions whose order means little (MovieLens: three quarters of the ratings share their
second with another of the same user), where "people who took this also took that" is strong. The bundle can carry
each item's most frequent followers (``catalog.item_to_item``: compressed rows, the top ``neighbours`` per item)
and a blend weight chosen on the validation split at build time. The runtime then ranks by

    log(blend * softmax(model scores) + (1 - blend) * p_cooc),

``p_cooc`` being the history's co-occurrence scores (the rows of its last ``recent`` items, weighted
``decay ** age``) plus ``smoothing``, normalised over the items. numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import read_catalog_entry
from .errors import BundleError


@dataclass(frozen=True)
class ItemToItem:
    """Compressed rows: row ``i`` (a model index, 0 = padding) holds ``items[indptr[i]:indptr[i + 1]]`` with
    ``weights`` (co-occurrence counts); indices past the rows (items added to the bundle later) have no row."""

    indptr: np.ndarray  # int64 [rows + 1]
    items: np.ndarray  # int32 [nnz], each in 1..rows - 1
    weights: np.ndarray  # float32 [nnz], >= 0
    blend: float  # weight of the model's probabilities (1 - blend: of the co-occurrence's)
    recent: int = 5
    decay: float = 0.7
    smoothing: float = 0.01

    def __post_init__(self) -> None:
        p, it, w = self.indptr, self.items, self.weights
        if p.ndim != 1 or p.size < 2 or p[0] != 0 or p[-1] != it.size or np.any(np.diff(p) < 0):
            raise BundleError("item_to_item: indptr must start at 0, never decrease and end at the neighbour count; "
                              "re-export the bundle")
        if it.shape != w.shape or it.ndim != 1:
            raise BundleError(f"item_to_item: {it.shape} neighbours but {w.shape} weights; re-export the bundle")
        if it.size and (it.min() < 1 or it.max() >= p.size - 1):
            raise BundleError(f"item_to_item: neighbour indices must lie in 1..{p.size - 2}; re-export the bundle")
        if not np.all(np.isfinite(w)) or (w.size and w.min() < 0):
            raise BundleError("item_to_item: weights must be finite and >= 0; re-export the bundle")
        if not 0.0 <= self.blend <= 1.0 or self.recent < 1 or not 0.0 < self.decay <= 1.0 or self.smoothing <= 0:
            raise BundleError(f"item_to_item: blend {self.blend} in [0, 1], recent {self.recent} >= 1, decay "
                              f"{self.decay} in (0, 1], smoothing {self.smoothing} > 0 are needed; re-export the "
                              "bundle")

    @property
    def rows(self) -> int:
        return int(self.indptr.size - 1)

    def scores(self, histories: Sequence[np.ndarray], num_columns: int) -> np.ndarray:
        """Co-occurrence scores [U, num_columns] (float64): the rows of each history's last ``recent`` items."""
        out = np.zeros((len(histories), num_columns), np.float64)
        for u, h in enumerate(histories):
            recent = np.asarray(h, np.int64)[-self.recent:][::-1]
            for age, i in enumerate(recent.tolist()):
                if 0 < i < self.rows:
                    a, b = self.indptr[i], self.indptr[i + 1]
                    out[u, self.items[a:b]] += self.weights[a:b] * self.decay ** age
        return out

    def blend_scores(self, model_scores: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """The blended log-probabilities [U, columns] of model scores [U, columns] (column 0, padding, -inf)."""
        s = np.asarray(model_scores, np.float64)
        if s.ndim != 2 or s.shape[0] != len(histories):
            raise ValueError(f"model scores {s.shape} for {len(histories)} histories")
        logits = s[:, 1:]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        p_model = e / e.sum(axis=1, keepdims=True)
        c = self.scores(histories, s.shape[1])[:, 1:] + self.smoothing
        p_cooc = c / c.sum(axis=1, keepdims=True)
        out = np.empty_like(s)
        out[:, 0] = -np.inf
        with np.errstate(divide="ignore"):
            out[:, 1:] = np.log(self.blend * p_model + (1.0 - self.blend) * p_cooc)
        return out

    def describe(self, paths: Mapping[str, str]) -> dict[str, Any]:
        """The manifest's ``catalog.item_to_item`` entry for files at ``paths`` (indptr, items, weights)."""
        return {**paths, "blend": float(self.blend), "recent": int(self.recent), "decay": float(self.decay),
                "smoothing": float(self.smoothing), "rows": self.rows, "neighbours": int(self.items.size),
                "use": "score = log(blend * softmax(model scores) + (1 - blend) * p_cooc); p_cooc: the rows of the "
                       "history's last `recent` items weighted decay ** age, plus smoothing, normalised"}


def read_item_to_item(bundle: Any) -> ItemToItem | None:
    """The bundle's item-to-item scorer (``manifest.catalog.item_to_item``), or None when it carries none."""
    def build(entry: Any) -> ItemToItem:
        if not isinstance(entry, Mapping) or not all(isinstance(entry.get(k), str)
                                                     for k in ("indptr", "items", "weights")):
            raise BundleError(f"bundle {bundle.manifest.name!r}: catalog.item_to_item needs indptr, items and "
                              "weights file paths; re-export the bundle")
        return ItemToItem(bundle.load_npy(entry["indptr"]).astype(np.int64), bundle.load_npy(entry["items"]),
                          bundle.load_npy(entry["weights"]).astype(np.float32), float(entry["blend"]),
                          int(entry.get("recent", 5)), float(entry.get("decay", 0.7)),
                          float(entry.get("smoothing", 0.01)))

    return read_catalog_entry(bundle, "item_to_item", build)
