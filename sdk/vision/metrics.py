"""Retrieval quality with a category-level hit (a retrieved item is relevant when it has the query's category).

- Recall@K: the fraction of queries with at least one relevant item among the top K (the usual image-retrieval
  definition, e.g. the Stanford Online Products / CUB R@K).
- mAP@K: the mean over queries of AP@K = (1 / min(K, R)) * sum_{i <= K} P@i * rel_i, where R is the number of relevant
  catalog items for the query (``apk`` of the Kaggle ml_metrics package).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


# --- per-query metrics over a full ranking, and bootstrap intervals (the build's reports) ----------------------------


def full_ranking(query_emb: np.ndarray, gallery_emb: np.ndarray, gallery_scales: np.ndarray | None = None,
                 chunk: int = 256) -> np.ndarray:
    """(Q, N) gallery indices per query, best first (stable: ties go to the lower index)."""
    g = np.asarray(gallery_emb, np.float32)
    out = []
    for i in range(0, len(query_emb), chunk):
        s = np.asarray(query_emb[i:i + chunk], np.float32) @ g.T
        if gallery_scales is not None:
            s *= gallery_scales[None, :]
        out.append(np.argsort(-s, axis=1, kind="stable"))
    return np.concatenate(out) if out else np.zeros((0, len(g)), np.int64)


def per_query(ranking: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query R@1, R@5, R@10, P@10, AP@10 and full AP (mAP over the whole ranking) with hit = same label."""
    gl = np.asarray(gallery_labels)
    rel = gl[ranking] == np.asarray(query_labels)[:, None]
    total = rel.sum(axis=1)
    out = {f"recall@{k}": rel[:, :k].any(axis=1).astype(np.float64) for k in (1, 5, 10)}
    out["precision@10"] = rel[:, :10].mean(axis=1)
    out["map@10"] = average_precision_at_k(rel, 10, total)
    ranks = np.arange(1, rel.shape[1] + 1)
    prec = np.cumsum(rel, axis=1) / ranks
    out["map"] = np.where(total > 0, (prec * rel).sum(axis=1) / np.maximum(total, 1), 0.0)
    return out


def means(pq: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(v.mean()) if len(v) else 0.0 for k, v in pq.items()}


def bootstrap_ci(values: np.ndarray, resamples: int = 2000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of per-query ``values`` (queries resampled with replacement)."""
    x = np.asarray(values, np.float64)
    if len(x) < 2:
        return (float(x.mean()), float(x.mean())) if len(x) else (0.0, 0.0)
    idx = np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))
    est = x[idx].mean(axis=1)
    a = (1 - confidence) / 2
    lo, hi = np.quantile(est, [a, 1 - a])
    return float(lo), float(hi)


def paired_diff_ci(a: np.ndarray, b: np.ndarray, **kw: Any) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same queries, with its bootstrap interval: (diff, lo, hi)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    lo, hi = bootstrap_ci(d, **kw)
    return float(d.mean()), lo, hi


def paired_ratio_ci(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0,
                    confidence: float = 0.95) -> tuple[float, float, float]:
    """mean(a) / mean(b) over the same queries, with a paired bootstrap interval: (ratio, lo, hi)."""
    xa, xb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if xb.mean() == 0:
        return float("nan"), float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(xa), (resamples, len(xa)))
    den = xb[idx].mean(axis=1)
    est = xa[idx].mean(axis=1) / np.where(den > 0, den, np.nan)
    alpha = (1 - confidence) / 2
    lo, hi = np.nanquantile(est, [alpha, 1 - alpha])
    return float(xa.mean() / xb.mean()), float(lo), float(hi)
