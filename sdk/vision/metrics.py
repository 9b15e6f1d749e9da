"""Retrieval quality with a category-level hit (a retrieved item is relevant when it has the query's category).

- Recall@K: the fraction of queries with at least one relevant item among the top K (the usual image-retrieval
  definition, e.g. the Stanford Online Products / CUB R@K).
- mAP@K: the mean over queries of AP@K = (1 / min(K, R)) * sum_{i <= K} P@i * rel_i, where R is the number of relevant
  catalog items for the query (``apk`` of the Kaggle ml_metrics package).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from edgecart.runtime.search import top_k


@dataclass(frozen=True)
class Retrieval:
    """Recall@1, Recall@10 and mAP@10 over ``queries`` queries."""

    recall_at_1: float
    recall_at_10: float
    map_at_10: float
    queries: int

    def as_dict(self) -> dict[str, float]:
        return {"recall@1": self.recall_at_1, "recall@10": self.recall_at_10, "map@10": self.map_at_10,
                "queries": self.queries}


def hits(retrieved_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    """(Q, K) booleans: retrieved item j of query i shares its category."""
    return np.asarray(retrieved_labels) == np.asarray(query_labels)[:, None]


def recall_at_k(rel: np.ndarray, k: int) -> float:
    """Share of queries with a relevant item in the first ``k`` columns of ``rel`` (Q, >=k)."""
    return float(np.mean(rel[:, :k].any(axis=1))) if len(rel) else 0.0


def average_precision_at_k(rel: np.ndarray, k: int, relevant_total: np.ndarray) -> np.ndarray:
    """AP@k per query: ``rel`` (Q, >=k) booleans, ``relevant_total`` (Q,) relevant catalog items per query."""
    r = rel[:, :k].astype(np.float64)
    precision = np.cumsum(r, axis=1) / np.arange(1, r.shape[1] + 1)
    denom = np.minimum(k, np.asarray(relevant_total, np.float64))
    return np.where(denom > 0, (precision * r).sum(axis=1) / np.maximum(denom, 1), 0.0)


def retrieval_from_ranks(ranked_labels: np.ndarray, query_labels: np.ndarray,
                         gallery_labels: np.ndarray, valid: np.ndarray | None = None) -> Retrieval:
    """Metrics from the category of each query's ranked results (Q, >=10). A query with ``valid`` False (e.g. a
    NaN/Inf embedding) counts as a miss whatever its ranking says."""
    rel = hits(ranked_labels, query_labels)
    if valid is not None:
        rel = rel & np.asarray(valid, bool)[:, None]
    totals = (np.asarray(gallery_labels)[None, :] == np.asarray(query_labels)[:, None]).sum(axis=1)
    return Retrieval(recall_at_k(rel, 1), recall_at_k(rel, 10), float(average_precision_at_k(rel, 10, totals).mean()),
                     len(query_labels))


def retrieval(query_emb: np.ndarray, query_labels: np.ndarray, gallery_emb: np.ndarray,
              gallery_labels: np.ndarray, gallery_scales: np.ndarray | None = None) -> Retrieval:
    """Exact cosine search of every query in the gallery (int8 rows with ``gallery_scales`` or float), scored."""
    idx = rank(query_emb, gallery_emb, gallery_scales, k=10)
    valid = np.isfinite(np.asarray(query_emb, np.float64)).all(axis=1)  # a NaN/Inf embedding finds nothing
    return retrieval_from_ranks(np.asarray(gallery_labels)[idx], query_labels, gallery_labels, valid)


def rank(query_emb: np.ndarray, gallery_emb: np.ndarray, gallery_scales: np.ndarray | None = None, k: int = 10,
         chunk: int = 512) -> np.ndarray:
    """(Q, k) indices of the best gallery rows per query, computed in chunks of queries."""
    g = gallery_emb.astype(np.float32, copy=False)
    out = []
    for i in range(0, len(query_emb), chunk):
        s = np.asarray(query_emb[i:i + chunk], np.float32) @ g.T
        if gallery_scales is not None:
            s *= gallery_scales[None, :]
        out.append(top_k(s, k)[0])
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)
