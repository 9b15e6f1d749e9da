""""Buy it again": the recommendations bundle's optional repeat-purchase prior. Where people re-buy what they
bought before (groceries, household goods) the next item is mostly one from the shopper's own history, and a model
that reads only its last ``max_len`` items misses most of that history. A bundle can carry ``catalog.buy_again``, a
weight chosen on the validation split at build time (absent when the build found it no help, e.g. on ratings, where
nobody rates an item twice). The runtime then ranks by
    log_softmax(scores) + weight * log p_again,
``scores`` being the model's (after the item-to-item blend, when the bundle has one) and ``p_again`` the history's
own items counted over the whole history, each occurrence weighted ``decay ** age`` (age 0: the latest), plus
``smoothing`` per item, normalised over the items. The history's items must then stay rankable: a bundle with this
prior ranks seen items unless the caller excludes them. numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import read_catalog_entry
from .errors import BundleError


@dataclass(frozen=True)
class BuyAgain:
    weight: float  # of log p_again, added to the model's log-probabilities (> 0 in a bundle)
    decay: float = 1.0
    smoothing: float = 0.01

    def __post_init__(self) -> None:
        if not (np.isfinite(self.weight) and self.weight >= 0 and 0.0 < self.decay <= 1.0 and self.smoothing > 0):
            raise BundleError(f"buy_again: weight {self.weight} >= 0, decay {self.decay} in (0, 1] and smoothing "
                              f"{self.smoothing} > 0 are needed; re-export the bundle")

    def log_probs(self, histories: Sequence[np.ndarray], num_columns: int) -> np.ndarray:
        """log p_again [U, num_columns] (float64); column 0 (padding) is -inf. Indices outside 1..num_columns - 1
        are not counted."""
        counts = np.zeros((len(histories), num_columns), np.float64)
        for u, h in enumerate(histories):
            h = np.asarray(h, np.int64)
            keep = (h >= 0) & (h < num_columns)
            ages = np.arange(h.size - 1, -1, -1, dtype=np.float64)[keep]
            np.add.at(counts[u], h[keep], self.decay ** ages)
        c = counts[:, 1:] + self.smoothing
        out = np.empty_like(counts)
        out[:, 0] = -np.inf
        out[:, 1:] = np.log(c / c.sum(axis=1, keepdims=True))
        return out

    def blend_scores(self, scores: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``log_softmax(scores over items 1..n) + weight * log p_again`` [U, columns]; column 0 is -inf."""
        s = np.asarray(scores, np.float64)
        if s.ndim != 2 or s.shape[0] != len(histories):
            raise ValueError(f"scores {s.shape} for {len(histories)} histories")
        items = s[:, 1:]
        finite = np.where(np.isfinite(items), items, -np.inf)
        top = finite.max(axis=1, keepdims=True)
        lp = items - (top + np.log(np.exp(finite - top).sum(axis=1, keepdims=True)))
        out = np.empty_like(s)
        out[:, 0] = -np.inf
        out[:, 1:] = lp + self.weight * self.log_probs(histories, s.shape[1])[:, 1:] if self.weight else lp
        return out

    def describe(self) -> dict[str, Any]:
        """The manifest's ``catalog.buy_again`` entry."""
        return {"weight": float(self.weight), "decay": float(self.decay), "smoothing": float(self.smoothing),
                "use": "score = log_softmax(scores) + weight * log p_again; p_again: the history's own items counted "
                       "over the whole history, each weighted decay ** age (0 = latest), plus smoothing, normalised"}


def read_buy_again(bundle: Any) -> BuyAgain | None:
    """The bundle's buy-again prior (``manifest.catalog.buy_again``), or None when it carries none."""
    return read_catalog_entry(bundle, "buy_again", _buy_again)


def _buy_again(entry: Any) -> BuyAgain:
    if not isinstance(entry, Mapping) or isinstance(entry.get("weight"), bool):
        raise TypeError("not a mapping with a numeric weight")
    return BuyAgain(float(entry["weight"]), float(entry.get("decay", 1.0)), float(entry.get("smoothing", 0.01)))
