"""Fixtures shared by the SDK tests."""

from __future__ import annotations

import numpy as np
import pytest

#: items in the cycle data set
CYCLE_ITEMS = 10


@pytest.fixture(scope="session")
def cycle_data():
    """(data, leave-last-out split) of 30 users walking a cycle of 10 items: each next item is fully predictable."""
    import torch
    from edgecart.data.sequences import SequenceData, leave_last_out

    torch.set_num_threads(1)
    n = CYCLE_ITEMS
    rng = np.random.default_rng(0)
    seqs = tuple((np.arange(s, s + int(k)) % n + 1).astype(np.int64)
                 for s, k in zip(rng.integers(0, n, 30), rng.integers(5, 12, 30), strict=True))
    data = SequenceData("cycle", np.arange(1, n + 1), np.arange(30), seqs)
    return data, leave_last_out(data)
