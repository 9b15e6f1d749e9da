"""The buy-again prior a recommendations bundle may carry: its scores by hand, its checks, the build's choice of it on
validation (on a log where people re-buy, and not on one where they never do), and a bundle whose untrained model
recommends the shopper's own items because the runtime adds the prior."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
from edgecart.runtime.buy_again import BuyAgain, read_buy_again
from edgecart.runtime.errors import BundleError

HIST = [np.array([2, 1, 2, 3])]


def test_log_probs_by_hand():
    lp = BuyAgain(1.0, decay=0.5, smoothing=0.01).log_probs(HIST + [np.array([9, 0, -1, 4])], 5)
    assert lp[0, 0] == -np.inf
    # ages from the latest: 3 -> 1; 2 -> 0.5 + 0.125; 1 -> 0.25; 4 never bought
    want = np.array([0.25, 0.625, 1.0, 0.0]) + 0.01
    np.testing.assert_allclose(np.exp(lp[0, 1:]), want / want.sum(), rtol=1e-12)
    # indices outside the columns (an item added after export, padding, a negative one) are not counted
    want = np.array([0.0, 0.0, 0.0, 1.0]) + 0.01
    np.testing.assert_allclose(np.exp(lp[1, 1:]), want / want.sum(), rtol=1e-12)
    # no decay: bought twice beats bought once
    assert int(np.argmax(BuyAgain(1.0).log_probs(HIST, 5)[0])) == 2


def test_blend_by_hand_and_by_weight():
    model = np.array([[-np.inf, 0.0, 1.0, 2.0, 9.0]])  # the model prefers item 4, which was never bought
    got = BuyAgain(2.0, smoothing=0.01).blend_scores(model, HIST)
    lp_model = model[0, 1:] - np.log(np.exp(model[0, 1:]).sum())
    c = np.array([1.0, 2.0, 1.0, 0.0]) + 0.01
    np.testing.assert_allclose(got[0, 1:], lp_model + 2.0 * np.log(c / c.sum()), rtol=1e-12)
    assert got[0, 0] == -np.inf
    assert np.argsort(-BuyAgain(0.0).blend_scores(model, HIST)[0, 1:]).tolist() == [3, 2, 1, 0]
    assert np.argsort(-BuyAgain(8.0).blend_scores(model, HIST)[0, 1:]).tolist() == [1, 2, 0, 3]
    with pytest.raises(ValueError, match="histories"):
        BuyAgain(1.0).blend_scores(model, HIST * 2)


@pytest.mark.parametrize("kw, match", [
    (dict(weight=-1.0), "weight"), (dict(weight=float("nan")), "weight"), (dict(weight=float("inf")), "weight"),
    (dict(weight=1.0, decay=0.0), "decay"), (dict(weight=1.0, decay=1.5), "decay"),
    (dict(weight=1.0, smoothing=0.0), "smoothing"),
])
def test_bad_settings_are_refused(kw, match):
    with pytest.raises(BundleError, match=match):
        BuyAgain(**kw)


@pytest.mark.parametrize("entry", [{"decay": 1.0}, {"weight": "heavy"}, {"weight": True}, ["weight", 1.0],
                                   {"weight": 1.0, "decay": -1}])
def test_a_malformed_manifest_entry_is_refused(entry):
    bundle = SimpleNamespace(manifest=SimpleNamespace(name="b", catalog={"buy_again": entry}))
    with pytest.raises(BundleError, match="buy_again"):
        read_buy_again(bundle)


def test_no_entry_is_no_prior():
    assert read_buy_again(SimpleNamespace(manifest=SimpleNamespace(name="b", catalog={}))) is None


def _rebuy_data(n_users: int = 60, n_items: int = 30, length: int = 20):
    """Each shopper re-buys their own three items, in random order; nothing else."""
    from edgecart.data.sequences import SequenceData, leave_last_out
    from edgecart.recs.baselines import Popularity

    rng = np.random.default_rng(0)
    seqs = tuple(rng.choice(rng.choice(np.arange(1, n_items + 1), 3, replace=False), length).astype(np.int64)
                 for _ in range(n_users))
    data = SequenceData("rebuy", np.arange(5001, 5001 + n_items, dtype=np.int64), np.arange(n_users), seqs)
    split = leave_last_out(data)
    return data, split, Popularity(split.train, n_items).counts


def test_the_build_chooses_the_prior_only_where_people_rebuy():
    from edgecart.recs.config import FAST
    from edgecart.recs.pipeline import _choose_buy_again

    from ..tiny_recs import cycle_data

    rng = np.random.default_rng(1)
    data, split, _ = _rebuy_data()
    noise = rng.normal(size=(split.num_users, data.num_items + 1))
    again, v = _choose_buy_again(noise, FAST, split)
    assert again is not None and again.weight > 0 and v > 0.5
    data, split, _ = cycle_data()  # a walk around a cycle never repeats an item
    model = np.zeros((split.num_users, data.num_items + 1))
    model[np.arange(split.num_users), split.valid_target] = 5.0  # a model that knows the answer
    again, v = _choose_buy_again(model, FAST, split)
    assert again is None and v == 1.0
    off = dataclasses.replace(FAST, buy_again_weights=(0.0,))
    assert _choose_buy_again(noise[:split.num_users, :data.num_items + 1], off, split)[0] is None
    with pytest.raises(ValueError, match="buy_again_weights"):
        dataclasses.replace(FAST, buy_again_weights=(-1.0,))
    with pytest.raises(ValueError, match="buy_again_decays"):
        dataclasses.replace(FAST, buy_again_decays=(0.0,))


@pytest.fixture(scope="module")
def rebuy_bundle(tmp_path_factory):
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.bundle import write_bundle
    from edgecart.recs.config import FAST

    data, split, pop = _rebuy_data()
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(data.num_items, max_len=8, dim=8, heads=1, layers=1, dropout=0.0))  # untrained
    cfg = dataclasses.replace(FAST, max_len=8, formats=("onnx",), int8=False, gate_users=20)
    path, rows, _ = write_bundle(model, data, split, cfg, tmp_path_factory.mktemp("again") / "b", popularity=pop,
                                 quality={}, name="rebuy", buy_again=BuyAgain(8.0))
    return path, rows, data, split


def test_the_runtime_adds_the_bundle_prior(rebuy_bundle):
    from edgecart.runtime import open_bundle
    from edgecart.runtime.recommender import Recommender

    path, rows, data, split = rebuy_bundle
    entry = open_bundle(path).manifest.catalog["buy_again"]
    assert entry["weight"] == 8.0 and entry["decay"] == 1.0
    rec = Recommender(path, backend="onnxruntime")
    ids = data.item_ids.tolist()
    history = [ids[i - 1] for i in split.test_history[0]]
    counts = {i: history.count(i) for i in set(history)}
    got = rec.recommend(history, k=3)  # seen items are kept by default: re-buying is the point
    assert set(got.items) == set(counts) and got.items[0] == max(counts, key=counts.get)
    assert not set(rec.recommend(history, k=3, exclude_seen=True).items) & set(counts)
    # the quality measured at export went through the prior: every target is one of the shopper's three items
    assert all(r.recall == 1.0 for r in rows)


def test_without_the_prior_the_untrained_model_misses(rebuy_bundle):
    from edgecart.runtime.recommender import Recommender

    path, _, data, split = rebuy_bundle
    rec = Recommender(path, backend="onnxruntime")
    object.__setattr__(rec, "buy_again", None)
    ids = data.item_ids.tolist()
    hits = sum(ids[split.test_target[u] - 1] in rec.recommend([ids[i - 1] for i in split.test_history[u]], k=3,
                                                               exclude_seen=False).items
               for u in range(split.num_users))
    assert hits < split.num_users // 2


def test_the_recommend_command_keeps_seen_items_for_a_prior_bundle(rebuy_bundle, capsys):
    import argparse

    from edgecart.cli import recommend_cmd

    path, _, data, split = rebuy_bundle
    parser = argparse.ArgumentParser()
    recommend_cmd.add_parser(parser.add_subparsers())
    history = [int(data.item_ids[i - 1]) for i in split.test_history[0]]
    base = ["recommend", "--bundle", str(path), "--history", ",".join(map(str, history)), "--k", "3", "--json",
            "--backend", "onnxruntime"]
    for flag, overlap in (([], True), (["--exclude-seen"], False), (["--include-seen"], True)):
        args = parser.parse_args(base + flag)
        assert args.func(args) == 0
        assert bool(set(json.loads(capsys.readouterr().out)["items"]) & set(history)) is overlap


def test_the_pipeline_ships_the_prior_it_chose(tmp_path):
    import torch
    from edgecart.recs.config import FAST
    from edgecart.recs.pipeline import BUY_AGAIN, SHIPPED_AGAIN, STUDENT_BLEND, run_dataset
    from edgecart.runtime import open_bundle

    data, _, _ = _rebuy_data()
    torch.manual_seed(0)
    cfg = dataclasses.replace(FAST, formats=("onnx",), int8=False, gate_users=20)
    res = run_dataset(data, cfg, tmp_path / "bundle", cache=None, progress=None)
    assert res.buy_again is not None and res.buy_again[0] > 0
    entry = open_bundle(res.bundle).manifest.catalog["buy_again"]
    assert (entry["weight"], entry["decay"]) == res.buy_again
    # chosen on validation: the prior beats the shipped scorer without it there (weight 0 was a candidate)
    alone = res.model(STUDENT_BLEND if res.blend is not None else res.exported)
    assert res.model(SHIPPED_AGAIN).valid_ndcg > alone.valid_ndcg
    assert res.model(BUY_AGAIN).ndcg > res.model("popularity").ndcg
    assert all(a.recall == 1.0 for a in res.artifacts)  # measured through the runtime, prior included
    # the shipped row is the runtime's scorer: student, item-to-item blend, then the prior (fp32 ONNX: same ranks)
    fp32 = next(a for a in res.artifacts if a.precision == "fp32")
    assert res.model(SHIPPED_AGAIN).ndcg == pytest.approx(fp32.ndcg, abs=1e-6)
