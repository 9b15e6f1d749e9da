"""Full-ranking next-item metrics: Recall@K and NDCG@K with one held-out target per user.

Protocol (documented in the manifest of every recommendations bundle):
* every item of the catalogue is ranked (no sampled negatives); the padding index 0 never counts;
* items the user has already interacted with are NOT excluded (as in SASRec's reference full-ranking code); on
  Instacart a repeat purchase is a legitimate next item, and the same rule is kept on MovieLens for one protocol;
* ties are split evenly: the target's rank is the number of items scored higher plus half the number of other items
  scored equal (the expected rank under random tie-breaking), so coarse (quantised) scores gain nothing from ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PROTOCOL = ("leave-last-out (last item = test, second-to-last = validation); full ranking over all items, padding "
            "excluded; seen items not excluded; ties split evenly (expected rank)")


def target_ranks(scores: np.ndarray, targets: np.ndarray,
                 exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """0-based rank of each user's target among all items. ``scores``: [U, num_items + 1] (column 0 = padding).

    ``exclude``: optional per-user indices scored out before ranking (a target among them ranks last).
    """
    s = np.array(scores, dtype=np.float64, copy=True)
    targets = np.asarray(targets, np.int64)
    if s.ndim != 2 or s.shape[0] != targets.shape[0]:
        raise ValueError(f"scores {s.shape} and targets {targets.shape} disagree on the number of users")
    if targets.size and (targets.min() < 1 or targets.max() >= s.shape[1]):
        raise ValueError("targets must be item indices in 1..num_items")
    # NaN is no score: a NaN item never ranks above the target, and a target scored NaN ranks last (so a model that
    # outputs NaN scores 0, not — as NaN comparisons would have it — a perfect rank 0)
    nan_target = np.isnan(s[np.arange(len(targets)), targets]) if targets.size else np.zeros(0, bool)
    s[np.isnan(s)] = -np.inf
    s[:, 0] = -np.inf
    if exclude is not None:
        for u, seen in enumerate(exclude):
            s[u, np.asarray(seen, np.int64)] = -np.inf
    t = s[np.arange(len(targets)), targets][:, None]
    greater = (s > t).sum(axis=1)
    ties = (s == t).sum(axis=1) - 1
    ranks = greater + ties / 2.0
    ranks[nan_target] = s.shape[1] - 1  # below every real item
    return ranks


def rank_metrics(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """Recall@k (= hit rate with one target) and NDCG@k from 0-based ranks."""
    if k < 1:
        raise ValueError("k must be >= 1")
    r = np.asarray(ranks, np.float64)
    if r.size == 0:
        raise ValueError("no users to evaluate")
    if np.isnan(r).any():
        raise ValueError("ranks hold NaN; compute them with target_ranks (which ranks NaN scores last)")
    return {f"recall@{k}": float((r < k).mean()), f"ndcg@{k}": float(user_ndcg(r, k).mean()), "users": int(r.size)}


def evaluate_scores(scores: np.ndarray, targets: np.ndarray, k: int = 10,
                    exclude: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    return rank_metrics(target_ranks(scores, targets, exclude), k)


def user_ndcg(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-user NDCG@k (0 outside the top k) from 0-based ranks — the terms whose mean is NDCG@k."""
    r = np.asarray(ranks, np.float64)
    return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, samples: int = 2000, level: float = 0.95,
                     seed: int = 0) -> dict[str, float | None]:
    """Paired bootstrap over users of ``mean(a) - mean(b)`` and ``mean(a) / mean(b)`` (same users, resampled
    together). Returns the observed difference and ratio with their percentile intervals at ``level``.

    The ratio is undefined when ``mean(b)`` is 0 (a baseline that never scores, as on a tiny log): then ``ratio``,
    ``ratio_lo`` and ``ratio_hi`` are None (plain JSON, no NaN; :func:`format_ratio` writes "undefined: baseline is
    0"). Resamples whose ``b`` mean is 0 are left out of the ratio's interval."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired_bootstrap needs two equal-length 1-d arrays, got {a.shape} and {b.shape}")
    if samples < 1 or not 0 < level < 1:
        raise ValueError("samples >= 1 and 0 < level < 1")
    idx = np.random.default_rng(seed).integers(0, a.size, size=(samples, a.size))
    ma, mb = a[idx].mean(axis=1), b[idx].mean(axis=1)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    mean_b = float(b.mean())
    defined = mb > 0
    ratio: float | None = None
    ratio_lo: float | None = None
    ratio_hi: float | None = None
    if mean_b > 0:
        ratio = float(a.mean() / mean_b)
        if defined.any():
            r = ma[defined] / mb[defined]
            ratio_lo, ratio_hi = float(np.percentile(r, lo)), float(np.percentile(r, hi))
    return {"diff": float(a.mean() - mean_b), "diff_lo": float(np.percentile(ma - mb, lo)),
            "diff_hi": float(np.percentile(ma - mb, hi)),
            "ratio": ratio, "ratio_lo": ratio_lo, "ratio_hi": ratio_hi,
            "level": level, "samples": samples, "users": int(a.size)}


#: how a report writes a ratio that :func:`paired_bootstrap` could not define
UNDEFINED_RATIO = "undefined: baseline is 0"


def format_ratio(c: dict[str, float | None]) -> str:
    """A :func:`paired_bootstrap` ratio and its interval as text (``0.950 [0.900, 1.000]``), or
    ``undefined: baseline is 0`` when the baseline's mean is 0."""
    if c["ratio"] is None:
        return UNDEFINED_RATIO
    if c["ratio_lo"] is None or c["ratio_hi"] is None:
        return f"{c['ratio']:.3f} [interval undefined]"
    return f"{c['ratio']:.3f} [{c['ratio_lo']:.3f}, {c['ratio_hi']:.3f}]"
