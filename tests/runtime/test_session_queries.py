"""Query embeddings of the wrong shape given to the search classes: the message states the shape that was passed and
the shapes accepted (a (2, 128) batch was reported as "queries of shape (1, 256)")."""

from __future__ import annotations

import numpy as np
import pytest
from edgecart.runtime import InputSpecError
from edgecart.runtime.search import Catalog, ImageSearch, quantize_rows

DIM, N = 128, 20


@pytest.fixture(scope="module")
def catalog():
    rng = np.random.default_rng(0)
    rows, scales = quantize_rows(rng.standard_normal((N, DIM)).astype(np.float32))
    return Catalog(tuple(f"item-{i}" for i in range(N)), np.zeros(N, np.int64), ("all",), rows, scales, "cosine",
                   "student", "int8")


@pytest.fixture(scope="module")
def search(catalog):
    """An ImageSearch over ``catalog`` without a model: search_embedding needs only the catalog."""
    s = ImageSearch.__new__(ImageSearch)
    s.catalog, s.approximate, s.nprobe = catalog, False, None
    return s


@pytest.mark.parametrize("shape", [(2, DIM), (DIM, 2), (2 * DIM,), (DIM - 1,), (1, 1, DIM + 1), (0,)])
def test_search_embedding_names_the_shape_passed_and_the_one_accepted(search, shape):
    with pytest.raises(InputSpecError) as err:
        search.search_embedding(np.ones(shape, np.float32))
    msg = str(err.value)
    assert f"shape {shape}" in msg and f"one embedding of shape ({DIM},)" in msg
    assert f"(1, {2 * DIM})" not in msg and "(1, 256)" not in msg


def test_a_batch_is_pointed_at_the_catalogs_batch_search(search):
    with pytest.raises(InputSpecError, match=r"catalog\.top_k"):
        search.search_embedding(np.ones((2, DIM), np.float32))


@pytest.mark.parametrize("shape", [(DIM,), (1, DIM)])
def test_one_embedding_is_searched(search, catalog, shape):
    e = catalog.embeddings[3].astype(np.float32)
    res = search.search_embedding(e.reshape(shape), k=2)
    assert res.ids[0] == "item-3" and len(res) == 2


@pytest.mark.parametrize("shape", [(2 * DIM,), (2, DIM + 1), (2, 2, DIM)])
def test_catalog_queries_of_the_wrong_shape_say_what_was_passed(catalog, shape):
    with pytest.raises(InputSpecError) as err:
        catalog.top_k(np.ones(shape, np.float32), 2)
    msg = str(err.value)
    assert f"shape {shape}" in msg and f"({DIM},)" in msg and f"(Q, {DIM})" in msg
    idx, _ = catalog.top_k(np.ones((2, DIM), np.float32), 2)  # a batch is what top_k takes
    assert idx.shape == (2, 2)
