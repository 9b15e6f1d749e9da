"""Exact top-k over score rows, best first, ties to the lower index — fast for one query over a million items.

For each row the k-th largest score ``t`` is found with an in-place partition of a reused (per-thread) buffer
(values only, no index array), every item scoring ``>= t`` is a candidate (so items tied with the k-th all take
part), and the few candidates are sorted by (score descending, index ascending). NaN scores rank below every number,
as if they were ``-inf``; ``-inf`` and ``+inf`` are ordinary values.

    from edgecart.runtime.topk import top_k
    idx, vals = top_k(scores, 10)        # scores (Q, N) or (N,) -> (Q, k) indices and their scores
"""

from __future__ import annotations

import threading

import numpy as np

from .errors import InputSpecError

_local = threading.local()


def _buffer(n: int, dtype: np.dtype) -> np.ndarray:
    """A per-thread scratch buffer of at least ``n`` items of ``dtype`` (grown, never shrunk)."""
    key = np.dtype(dtype).str
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    buf = bufs.get(key)
    if buf is None or buf.size < n:
        buf = bufs[key] = np.empty(max(n, 1024), dtype)
    return buf[:n]


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputSpecError(f"k must be an integer, got {type(k).__name__}")
    if k < 1:
        raise InputSpecError(f"k must be >= 1, got {k}")
    return int(k)


def _sorted_all(row: np.ndarray, keys: np.ndarray | None, k: int) -> np.ndarray:
    """Reference path: full sort by (NaN last, score descending, key ascending)."""
    keys = np.arange(row.size) if keys is None else keys
    if row.dtype.kind != "f":
        return np.lexsort((keys, -row.astype(np.float64)))[:k]
    nan = np.isnan(row)
    return np.lexsort((keys, -np.where(nan, -np.inf, row), nan))[:k]


def top_k_row(row: np.ndarray, k: int, keys: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``k`` best entries of a 1-D score vector, best first; NaN ranks last; ties go to the lower
    position, or to the lower ``keys[position]`` when ``keys`` is given (catalog indices of a subset, say)."""
    k = _check_k(k)
    row = np.asarray(row)
    if row.ndim != 1:
        raise InputSpecError(f"top_k_row takes a 1-D score vector, got shape {row.shape}")
    n = row.size
    if k >= n:
        return _sorted_all(row, keys, n)
    buf = _buffer(n, row.dtype)
    np.copyto(buf, row)
    buf.partition(n - k)
    t = buf[n - k]  # the k-th largest (NaN sorts above every number here)
    if row.dtype.kind == "f" and np.isnan(t):
        return _sorted_all(row, keys, k)
    cand = np.flatnonzero(row >= t)
    if cand.size < k:  # NaNs took some of the top places in the partition
        return _sorted_all(row, keys, k)
    tie = cand if keys is None else keys[cand]
    return cand[np.lexsort((tie, -row[cand]))[:k]]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k per row of a (Q, N) score matrix (or one (N,) row), best first; ties go to the lower index.

    Returns ``(indices, scores)``, each (Q, min(k, N)); indices are int64.
    """
    k = _check_k(k)
    s = np.asarray(scores)
    if s.ndim == 1:
        s = s[None]
    if s.ndim != 2:
        raise InputSpecError(f"scores must be (Q, N) or (N,), got shape {s.shape}")
    rows, n = s.shape
    kk = min(k, n)
    idx = np.empty((rows, kk), np.int64)
    for r in range(rows):
        idx[r] = top_k_row(s[r], kk)
    return idx, np.take_along_axis(s, idx, axis=1)


def merge_top_k(indices: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of candidate (catalog index, score) pairs, e.g. gathered from several blocks or lists; ties go
    to the lower catalog index. Returns (indices, scores), best first."""
    indices, scores = np.asarray(indices), np.asarray(scores)
    if indices.size == 0:
        return indices.astype(np.int64), scores
    pos = top_k_row(scores, min(_check_k(k), scores.size), keys=indices)
    return indices[pos].astype(np.int64, copy=False), scores[pos]


__all__ = ["merge_top_k", "top_k", "top_k_row"]
