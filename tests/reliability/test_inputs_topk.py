"""Property tests (hypothesis) for the runtime's exact top-k: equal to a sorted reference, ties to the lower index;
and the ranking metrics' NaN safety on the vision side."""

from __future__ import annotations

import numpy as np
import pytest
from edgecart.runtime import InputSpecError
from edgecart.runtime.search import top_k
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# few distinct values so that ties are common, plus the extremes and infinities
VALUES = st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0, -0.0, 1e-30, 3.4e38, -3.4e38, np.inf, -np.inf])
FLOATS = st.floats(allow_nan=False, width=32)


def _reference(row: np.ndarray, k: int) -> list[int]:
    """Best first; equal scores in index order (a stable sort of the negated scores)."""
    return sorted(range(len(row)), key=lambda j: (-float(row[j]), j))[:k]


@st.composite
def score_matrices(draw):
    rows = draw(st.integers(1, 4))
    n = draw(st.integers(1, 40))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    elements = draw(st.sampled_from([VALUES, FLOATS]))
    scores = draw(hnp.arrays(dtype, (rows, n), elements=elements))
    k = draw(st.integers(1, n + 3))
    return scores, k


@settings(max_examples=300, deadline=None)
@given(score_matrices())
def test_top_k_equals_a_sorted_reference_with_ties_to_the_lower_index(case):
    scores, k = case
    idx, vals = top_k(scores, k)
    kk = min(k, scores.shape[1])
    assert idx.shape == vals.shape == (scores.shape[0], kk)
    for r in range(scores.shape[0]):
        want = _reference(scores[r], kk)
        assert idx[r].tolist() == want
        assert vals[r].tolist() == scores[r, want].tolist()


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 60), st.integers(1, 70), st.integers(0, 2**32 - 1))
def test_top_k_all_tied_rows_give_the_first_k_indices(n, k, seed):
    value = np.random.default_rng(seed).standard_normal()
    idx, _ = top_k(np.full((2, n), value, np.float32), k)
    assert idx.tolist() == [list(range(min(k, n)))] * 2


@given(st.integers(-5, 0))
def test_top_k_refuses_k_below_one(k):
    with pytest.raises(InputSpecError, match="k must be"):
        top_k(np.zeros((1, 3), np.float32), k)


def test_vision_retrieval_scores_a_nan_model_as_missing_every_query():
    """A query embedding with NaN (or Inf) finds nothing: it must not score hits by the order NaNs happen to sort."""
    from edgecart.vision.metrics import retrieval

    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((40, 8)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    labels = np.arange(40) % 4
    queries = gallery[:12].copy()
    good = retrieval(queries, labels[:12], gallery, labels)
    assert good.recall_at_1 == 1.0
    for fill in (np.nan, np.inf):
        bad = retrieval(np.full_like(queries, fill), labels[:12], gallery, labels)
        assert bad.recall_at_1 == bad.recall_at_10 == bad.map_at_10 == 0.0
    half = queries.copy()
    half[:6, 0] = np.nan
    assert retrieval(half, labels[:12], gallery, labels).recall_at_1 == pytest.approx(0.5)
