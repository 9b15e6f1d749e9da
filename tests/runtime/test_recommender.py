"""Recommender round trip on a tiny bundle: a SASRec student trained on a deterministic item cycle, exported to
every format, then queried with the shop's own ids on every installed backend."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

BACKENDS = ("executorch", "onnxruntime", "litert")
NUM_ITEMS = 12
SHOP_IDS = np.arange(1001, 1001 + NUM_ITEMS, dtype=np.int64)  # index i <-> shop id 1000 + i


def _cycle_data():
    from edgecart.data.sequences import SequenceData

    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(60):
        start = int(rng.integers(0, NUM_ITEMS))
        seqs.append((np.arange(start, start + 14) % NUM_ITEMS + 1).astype(np.int64))
    return SequenceData("cycle", SHOP_IDS, np.arange(60), tuple(seqs))


@pytest.fixture(scope="module")
def rec_bundle(tmp_path_factory):
    import torch
    from edgecart.data.sequences import leave_last_out
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.baselines import Popularity
    from edgecart.recs.bundle import write_bundle
    from edgecart.recs.config import FAST, TrainConfig
    from edgecart.recs.train import train

    torch.manual_seed(0)
    data = _cycle_data()
    split = leave_last_out(data)
    model = SASRec(SASRecConfig(NUM_ITEMS, max_len=8, dim=16, heads=1, layers=1, dropout=0.0))
    train(model, split, TrainConfig(epochs=30, batch_size=32, lr=1e-2))
    cfg = dataclasses.replace(FAST, max_len=8, int8=False, gate_users=20)
    out = tmp_path_factory.mktemp("recs") / "cycle"
    pop = Popularity(split.train, NUM_ITEMS).counts
    path, rows, _ = write_bundle(model, data, split, cfg, out, popularity=pop, quality={}, name="cycle")
    return path, rows


def _rec(path, backend):
    from edgecart.runtime import available_backends
    from edgecart.runtime.recommender import Recommender

    if backend not in available_backends():
        pytest.skip(f"{backend} not installed")
    return Recommender(path, backend=backend)


def test_every_format_was_evaluated_through_the_runtime(rec_bundle):
    _, rows = rec_bundle
    assert {r.format for r in rows} == {"executorch", "onnx", "tflite"}
    for r in rows:
        assert r.recall > 0.9, r  # the cycle is learnable: the next item is always index + 1
        assert r.cosine is not None and r.cosine > 0.9999


@pytest.mark.parametrize("backend", BACKENDS)
def test_recommend_maps_shop_ids_and_predicts_the_cycle(rec_bundle, backend):
    rec = _rec(rec_bundle[0], backend)
    result = rec.recommend([1003, 1004, 1005], k=3)
    assert result.source == "model" and result.used == 3 and result.unknown == ()
    assert result.items[0] == 1006
    assert all(isinstance(i, int) for i in result.items)
    assert list(result.scores) == sorted(result.scores, reverse=True)
    assert not set(result.items) & {1003, 1004, 1005}


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_ids_are_ignored_and_reported(rec_bundle, backend):
    rec = _rec(rec_bundle[0], backend)
    result = rec.recommend([7, "1009", 999999, "sku-x"], k=2)
    assert result.unknown == (7, 999999, "sku-x")
    assert result.source == "model" and result.used == 1
    assert result.items[0] == 1010


def test_empty_or_all_unknown_history_falls_back_to_popularity(rec_bundle):
    from edgecart.runtime.recommender import Recommender

    rec = Recommender(rec_bundle[0])
    pop = rec.popularity[1:]
    expected = tuple(SHOP_IDS[np.lexsort((np.arange(NUM_ITEMS), -pop))][:4].tolist())
    for history in ([], [5, 6]):
        result = rec.recommend(history, k=4)
        assert result.source == "popularity" and result.artifact is None
        assert result.items == expected
        assert result.unknown == tuple(history)


def test_exclude_seen_and_k(rec_bundle):
    from edgecart.runtime.recommender import Recommender

    rec = Recommender(rec_bundle[0], backend="onnxruntime")
    history = list(SHOP_IDS[:5])
    everything = rec.recommend(history, k=100, exclude_seen=False)
    assert len(everything) == NUM_ITEMS and set(everything.items) == set(SHOP_IDS.tolist())
    unseen = rec.recommend(history, k=100)
    assert len(unseen) == NUM_ITEMS - 5 and not set(unseen.items) & set(history)
    assert rec.recommend(history, k=1).items == unseen.items[:1]
    long = rec.recommend(list(SHOP_IDS) * 3, k=3, exclude_seen=False)
    assert long.used == rec.max_len
    with pytest.raises(ValueError, match="k must be"):
        rec.recommend(history, k=0)


def test_similar_items_use_the_int8_table(rec_bundle):
    from edgecart.runtime.recommender import Recommender

    rec = Recommender(rec_bundle[0], backend="onnxruntime")
    m = rec.bundle.manifest
    emb = m.catalog["item_embeddings"]
    assert emb["int8_bytes"] < emb["fp32_bytes"] and emb["saved_bytes"] > 0
    sim = rec.similar(1001, k=5)
    assert len(sim) == 5 and 1001 not in sim.items and all(-1.0 <= s <= 1.0 + 1e-6 for s in sim.scores)
    assert rec.similar(424242).unknown == (424242,)


def test_manifest_describes_padding_and_the_item_table(rec_bundle):
    from edgecart.runtime import SequencePreprocessing, open_bundle

    m = open_bundle(rec_bundle[0]).manifest
    assert m.task == "recommendations"
    assert m.preprocessing == SequencePreprocessing(8, 0, "left")
    # the model takes the history's item-table rows and has no item table of its own
    assert m.inputs[0].dtype == "float32" and m.inputs[0].shape == (1, 8, 16)
    # the model outputs the user vector; the item table (int8 rows + scales) is stored once, in the catalog
    assert m.outputs[0].name == "user_vector" and m.outputs[0].shape == (1, 16)
    assert m.catalog["scoring"] == "user_vector"
    emb = m.catalog["item_embeddings"]
    assert (emb["rows"], emb["dim"]) == (NUM_ITEMS + 1, 16)
    assert all("test" in a.quality for a in m.artifacts)


def test_refuses_a_bundle_of_another_task(tiny_bundle):
    from edgecart.runtime.errors import BundleError
    from edgecart.runtime.recommender import Recommender

    with pytest.raises(BundleError, match="recommendations"):
        Recommender(tiny_bundle)


def test_odd_ids_are_unknown_or_typed_errors(rec_bundle):
    from edgecart.runtime.errors import InputSpecError
    from edgecart.runtime.recommender import Recommender

    rec = Recommender(rec_bundle[0], backend="onnxruntime")
    nan = float("nan")
    out = rec.recommend([-1, 2**70, "1003", " 1004 ", nan, None, 1005.0, np.int64(1006), "sku"], k=2)
    assert out.used == 4 and out.items[0] == 1007  # 1003..1006 known (str, padded str, float, numpy int)
    assert out.unknown[:2] == (-1, 2**70) and out.unknown[3:] == (None, "sku") and out.unknown[2] != out.unknown[2]
    for bad in ([[1003]], [{"id": 1}]):
        with pytest.raises(InputSpecError, match="cannot be an item id"):
            rec.recommend(bad)
    assert rec.recommend([True, 1003], k=1).unknown == (True,)  # a flag is never item 1
    with pytest.raises(InputSpecError, match="not str"):
        rec.recommend("1003")
    with pytest.raises(InputSpecError, match="sequence of item ids"):
        rec.recommend(1003)
    for k in (0, 1.5, True, "3"):
        with pytest.raises(InputSpecError, match="k must be"):
            rec.recommend([1003], k=k)


def test_runtime_scores_the_user_vector_with_the_int8_table(rec_bundle):
    from edgecart.runtime.recommender import Recommender

    rec = Recommender(rec_bundle[0], backend="onnxruntime")
    x = rec._pad([3, 4, 5])  # the model input (the name the ARM runner uses)
    assert x.shape == (1, 8, 16) and x.dtype == np.float32 and not x[0, :5].any()  # zero rows = padding
    vec = rec.session.run(x)["user_vector"][0]
    scores = rec.table.scores(vec)[0]
    assert scores.shape == (NUM_ITEMS + 1,)
    # the int8 rows with per-row scales, dequantised: score = vector · q[i] * scale[i]
    expect = (rec.table.q.astype(np.float64) @ vec.astype(np.float64)) * rec.table.scales
    np.testing.assert_allclose(scores[1:], expect[1:], rtol=1e-4, atol=1e-4)  # row 0 (padding) reads as zero
    assert scores[0] == 0.0
    assert int(np.argmax(scores[1:])) + 1 == 6
