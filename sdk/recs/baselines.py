"""Baselines that show what the learned models are worth: global popularity and item-to-item co-occurrence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from edgecart.runtime.item_to_item import ItemToItem


class Popularity:
    """Scores every item by how often it occurs in the training sequences (the cold-start fallback too)."""

    def __init__(self, train: Sequence[np.ndarray], num_items: int) -> None:
        counts = np.zeros(num_items + 1, np.float64)
        for s in train:
            np.add.at(counts, np.asarray(s, np.int64), 1.0)
        counts[0] = 0.0
        self.counts = counts

    def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        s = np.tile(self.counts, (len(histories), 1))
        s[:, 0] = -np.inf
        return s


class CoOccurrence:
    """Item-to-item "bought next": ``C[i, j]`` counts how often ``j`` follows ``i`` within ``window`` positions in
    the training sequences. A user's score is the sum of the rows of their last ``recent`` items, weighted by
    ``decay ** age``; popularity breaks ties (an item never seen after the history scores by popularity only).
    The matrix is kept sparse (compressed rows in numpy)."""

    def __init__(self, train: Sequence[np.ndarray], num_items: int, window: int = 3, recent: int = 5,
                 decay: float = 0.7) -> None:
        if window < 1 or recent < 1 or not 0 < decay <= 1:
            raise ValueError("window >= 1, recent >= 1 and 0 < decay <= 1")
        self.num_items, self.recent, self.decay = num_items, recent, decay
        v = num_items + 1
        codes = []
        for s in train:
            s = np.asarray(s, np.int64)
            for d in range(1, min(window, len(s) - 1) + 1):
                codes.append(s[:-d] * v + s[d:])
        flat = np.concatenate(codes) if codes else np.zeros(0, np.int64)
        uniq, counts = np.unique(flat, return_counts=True)
        rows = uniq // v
        self._cols = uniq % v
        self._vals = counts.astype(np.float64)
        self._indptr = np.searchsorted(rows, np.arange(v + 1))
        self._pop = Popularity(train, num_items).counts
        self.nonzeros = int(uniq.size)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self._indptr[i], self._indptr[i + 1]
        return self._cols[a:b], self._vals[a:b]

    def item_to_item(self, blend: float, neighbours: int | None = None) -> ItemToItem:
        """The runtime's blended scorer (:class:`edgecart.runtime.item_to_item.ItemToItem`) over this matrix, each
        row cut to its ``neighbours`` largest counts (None: all), with this model's ``recent`` and ``decay``."""
        if neighbours is not None and neighbours < 1:
            raise ValueError("neighbours must be >= 1 (or None for every co-occurring item)")
        rows = self.num_items + 1
        keep = np.ones(self._cols.size, bool)
        if neighbours is not None:
            for i in range(rows):
                a, b = self._indptr[i], self._indptr[i + 1]
                if b - a > neighbours:
                    order = np.argsort(-self._vals[a:b], kind="stable")
                    keep[a:b] = False
                    keep[a + order[:neighbours]] = True
        counts = np.bincount(np.repeat(np.arange(rows), np.diff(self._indptr)), weights=keep, minlength=rows)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return ItemToItem(indptr, self._cols[keep].astype(np.int32), self._vals[keep].astype(np.float32), blend,
                          self.recent, self.decay)

    def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(histories), self.num_items + 1), np.float64)
        tie = self._pop / (self._pop.max() + 1.0) * 1e-3  # below one co-occurrence count
        for u, h in enumerate(histories):
            recent = np.asarray(h, np.int64)[-self.recent:][::-1]
            for age, i in enumerate(recent):
                cols, vals = self.row(int(i))
                out[u, cols] += vals * self.decay ** age
            out[u] += tie
        out[:, 0] = -np.inf
        return out
