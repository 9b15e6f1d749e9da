"""Metrics on hand-made cases, baselines, configs, and the SASRec model's masking."""

from __future__ import annotations

import math

import numpy as np
import pytest
from edgecart.recs.metrics import evaluate_scores, rank_metrics, target_ranks

NEG = -np.inf


def test_ranks_ignore_padding_and_split_ties():
    scores = np.array([[9.0, 1.0, 5.0, 3.0],     # padding column 0 is highest but never counts
                       [0.0, 2.0, 2.0, 2.0],     # target 1 tied with two others -> rank 0 + 2/2 = 1
                       [0.0, 1.0, 3.0, 2.0]])
    ranks = target_ranks(scores, np.array([2, 1, 1]))
    assert ranks.tolist() == [0.0, 1.0, 2.0]


def test_recall_and_ndcg_by_hand():
    m = rank_metrics(np.array([0.0, 1.0, 9.0, 10.0]), k=10)
    assert m["recall@10"] == pytest.approx(3 / 4)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(3) + 1 / math.log2(11)) / 4)
    assert m["users"] == 4
    assert rank_metrics(np.array([2.0]), k=2)["recall@2"] == 0.0


def test_full_ranking_over_all_items():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((5, 101))
    targets = np.array([1, 50, 100, 7, 3])
    ranks = target_ranks(scores, targets)
    for u, t in enumerate(targets):
        assert ranks[u] == (scores[u, 1:] > scores[u, t]).sum()


def test_exclusion_is_optional_and_off_by_default():
    scores = np.array([[0.0, 5.0, 4.0, 3.0]])
    assert target_ranks(scores, np.array([3]))[0] == 2
    assert target_ranks(scores, np.array([3]), exclude=[np.array([1])])[0] == 1
    assert evaluate_scores(scores, np.array([1]), k=1, exclude=[np.array([1])])["recall@1"] == 0.0


def test_metric_input_errors():
    with pytest.raises(ValueError, match="item indices"):
        target_ranks(np.zeros((1, 3)), np.array([0]))
    with pytest.raises(ValueError, match="disagree"):
        target_ranks(np.zeros((2, 3)), np.array([1]))
    with pytest.raises(ValueError, match="k must"):
        rank_metrics(np.array([0.0]), k=0)


def test_popularity_and_cooccurrence_by_hand():
    from edgecart.recs.baselines import CoOccurrence, Popularity

    train = (np.array([1, 2, 3]), np.array([1, 2, 4]), np.array([3, 3]))
    pop = Popularity(train, 4)
    assert pop.counts.tolist() == [0, 2, 2, 3, 1]
    assert pop.scores([np.array([1])])[0, 0] == NEG
    co = CoOccurrence(train, 4, window=1, recent=1)
    cols, vals = co.row(2)
    assert dict(zip(cols.tolist(), vals.tolist(), strict=True)) == {3: 1.0, 4: 1.0}
    s = co.scores([np.array([1])])
    assert np.argmax(s[0][1:]) + 1 == 2  # after item 1 always comes item 2
    none = co.scores([np.array([4])])[0]  # nothing ever followed 4: popularity decides
    assert np.argmax(none[1:]) + 1 == 3


def test_configs_validate_and_round_trip():
    from edgecart.recs.config import FAST, DistillConfig, RecsConfig, TrainConfig

    assert RecsConfig.from_dict(FAST.to_dict()) == FAST
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError):
        DistillConfig(alpha=1.5)
    with pytest.raises(ValueError, match="formats"):
        RecsConfig(formats=("coreml",))
    with pytest.raises(ValueError, match="unknown"):
        RecsConfig.from_dict({"nope": 1})


def test_sasrec_is_causal_and_padding_blind():
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig, num_params, student_config, teacher_config

    torch.manual_seed(0)
    m = SASRec(SASRecConfig(30, max_len=6, dim=8, heads=2, layers=2, dropout=0.0)).eval()
    a = torch.tensor([[0, 0, 3, 4, 5, 6]])
    b = torch.tensor([[0, 0, 3, 4, 9, 9]])
    with torch.no_grad():
        ha, hb = m.encode(a), m.encode(b)
        assert torch.allclose(ha[:, :4], hb[:, :4], atol=1e-6)  # positions before the change are unaffected
        assert not torch.allclose(ha[:, -1], hb[:, -1])
        empty = m(torch.zeros(1, 6, dtype=torch.long))
        assert torch.isfinite(empty).all() and m(a).shape == (1, 31)
    assert num_params(SASRec(student_config(5000))) <= 0.25 * num_params(SASRec(teacher_config(5000)))
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(10, dim=10, heads=3)


def test_teacher_soft_targets_are_top_k_distributions():
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.config import DistillConfig
    from edgecart.recs.train import teacher_soft_targets

    torch.manual_seed(0)
    t = SASRec(SASRecConfig(20, max_len=4, dim=8, heads=1, layers=1, dropout=0.0))
    x = np.array([[0, 1, 2, 3], [4, 5, 6, 7]], np.int64)
    soft = teacher_soft_targets(t, x, DistillConfig(top_k=5))
    assert soft.index.shape == (2, 4, 5) and soft.weight.shape == (2, 4, 5)
    assert (soft.index >= 1).all()  # padding is never a soft positive
    assert np.allclose(soft.weight.sum(-1), 1.0, atol=1e-5)
    assert (np.diff(soft.weight, axis=-1) <= 1e-7).all()  # best first


def test_user_ndcg_matches_the_mean_and_paired_bootstrap_brackets_the_difference():
    from edgecart.recs.metrics import paired_bootstrap, user_ndcg

    ranks = np.array([0.0, 1.0, 9.0, 10.0])
    by_hand = [1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0]  # 1/log2(rank + 2) inside the top 10, else 0
    assert user_ndcg(ranks) == pytest.approx(by_hand)
    assert rank_metrics(ranks)["ndcg@10"] == pytest.approx(sum(by_hand) / 4)
    assert user_ndcg(np.array([2.5]), k=3) == pytest.approx([1 / math.log2(4.5)])  # a split tie keeps its half
    rng = np.random.default_rng(1)
    b = rng.random(400)
    a = b + 0.1 + 0.01 * rng.standard_normal(400)  # a beats b by 0.1 on every user, up to small noise
    c = paired_bootstrap(a, b, samples=500)
    assert c["diff"] == pytest.approx(a.mean() - b.mean())
    assert 0.09 < c["diff_lo"] <= c["diff"] <= c["diff_hi"] < 0.11
    assert c["ratio_lo"] <= c["ratio"] <= c["ratio_hi"] and c["users"] == 400
    same = paired_bootstrap(b, b[::-1].copy(), samples=500)  # unrelated pairing, equal means: interval holds 0
    assert same["diff_lo"] < 0 < same["diff_hi"]
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, b[:3])


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf])
def test_a_model_that_outputs_non_finite_scores_is_not_perfect(fill):
    """NaN comparisons are all False, so a naive rank (items scored higher than the target) is 0 for an all-NaN
    model: recall@10 = 1.0. NaN scores rank last; a constant Inf or -Inf is a tie over every item."""
    users, items = 50, 200
    scores = np.full((users, items + 1), fill)
    targets = np.random.default_rng(0).integers(1, items + 1, users)
    m = evaluate_scores(scores, targets, k=10)
    assert m["recall@10"] < 0.1 and m["ndcg@10"] < 0.1
    if np.isnan(fill):
        assert m["recall@10"] == 0.0
        assert (target_ranks(scores, targets) == items).all()


def test_nan_on_other_items_never_outranks_the_target():
    scores = np.array([[0.0, 1.0, np.nan, np.nan, 0.5]])
    assert target_ranks(scores, np.array([1]))[0] == 0.0  # NaN items do not count as higher
    assert target_ranks(scores, np.array([4]))[0] == 1.0
    assert target_ranks(scores, np.array([2]))[0] == 4.0  # the NaN target ranks last
    with pytest.raises(ValueError, match="NaN"):
        rank_metrics(np.array([0.0, np.nan]))


def test_paired_bootstrap_ratio_is_none_when_the_baseline_is_zero():
    """A baseline that never scores (e.g. popularity on a tiny log) has no ratio: recorded as None, never NaN."""
    import json

    from edgecart.recs.metrics import format_ratio, paired_bootstrap

    a = np.random.default_rng(0).random(30)
    c = paired_bootstrap(a, np.zeros(30), samples=200)
    assert c["ratio"] is None and c["ratio_lo"] is None and c["ratio_hi"] is None
    assert c["diff"] == pytest.approx(a.mean()) and math.isfinite(c["diff_lo"]) and math.isfinite(c["diff_hi"])
    json.dumps(c, allow_nan=False)  # plain JSON: no NaN
    assert format_ratio(c) == "undefined: baseline is 0"
    ok = paired_bootstrap(a, a / 2, samples=200)
    assert format_ratio(ok) == f"{ok['ratio']:.3f} [{ok['ratio_lo']:.3f}, {ok['ratio_hi']:.3f}]"


def test_an_undefined_ratio_passes_the_manifest_checks_and_reads_as_undefined_in_the_summary(tmp_path):
    import json

    from edgecart.recs.pipeline import BUY_AGAIN, DatasetResult, ModelRow, RecsSummary, compare_models, write_summary
    from edgecart.runtime.manifest_checks import _json_safe

    good = np.array([1.0, 0.5, 0.0, 0.0])
    rows = (ModelRow("popularity", None, 0.0, 0.0, 0.0, user_ndcg=np.zeros(4)),
            ModelRow(BUY_AGAIN, None, 0.5, good.mean(), 0.1, user_ndcg=good))
    comp = compare_models(rows, samples=100)
    assert comp[f"{BUY_AGAIN} vs popularity"]["ratio"] is None
    _json_safe({"test_ndcg@10_paired_bootstrap_95": comp}, "quality")  # what the bundle's manifest refused
    res = DatasetResult("tiny", "tiny log", rows, (), None, "student, distilled",
                        {"fp32_bytes": 0, "int8_bytes": 0, "saved_bytes": 0}, 1.0)
    write_summary(RecsSummary((res,), 1.0), tmp_path)
    assert "undefined: baseline is 0" in (tmp_path / "summary.md").read_text()
    doc = json.loads((tmp_path / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert doc["comparisons"]["tiny"][f"{BUY_AGAIN} vs popularity"]["ratio"] is None
