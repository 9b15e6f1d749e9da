"""Quality of a sentence embedding for the two jobs, per query (so that intervals and paired comparisons follow):

- retrieval: each query's top 10 in a gallery of past messages; Recall@10 = a same-class text among them (the usual
  retrieval R@K, as in image search), mAP@10 as in ``edgecart.vision.metrics``;
- routing: a linear probe's (or the bundle's head's) predicted department / class is right.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from edgecart.runtime.session import Session
from edgecart.vision.metrics import average_precision_at_k, hits, rank


def retrieval_per_query(query: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray,
                        scales: np.ndarray | None = None, k: int = 10) -> dict[str, np.ndarray]:
    """Per-query hit@1, hit@10 (Recall@1/@10) and AP@10."""
    idx = rank(query, gallery, scales, k=k)
    rel = hits(np.asarray(gallery_labels)[idx], query_labels)
    totals = (np.asarray(gallery_labels)[None, :] == np.asarray(query_labels)[:, None]).sum(axis=1)
    return {"recall@1": rel[:, :1].any(axis=1).astype(np.float64),
            "recall@10": rel[:, :k].any(axis=1).astype(np.float64),
            "map@10": average_precision_at_k(rel, k, totals)}


def mean_ci(values: np.ndarray, samples: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Mean with a percentile bootstrap interval."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    idx = np.random.default_rng(seed).integers(0, v.size, size=(samples, v.size))
    m = v[idx].mean(axis=1)
    lo, hi = np.percentile(m, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi), "n": int(v.size)}


def session_embed(session: Session, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, D) embeddings from a runtime session, one [1, L] message at a time (as on a device)."""
    names = [s.name for s in session.inputs]
    out = session.outputs[0].name
    rows = [session.run({names[0]: ids[i:i + 1], names[1]: mask[i:i + 1]})[out].reshape(-1) for i in range(len(ids))]
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, session.outputs[0].shape[-1]), np.float32)


def score_embeddings(emb: np.ndarray, labels: Mapping[str, np.ndarray], gallery: np.ndarray,
                     gallery_labels: np.ndarray, gallery_scales: np.ndarray | None,
                     heads: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-query retrieval (against the class labels) and routing correctness for every head."""
    per = retrieval_per_query(emb, labels["class"], gallery, gallery_labels, gallery_scales)
    for head, (w, b) in heads.items():
        per[f"{head}_acc"] = (np.argmax(emb @ w + b, axis=1) == labels[head]).astype(np.float64)
    return per


def session_evaluator(ids: np.ndarray, mask: np.ndarray, labels: Mapping[str, np.ndarray], gallery: np.ndarray,
                      gallery_labels: np.ndarray, gallery_scales: np.ndarray | None,
                      heads: Mapping[str, tuple[np.ndarray, np.ndarray]],
                      keep: list[dict[str, np.ndarray]] | None = None) -> Callable[[Session], dict[str, float]]:
    """Session -> mean metrics, for the exporters' quality gate; per-query arrays are appended to ``keep``."""
    def evaluate(session: Session) -> dict[str, float]:
        per = score_embeddings(session_embed(session, ids, mask), labels, gallery, gallery_labels, gallery_scales,
                               heads)
        if keep is not None:
            keep.append(per)
        return {k: float(v.mean()) for k, v in per.items()}

    return evaluate


def summarise(per: Mapping[str, np.ndarray], names: Sequence[str] | None = None) -> dict[str, Any]:
    return {k: mean_ci(v) for k, v in per.items() if names is None or k in names}


__all__ = ["mean_ci", "retrieval_per_query", "score_embeddings", "session_embed", "session_evaluator", "summarise"]
