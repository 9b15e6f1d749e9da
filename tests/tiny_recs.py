"""A tiny recommendations data set for bundle tests: users walk a cycle of items (item i is followed by i + 1)."""

from __future__ import annotations

from typing import Any

import numpy as np


def cycle_data(n_items: int = 12, n_users: int = 40, length: int = 10, first_id: int = 1001) -> tuple[Any, Any, Any]:
    """(SequenceData, its leave-last-out split, training popularity counts)."""
    from edgecart.data.sequences import SequenceData, leave_last_out
    from edgecart.recs.baselines import Popularity

    rng = np.random.default_rng(0)
    seqs = tuple((np.arange(s, s + length) % n_items + 1).astype(np.int64)
                 for s in rng.integers(0, n_items, n_users))
    data = SequenceData("cycle", np.arange(first_id, first_id + n_items, dtype=np.int64), np.arange(n_users), seqs)
    split = leave_last_out(data)
    return data, split, Popularity(split.train, n_items).counts
