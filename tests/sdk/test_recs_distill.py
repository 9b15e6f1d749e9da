"""The distillation options on a tiny item cycle: soft targets over the teacher's top-K, the hint loss through a
projection, PCA initialisation of the student's item table, and early stopping on validation."""

from __future__ import annotations

import numpy as np
import pytest

N = 12


@pytest.fixture(scope="module")
def setup():
    import torch
    from edgecart.data.sequences import SequenceData, leave_last_out
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.config import TrainConfig
    from edgecart.recs.train import train

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    seqs = tuple((np.arange(s, s + 12) % N + 1).astype(np.int64) for s in rng.integers(0, N, 40))
    data = SequenceData("cycle", np.arange(1, N + 1), np.arange(40), seqs)
    split = leave_last_out(data)
    torch.manual_seed(0)
    teacher = SASRec(SASRecConfig(N, 8, 16, 1, 1, 2, 0.0))
    train(teacher, split, TrainConfig(epochs=15, batch_size=16, lr=1e-2))
    return data, split, teacher


def test_config_validation():
    from edgecart.recs.config import DistillConfig, RecsConfig, TrainConfig

    with pytest.raises(ValueError, match="hint"):
        DistillConfig(hint=-1)
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=0)
    cfg = RecsConfig(distill=DistillConfig(top_k=60, temperature=2.0, hint=0.5, pca_init=True),
                     student_train=TrainConfig(patience=4))
    assert RecsConfig.from_dict(cfg.to_dict()) == cfg


def test_soft_targets_keep_top_k_and_hidden_states(setup):
    from edgecart.data.sequences import training_windows
    from edgecart.recs.config import DistillConfig
    from edgecart.recs.train import teacher_soft_targets

    _, split, teacher = setup
    windows, _ = training_windows(split.train, 8)
    soft = teacher_soft_targets(teacher, windows, DistillConfig(top_k=50, temperature=2.0, hint=1.0))
    assert soft.index.shape == (*windows.shape, N)  # K is capped at the number of items
    assert (soft.index != 0).all()  # padding is never a soft target
    np.testing.assert_allclose(soft.weight.sum(-1), 1.0, atol=1e-5)
    assert soft.hidden is not None and soft.hidden.shape == (*windows.shape, 16)
    assert teacher_soft_targets(teacher, windows, DistillConfig(top_k=3)).hidden is None


def test_pca_init_keeps_the_teachers_item_geometry(setup):
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.train import pca_init

    _, _, teacher = setup
    student = SASRec(SASRecConfig(N, 8, 4, 1, 1, 2, 0.0))
    pca_init(student, teacher)
    s, t = student.items.weight.detach().double(), teacher.items.weight.detach().double()
    assert torch.all(s[0] == 0)
    # the student's item-item similarities are the best rank-4 approximation of the teacher's (up to scale)
    gs, gt = s[1:] @ s[1:].T, t[1:] @ t[1:].T
    u, sv, vh = torch.linalg.svd(t[1:], full_matrices=False)
    best = (u[:, :4] * sv[:4]) @ (u[:, :4] * sv[:4]).T
    cos = float((gs * best).sum() / (gs.norm() * best.norm()))
    assert cos > 0.999 and float((gs * gt).sum() / (gs.norm() * gt.norm())) > 0.5
    with pytest.raises(ValueError, match="student dim"):
        pca_init(SASRec(SASRecConfig(N, 8, 32, 1, 1, 2, 0.0)), teacher)


def test_pca_init_from_side_by_side_tables_keeps_their_summed_similarities():
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.train import pca_init_from_table

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(N + 1, 3, generator=g), torch.randn(N + 1, 3, generator=g)
    student = SASRec(SASRecConfig(N, 8, 6, 1, 1, 2, 0.0))
    pca_init_from_table(student, torch.cat([a, b], dim=1))  # full rank: nothing is lost but the scale
    s = student.items.weight.detach().double()
    gs, want = s[1:] @ s[1:].T, (a[1:] @ a[1:].T + b[1:] @ b[1:].T).double()
    assert torch.all(s[0] == 0)
    assert float((gs * want).sum() / (gs.norm() * want.norm())) > 0.9999


def test_hint_loss_trains_and_needs_hidden_states(setup):
    import torch
    from edgecart.data.sequences import training_windows
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.config import DistillConfig, TrainConfig
    from edgecart.recs.train import teacher_soft_targets, train

    _, split, teacher = setup
    windows, _ = training_windows(split.train, 8)
    d = DistillConfig(top_k=5, alpha=0.5, hint=1.0)
    torch.manual_seed(0)
    student = SASRec(SASRecConfig(N, 8, 8, 1, 1, 2, 0.0))
    with pytest.raises(ValueError, match="hidden states"):
        train(student, split, TrainConfig(epochs=1), soft=teacher_soft_targets(teacher, windows,
                                                                               DistillConfig(top_k=5)), distill=d)
    log = train(student, split, TrainConfig(epochs=6, batch_size=16, lr=1e-2),
                soft=teacher_soft_targets(teacher, windows, d), distill=d)
    assert log.losses[-1] < log.losses[0] and max(log.valid_ndcg) > 0.5


def test_early_stopping_stops_and_keeps_the_best_epoch(setup):
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.config import TrainConfig
    from edgecart.recs.train import train

    _, split, _ = setup
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(N, 8, 8, 1, 1, 2, 0.0))
    log = train(model, split, TrainConfig(epochs=60, batch_size=16, lr=3e-2, patience=2))
    assert len(log.losses) < 60  # a learnable cycle saturates long before 60 epochs
    assert len(log.losses) - log.best_epoch == 2 or len(log.losses) == 60
    assert log.valid_ndcg[log.best_epoch - 1] == max(log.valid_ndcg)


def test_ensemble_teacher_averages_log_probabilities():
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig, SASRecEnsemble
    from edgecart.recs.config import DistillConfig, RecsConfig
    from edgecart.recs.train import eager_scores, teacher_soft_targets

    cfg = SASRecConfig(12, max_len=5, dim=8, heads=2, layers=1, dropout=0.0)
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(SASRec(cfg).eval())
    ens = SASRecEnsemble(members).eval()
    x = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    with torch.no_grad():
        want = []
        for m in members:
            s = m(x)
            s[:, 0] = -torch.inf
            want.append(torch.log_softmax(s, -1))
        want = (want[0] + want[1]) / 2
        got = ens(x)
    assert torch.allclose(got[:, 1:], want[:, 1:], atol=1e-5) and (got[:, 0] <= -1e8).all()
    assert np.allclose(eager_scores(ens, [np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8, 9])])[:, 1:],
                       want[:, 1:].numpy(), atol=1e-5)
    soft = teacher_soft_targets(ens, x.numpy(), DistillConfig(top_k=3, temperature=2.0))
    assert soft.index[1, -1].tolist() == torch.topk(want[1, 1:], 3).indices.add(1).tolist()
    assert np.allclose(soft.weight.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="share one"):
        SASRecEnsemble([members[0], SASRec(SASRecConfig(12, max_len=5, dim=4, heads=1, layers=1))])
    with pytest.raises(ValueError, match="teacher_seeds"):
        RecsConfig(teacher_seeds=0)
    # one trained model is its own teacher; several become their ensemble, in eval mode
    from edgecart.models.sasrec import as_teacher

    assert as_teacher([members[0]]) is members[0]
    both = as_teacher(members)
    assert isinstance(both, SASRecEnsemble) and not both.training and list(both.members) == members
