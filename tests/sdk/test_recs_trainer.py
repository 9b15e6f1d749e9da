"""Recommendations training through the shared trainer (edgecart.compress.distill): the masked loss terms it uses
and the loss it actually optimises, checked against the formulas written out by hand."""

from __future__ import annotations

import pytest

N = 10  # items of the cycle_data fixture (conftest.py)


def _batch(seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    s = torch.randn(3, 4, N + 1, generator=g)
    t = torch.randn(3, 4, N + 1, generator=g)
    labels = torch.tensor([[0, 0, 3, 4], [0, 2, 5, 1], [7, 8, 9, 10]])
    return s, t, labels


def test_sequence_label_ce_skips_unlabelled_positions():
    import torch
    from edgecart.compress.losses import SequenceLabelCE, loss_from_dict
    from torch.nn import functional as F  # noqa: N812

    s, _, labels = _batch()
    keep = labels.reshape(-1) != 0
    want = F.cross_entropy(s.reshape(-1, N + 1)[keep], labels.reshape(-1)[keep])
    got = SequenceLabelCE()(s, None, labels)
    torch.testing.assert_close(got, want)
    # changing the scores at a padded position changes nothing
    s2 = s.clone()
    s2[0, 0] += 100.0
    torch.testing.assert_close(SequenceLabelCE()(s2, None, labels), want)
    # a model may return only the labelled positions (row-major): same loss
    torch.testing.assert_close(SequenceLabelCE()(s.reshape(-1, N + 1)[keep], None, labels), want)
    with pytest.raises(ValueError, match="labelled positions"):
        SequenceLabelCE()(s.reshape(-1, N + 1)[:5], None, labels)
    assert loss_from_dict({"name": "sequence_label", "ignore_index": 0}) == SequenceLabelCE()
    with pytest.raises(ValueError, match="labels"):
        SequenceLabelCE()(s, None, None)


def test_masked_ranking_kd_matches_the_formula_and_the_cached_form():
    import torch
    from edgecart.compress.losses import MaskedRankingKD
    from torch.nn import functional as F  # noqa: N812

    s, t, labels = _batch(1)
    term = MaskedRankingKD(top_k=3, temperature=2.0)
    keep = labels.reshape(-1) != 0
    sf, tf = s.reshape(-1, N + 1)[keep], t.reshape(-1, N + 1)[keep].clone()
    tf[:, 0] = -torch.inf  # padding is never a soft positive
    top, idx = torch.topk(tf, 3, dim=-1)
    w = torch.softmax(top / 2.0, -1)
    want = -(F.log_softmax(sf / 2.0, -1).gather(1, idx) * w).sum(1).mean() * 4.0
    torch.testing.assert_close(term(s, t, labels), want)
    # the teacher's top-K computed once ahead of training gives the same loss
    tt = t.clone()
    tt[..., 0] = -torch.inf
    ctop, cidx = torch.topk(tt, 3, dim=-1)
    cached = {"index": cidx, "weight": torch.softmax(ctop / 2.0, -1)}
    torch.testing.assert_close(term(s, cached, labels), want)
    torch.testing.assert_close(term(s.reshape(-1, N + 1)[keep], cached, labels), want)  # labelled rows only
    assert not (idx == 0).any()
    with pytest.raises(ValueError, match="index"):
        term(s, {"weight": cached["weight"]}, labels)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_fused_label_ranking_term_is_the_sum_of_the_two_terms(alpha):
    """One log-softmax for both terms: the same loss and the same gradient as the label term plus the ranking term
    at temperature 1, from the teacher's scores and from its cached top-K, at every position or the labelled ones."""
    import torch
    from edgecart.compress.losses import MaskedLabelRankingKD, MaskedRankingKD, SequenceLabelCE

    s, t, labels = _batch(3)
    keep = labels.reshape(-1) != 0
    ref = [SequenceLabelCE(weight=1 - alpha), MaskedRankingKD(weight=alpha, top_k=3, temperature=1.0)]
    fused = MaskedLabelRankingKD(alpha=alpha, top_k=3)
    tt = t.clone()
    tt[..., 0] = -torch.inf
    top, idx = torch.topk(tt, 3, dim=-1)
    cached = {"index": idx, "weight": torch.softmax(top, -1)}
    for student in (s, s.reshape(-1, N + 1)[keep]):
        for teacher in (t, cached):
            a = student.detach().clone().requires_grad_(True)
            b = student.detach().clone().requires_grad_(True)
            want = sum(term.weight * term(a, teacher, labels) for term in ref)
            got = fused(b, teacher, labels)
            torch.testing.assert_close(got, want)
            want.backward()
            got.backward()
            torch.testing.assert_close(b.grad, a.grad)


def test_fused_label_ranking_term_refuses_bad_options_and_missing_inputs():
    import torch
    from edgecart.compress.losses import MaskedLabelRankingKD, loss_from_dict
    from edgecart.config import ConfigError

    s, t, labels = _batch()
    with pytest.raises(ConfigError, match="alpha"):
        MaskedLabelRankingKD(alpha=1.5)
    with pytest.raises(ConfigError, match="top_k"):
        MaskedLabelRankingKD(top_k=0)
    with pytest.raises(ValueError, match="labels"):
        MaskedLabelRankingKD()(s, t, None)
    with pytest.raises(ValueError, match="index"):
        MaskedLabelRankingKD()(s, {"weight": torch.ones(3, 4, 2)}, labels)
    assert loss_from_dict({"name": "masked_label_ranking", "alpha": 0.25}) == MaskedLabelRankingKD(alpha=0.25)


def test_masked_hint_reads_labelled_positions_only():
    import torch
    from edgecart.compress.losses import Hint, MaskedHint

    _, _, labels = _batch()
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 8, generator=g).half()
    proj = torch.nn.Linear(5, 8)
    keep = labels.reshape(-1) != 0
    want = ((proj(s.reshape(-1, 5)[keep]) - t.float().reshape(-1, 8)[keep]) ** 2).mean()
    torch.testing.assert_close(MaskedHint()(s, t, labels, proj), want)
    torch.testing.assert_close(MaskedHint()(s.reshape(-1, 5)[keep], t, labels, proj), want)
    assert isinstance(MaskedHint(), Hint)  # so the shared trainer makes its projection


def test_loss_terms_follow_the_distill_config():
    from edgecart.recs.config import DistillConfig
    from edgecart.recs.train import loss_terms

    assert [(t.name, t.weight) for t in loss_terms(None)] == [("sequence_label", 1.0)]
    terms = loss_terms(DistillConfig(top_k=7, temperature=3.0, alpha=0.25, hint=2.0))
    assert [(t.name, t.weight) for t in terms] == [("sequence_label", 0.75), ("masked_ranking", 0.25),
                                                   ("masked_hint", 2.0)]
    assert terms[1].top_k == 7 and terms[1].temperature == 3.0
    # at temperature 1 the label and ranking terms share one softmax (label smoothing keeps them apart)
    fused = loss_terms(DistillConfig(top_k=7, temperature=1.0, alpha=0.25, hint=2.0))
    assert [(t.name, t.weight) for t in fused] == [("masked_label_ranking", 1.0), ("masked_hint", 2.0)]
    assert fused[0].alpha == 0.25 and fused[0].top_k == 7
    assert [t.name for t in loss_terms(DistillConfig(temperature=1.0), 0.1)] == ["sequence_label", "masked_ranking"]
    assert [t.name for t in loss_terms(DistillConfig(alpha=1.0))] == ["masked_ranking"]
    assert [t.name for t in loss_terms(DistillConfig(alpha=0.0, pca_init=True))] == ["sequence_label"]


@pytest.fixture(scope="module")
def cycle(cycle_data):
    return cycle_data[1]


def test_train_optimises_label_ce_plus_ranking_kd(cycle):
    """One batch holding every window, a tiny lr: the first logged loss is the loss at initialisation, which must be
    (1 - alpha) * masked CE + alpha * T^2 * CE_T(teacher's top-K) computed by hand."""
    import torch
    from edgecart.data.sequences import training_windows
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.config import DistillConfig, TrainConfig
    from edgecart.recs.train import teacher_soft_targets, train
    from torch.nn import functional as F  # noqa: N812

    split = cycle
    torch.manual_seed(0)
    teacher = SASRec(SASRecConfig(N, 6, 8, 1, 1, 2, 0.0)).eval()
    x, y = training_windows(split.train, 6)
    d = DistillConfig(top_k=4, temperature=2.0, alpha=0.3)
    soft = teacher_soft_targets(teacher, x, d)
    torch.manual_seed(1)
    student = SASRec(SASRecConfig(N, 6, 4, 1, 1, 2, 0.0))
    with torch.no_grad():
        logits = student.score(student.encode(torch.from_numpy(x)))[torch.from_numpy(y) != 0]
        keep = y != 0
        ce = F.cross_entropy(logits, torch.from_numpy(y[keep]))
        kd = -(F.log_softmax(logits / 2.0, -1).gather(1, torch.from_numpy(soft.index[keep]))
               * torch.from_numpy(soft.weight[keep])).sum(1).mean() * 4.0
        want = float(0.7 * ce + 0.3 * kd)
    log = train(student, split, TrainConfig(epochs=1, batch_size=len(x), lr=1e-9), soft=soft, distill=d)
    assert log.losses[0] == pytest.approx(want, rel=1e-5)
    assert len(log.valid_ndcg) == 1 and log.best_epoch == 1


def test_train_learns_the_cycle_with_either_schedule(cycle):
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.config import RecsConfig, TrainConfig
    from edgecart.recs.train import train

    for schedule in ("constant", "cosine"):
        torch.manual_seed(0)
        model = SASRec(SASRecConfig(N, 6, 8, 1, 1, 2, 0.0))
        log = train(model, cycle, TrainConfig(epochs=8, batch_size=8, lr=2e-2, schedule=schedule))
        assert log.losses[-1] < 0.5 * log.losses[0]
        assert max(log.valid_ndcg) > 0.8  # the next item of a cycle is fully predictable
    with pytest.raises(ValueError, match="cosine"):
        TrainConfig(schedule="linear")
    cfg = RecsConfig(student_train=TrainConfig(schedule="cosine"))
    assert RecsConfig.from_dict(cfg.to_dict()) == cfg


def test_label_smoothing_reaches_the_label_term_and_keeps_old_cache_keys():
    from edgecart.recs.config import DistillConfig, TrainConfig
    from edgecart.recs.teacher import train_key
    from edgecart.recs.train import loss_terms

    assert loss_terms(None, 0.1)[0].label_smoothing == 0.1
    assert loss_terms(DistillConfig(alpha=0.5), 0.2)[0].label_smoothing == 0.2
    assert "label_smoothing" not in train_key(TrainConfig())  # models cached before the field existed stay valid
    assert train_key(TrainConfig(label_smoothing=0.1))["label_smoothing"] == 0.1
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)


def test_exclude_seen_training_masks_earlier_items_but_never_the_target():
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.train import _Positions, seen_mask

    h = torch.tensor([[0, 3, 5, 3], [2, 4, 6, 1]])
    seen = seen_mask(h, 8)
    assert seen[0, 1].nonzero().flatten().tolist() == [3]
    assert seen[0, 3].nonzero().flatten().tolist() == [3, 5]
    assert seen[1, 3].nonzero().flatten().tolist() == [1, 2, 4, 6]
    assert not seen[0, 0].any()  # padding sees nothing
    torch.manual_seed(0)
    m = SASRec(SASRecConfig(7, max_len=4, dim=8, heads=1, layers=1, dropout=0.0)).eval()
    y = torch.tensor([[0, 5, 3, 6], [4, 6, 1, 2]])  # user 0 sees 3 again at its third position
    with torch.no_grad():
        plain = _Positions(m)(h)["logits"]
        masked = _Positions(m, exclude_seen=True)(h, y)["logits"]
    rows = seen[h != 0]
    rows[torch.arange(rows.shape[0]), y[h != 0]] = False
    assert (masked[rows] < -1e3).all() and torch.equal(masked[~rows], plain[~rows])
    assert masked[1, 3] == plain[1, 3]  # row 1 = user 0, position 2: input 5, target 3 (seen before) stays
