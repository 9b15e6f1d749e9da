"""The item-to-item table a recommendations bundle may carry: its blend with the model's scores (by hand), its
checks, its construction from the co-occurrence baseline, and a bundle whose untrained model only recommends the
next item because the runtime blends the table in."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
from edgecart.runtime.errors import BundleError
from edgecart.runtime.item_to_item import ItemToItem

# items 1..3: 1 is followed by 2 (3 times) and 3 (once); 2 by 3 (twice); 3 by nothing
INDPTR = np.array([0, 0, 2, 3, 3], np.int64)
ITEMS = np.array([2, 3, 3], np.int32)
WEIGHTS = np.array([3.0, 1.0, 2.0], np.float32)


def _table(blend: float, **kw) -> ItemToItem:
    return ItemToItem(INDPTR, ITEMS, WEIGHTS, blend, **kw)


def test_blend_by_hand():
    model = np.array([[-np.inf, 0.0, np.log(2.0), 0.0]])  # softmax over items 1..3: 1/4, 1/2, 1/4
    got = _table(0.5, smoothing=0.01).blend_scores(model, [np.array([1])])
    cooc = np.array([0.0, 3.0, 1.0]) + 0.01
    want = np.log(0.5 * np.array([0.25, 0.5, 0.25]) + 0.5 * cooc / cooc.sum())
    assert got[0, 0] == -np.inf
    np.testing.assert_allclose(got[0, 1:], want, rtol=1e-12)


def test_blend_one_is_the_model_and_a_small_blend_follows_the_table():
    model = np.array([[-np.inf, 2.0, 0.0, 1.0]])
    alone = _table(1.0).blend_scores(model, [np.array([1])])
    assert np.argsort(-alone[0, 1:]).tolist() == np.argsort(-model[0, 1:]).tolist()
    mostly_table = _table(0.01).blend_scores(model, [np.array([1])])
    assert int(np.argmax(mostly_table[0])) == 2  # 1 -> 2 is the most frequent pair


def test_recent_items_decay_and_rows_past_the_table_are_empty():
    t = _table(0.5, recent=2, decay=0.5)
    s = t.scores([np.array([1, 2]), np.array([1, 3, 3]), np.array([7, 1])], num_columns=8)
    np.testing.assert_allclose(s[0, :4], [0.0, 0.0, 1.5, 2.0 + 0.5])  # row 2 (age 0) + row 1 * 0.5
    np.testing.assert_allclose(s[1], 0.0)  # item 1 is older than the last two
    np.testing.assert_allclose(s[2, :4], [0.0, 0.0, 3.0, 1.0])  # 7: added after export, no row


@pytest.mark.parametrize("change, match", [
    (dict(indptr=np.array([0, 2, 0, 3, 3])), "indptr"),
    (dict(items=np.array([2, 9, 3], np.int32)), "neighbour indices"),
    (dict(items=np.array([2, 0, 3], np.int32)), "neighbour indices"),
    (dict(weights=np.array([3.0, -1.0, 2.0], np.float32)), "weights"),
    (dict(weights=np.array([3.0, 2.0], np.float32)), "weights"),
    (dict(blend=1.5), "blend"),
    (dict(decay=0.0), "decay"),
])
def test_malformed_tables_are_refused(change, match):
    base = dict(indptr=INDPTR, items=ITEMS, weights=WEIGHTS, blend=0.5)
    with pytest.raises(BundleError, match=match):
        ItemToItem(**{**base, **change})


def test_built_from_the_co_occurrence_baseline():
    from edgecart.recs.baselines import CoOccurrence

    train = (np.array([1, 2, 3, 1, 2]), np.array([1, 2, 4]), np.array([3, 1, 4]))
    co = CoOccurrence(train, 4, window=1, recent=3, decay=0.5)
    full = co.item_to_item(0.3)
    assert (full.blend, full.recent, full.decay) == (0.3, 3, 0.5)
    hist = [np.array([3, 1]), np.array([2])]
    tie = co._pop / (co._pop.max() + 1.0) * 1e-3
    np.testing.assert_allclose(full.scores(hist, 5)[:, 1:], co.scores(hist)[:, 1:] - tie[1:])
    top1 = co.item_to_item(0.3, neighbours=1)
    for i in range(1, 5):
        cols, vals = co.row(i)
        kept = top1.items[top1.indptr[i]:top1.indptr[i + 1]]
        assert len(kept) == min(1, len(cols))
        if len(cols):
            assert kept[0] == cols[np.argmax(vals)]
    with pytest.raises(ValueError, match="neighbours"):
        co.item_to_item(0.3, neighbours=0)


@pytest.fixture(scope="module")
def blended_bundle(tmp_path_factory):
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.baselines import CoOccurrence
    from edgecart.recs.bundle import write_bundle
    from edgecart.recs.config import FAST

    from ..tiny_recs import cycle_data

    data, split, pop = cycle_data()
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(data.num_items, max_len=8, dim=8, heads=1, layers=1, dropout=0.0))  # untrained
    i2i = CoOccurrence(split.train, data.num_items, window=1).item_to_item(0.05, neighbours=3)
    cfg = dataclasses.replace(FAST, max_len=8, formats=("onnx",), int8=False, gate_users=20)
    path, rows, _ = write_bundle(model, data, split, cfg, tmp_path_factory.mktemp("i2i") / "b", popularity=pop,
                                 quality={}, name="cycle-i2i", item_to_item=i2i)
    return path, rows, data


def test_the_runtime_blends_the_bundle_table(blended_bundle):
    from edgecart.runtime import open_bundle
    from edgecart.runtime.recommender import Recommender

    path, rows, data = blended_bundle
    entry = open_bundle(path).manifest.catalog["item_to_item"]
    assert entry["blend"] == 0.05 and entry["neighbours"] > 0
    rec = Recommender(path, backend="onnxruntime")
    assert rec.item_to_item is not None
    ids = data.item_ids.tolist()
    got = rec.recommend(ids[2:5], k=1)  # ... 3, 4, 5 -> 6 on the cycle; the untrained model alone cannot know
    assert got.items == (ids[5],)
    # the quality figures measured at export went through the same blend
    assert all(r.recall > 0.9 for r in rows)


def test_without_the_table_the_untrained_model_misses(blended_bundle):
    from edgecart.runtime.recommender import Recommender

    path, _, data = blended_bundle
    rec = Recommender(path, backend="onnxruntime")
    object.__setattr__(rec, "item_to_item", None)
    ids = data.item_ids.tolist()
    hits = sum(rec.recommend(ids[s:s + 3], k=1).items == (ids[(s + 3) % len(ids)],) for s in range(len(ids)))
    assert hits < len(ids) // 2


def test_a_tampered_table_is_refused(blended_bundle, tmp_path):
    from edgecart.recs.bundle import ITEM_TO_ITEM
    from edgecart.runtime.recommender import Recommender

    path, _, _ = blended_bundle
    copy = tmp_path / "b"
    shutil.copytree(path, copy)
    w = np.load(copy / ITEM_TO_ITEM["weights"])
    np.save(copy / ITEM_TO_ITEM["weights"], w[::-1].copy())
    with pytest.raises(BundleError):
        Recommender(copy, backend="onnxruntime")


def test_catalog_updates_keep_the_table(blended_bundle, tmp_path):
    from edgecart.recs.catalog import update_item_table
    from edgecart.runtime.recommender import Recommender

    path, _, data = blended_bundle
    dim = Recommender(path, backend="onnxruntime").table.dim
    new = update_item_table(path, tmp_path / "v2", add={9999: np.full(dim, 0.1, np.float32)})
    rec = Recommender(new, backend="onnxruntime")
    assert rec.item_to_item is not None and rec.num_items == data.num_items + 1
    ids = data.item_ids.tolist()
    assert rec.recommend(ids[2:5], k=1).items == (ids[5],)
    assert len(rec.recommend([*ids[2:5], 9999], k=3)) == 3  # a new item in the history has no row: ignored there


def test_an_item_added_like_a_known_one_is_its_twin_in_the_table(blended_bundle, tmp_path):
    from edgecart.recs.catalog import update_item_table
    from edgecart.runtime.bundle import open_bundle
    from edgecart.runtime.item_to_item import read_item_to_item
    from edgecart.runtime.recommender import Recommender

    path, _, data = blended_bundle
    ids = data.item_ids.tolist()
    rec = Recommender(path, backend="onnxruntime")
    twin = rec.table.embed(np.array([6]))[0]  # ids[5] is model index 6
    new = update_item_table(path, tmp_path / "v3", add={8888: twin}, like={8888: ids[5]})
    got = Recommender(new, backend="onnxruntime").recommend(ids[2:5], k=2)
    assert set(got.items) == {ids[5], 8888}
    old, grown = read_item_to_item(open_bundle(path)), read_item_to_item(open_bundle(new))
    n = data.num_items + 1  # the new item's index
    assert grown.rows == n + 1
    np.testing.assert_array_equal(grown.items[grown.indptr[n]:grown.indptr[n + 1]],
                                  old.items[old.indptr[6]:old.indptr[7]])
