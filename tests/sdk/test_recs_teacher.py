"""The teacher's width chosen on validation (``RecsConfig.teacher_dims``), on a cycle whose next item is fully
predictable: a 16-d SASRec learns it, a 1-d one cannot."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def cycle(cycle_data):
    return cycle_data


def _cfg(dims: tuple[int, ...], seeds: int = 2):
    from edgecart.recs.config import ModelSize, RecsConfig, TrainConfig

    return RecsConfig(max_len=6, teacher=ModelSize(8, 1, 1, 0.0), teacher_dims=dims, teacher_seeds=seeds,
                      teacher_train=TrainConfig(epochs=8, batch_size=8, lr=2e-2))


@pytest.mark.parametrize("dims", [(1, 16), (16, 1)])
def test_the_width_with_the_best_validation_member_is_kept_and_only_it_gets_more_members(cycle, dims, tmp_path):
    from edgecart.recs.teacher import train_teacher

    data, split = cycle
    t = train_teacher(data, split, _cfg(dims), tmp_path, None)
    assert set(t.widths) == set(dims)
    assert t.widths[16] > 0.8 > t.widths[1]  # the cycle is learnt at 16-d only
    assert t.dim == 16 and t.config.teacher.dim == 16 and t.config.teacher_dims == dims
    assert [m.cfg.dim for m in t.model.members] == [16, 16]
    assert t.seconds is not None and t.seconds > 0
    # cached: one 1-d member (the candidate) and two 16-d ones; a second run trains nothing and chooses the same
    assert len(list((tmp_path / "recs").glob("cycle-teacher-*.pt"))) == 3
    again = train_teacher(data, split, _cfg(dims), tmp_path, None)
    assert again.seconds is None and again.dim == 16 and again.widths == t.widths


def test_ties_go_to_the_narrower_width_and_one_width_trains_no_candidates(cycle, tmp_path, monkeypatch):
    from edgecart.recs import teacher as mod

    data, split = cycle
    monkeypatch.setattr(mod, "evaluate_scores", lambda scores, target: {"ndcg@10": 0.5})
    t = mod.train_teacher(data, split, _cfg((16, 8), seeds=1), tmp_path / "a", None)
    assert t.dim == 8 and t.widths == {16: 0.5, 8: 0.5}
    one = mod.train_teacher(data, split, _cfg((), seeds=1), tmp_path / "b", None)
    assert one.dim == 8 and one.widths == {}  # teacher.dim, no validation pass
    assert len(list((tmp_path / "b" / "recs").glob("cycle-teacher-*.pt"))) == 1


def test_teacher_dims_are_checked():
    for bad in ((0,), (True,), (8, 8), (2.5,)):
        with pytest.raises(ValueError, match="teacher_dims"):
            _cfg(bad)
    from edgecart.recs.config import ModelSize, RecsConfig

    with pytest.raises(ValueError, match="divisible by the teacher's heads"):
        RecsConfig(teacher=ModelSize(8, 1, 2), teacher_dims=(8, 5))
    cfg = _cfg((8, 16))
    assert RecsConfig.from_dict(cfg.to_dict()) == cfg


def test_the_build_distils_from_the_chosen_width_and_reports_the_choice(cycle, tmp_path):
    import dataclasses

    from edgecart.recs.config import ModelSize, TrainConfig
    from edgecart.recs.pipeline import RecsSummary, run_dataset

    data, _ = cycle
    cfg = dataclasses.replace(_cfg((1, 16)), student=ModelSize(2, 1, 1, 0.0), max_student_ratio=0.5,
                              student_train=TrainConfig(epochs=1, batch_size=8, lr=1e-2), formats=("onnx",),
                              int8=False, gate_users=10, golden_samples=1, calibration_samples=2)
    res = run_dataset(data, cfg, tmp_path / "bundle", tmp_path, None)
    assert res.teacher_dim == 16 and set(res.teacher_widths) == {1, 16}
    from edgecart.runtime import open_bundle

    quality = open_bundle(res.bundle).manifest.quality  # the choice travels in the bundle's manifest
    assert quality["teacher_width"] == {"chosen": 16, "valid_ndcg@10_first_member": {
        str(d): v for d, v in res.teacher_widths.items()}}
    assert res.model("teacher (SASRec)").valid_ndcg > 0.8  # the 16-d ensemble, not the 1-d candidate
    assert "cycle: teacher members 16-d, chosen on validation" in RecsSummary((res,), 1.0).table()
    # the students' size limit is against the chosen teacher: a 2-d student is above half of a 1-d teacher's
    with pytest.raises(ValueError, match="max_student_ratio"):
        run_dataset(data, dataclasses.replace(cfg, teacher_dims=(1,)), None, tmp_path, None)


def test_the_cache_key_tells_apart_logs_that_differ_only_in_where_one_user_ends():
    """Moving one interaction from a user to the next keeps the items in the same order end to end: the key must
    still change, or a build would reuse a model trained on other data."""
    import numpy as np
    from edgecart.data.sequences import SequenceData
    from edgecart.recs.config import FAST
    from edgecart.recs.teacher import fingerprint, model_config

    ids, users = np.arange(101, 107), np.arange(2)
    a = SequenceData("log", ids, users, (np.array([1, 2, 3]), np.array([4, 5, 6])))
    b = SequenceData("log", ids, users, (np.array([1, 2, 3, 4]), np.array([5, 6])))
    mcfg = model_config(a, FAST, "teacher")
    assert fingerprint(a, mcfg, FAST.teacher_train) != fingerprint(b, mcfg, FAST.teacher_train)
    assert fingerprint(a, mcfg, FAST.teacher_train) == fingerprint(
        SequenceData("log", ids, users, tuple(s.copy() for s in a.sequences)), mcfg, FAST.teacher_train)
