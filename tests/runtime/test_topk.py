"""Exact top-k (edgecart.runtime.topk) against a full sort: best first, ties to the lower index, NaN last."""

from __future__ import annotations

import numpy as np
import pytest
from edgecart.runtime import InputSpecError
from edgecart.runtime.topk import merge_top_k, top_k, top_k_row
from hypothesis import given, settings
from hypothesis import strategies as st


def reference(row: np.ndarray, k: int, keys: np.ndarray | None = None) -> np.ndarray:
    """Full stable sort: NaN last, then score descending, then key (default: position) ascending."""
    keys = np.arange(row.size) if keys is None else keys
    order = sorted(range(row.size), key=lambda i: (bool(np.isnan(row[i])),
                                                    0.0 if np.isnan(row[i]) else -float(row[i]), keys[i]))
    return np.asarray(order[:k], np.int64)


# few distinct values so that ties (also at the k-th place) are the rule, not the exception
VALUES = st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0, np.inf, -np.inf, np.nan])
ROWS = st.lists(VALUES, min_size=1, max_size=300).map(lambda v: np.asarray(v, np.float32))


@settings(max_examples=300, deadline=None)
@given(row=ROWS, k=st.integers(1, 310))
def test_top_k_row_matches_a_full_sort(row, k):
    got = top_k_row(row, k)
    np.testing.assert_array_equal(got, reference(row, k))


@settings(max_examples=100, deadline=None)
@given(rows=st.integers(1, 5), n=st.integers(1, 60), k=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_top_k_matrix_matches_per_row_reference(rows, n, k, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(-3, 4, (rows, n)).astype(np.float32)  # integers: many ties
    idx, vals = top_k(scores, k)
    assert idx.shape == vals.shape == (rows, min(k, n)) and idx.dtype == np.int64
    for r in range(rows):
        np.testing.assert_array_equal(idx[r], reference(scores[r], k))
        np.testing.assert_array_equal(vals[r], scores[r, idx[r]])


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 200), k=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_merge_breaks_ties_by_catalog_index_not_position(n, k, seed):
    rng = np.random.default_rng(seed)
    keys = rng.permutation(10 * n)[:n]  # catalog indices of a subset, in no order
    scores = rng.integers(0, 3, n).astype(np.float32)
    got_idx, got_scores = merge_top_k(keys, scores, k)
    want = reference(scores, k, keys)
    np.testing.assert_array_equal(got_idx, keys[want])
    np.testing.assert_array_equal(got_scores, scores[want])


def test_one_million_items_and_int_scores():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(1_000_000).astype(np.float32)
    s[[5, 999_999, 17]] = 9.0  # a three-way tie at the top
    idx, vals = top_k(s, 10)
    assert idx[0, :3].tolist() == [5, 17, 999_999]
    np.testing.assert_array_equal(idx[0], np.lexsort((np.arange(s.size), -s))[:10])
    ints = np.array([3, 1, 3, 2], np.int32)
    assert top_k(ints, 2)[0].tolist() == [[0, 2]]


def test_bad_k_and_shapes_raise_typed_errors():
    for k in (0, -1):
        with pytest.raises(InputSpecError, match="k must be >= 1"):
            top_k(np.zeros(3), k)
    with pytest.raises(InputSpecError, match="integer"):
        top_k(np.zeros(3), 2.0)
    with pytest.raises(InputSpecError, match="shape"):
        top_k(np.zeros((2, 2, 2)), 1)


def test_search_module_keeps_top_k_importable():
    from edgecart.runtime.search import top_k as legacy

    assert legacy is top_k
