"""The distillation trainer: loss terms, configs, training that learns, resume, early stopping, and DDP (2 processes
under torchrun give the 1-process result)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgecart.compress import (  # noqa: E402
    LOSSES,
    MSE,
    Cosine,
    DistillConfig,
    DistillData,
    DistillError,
    Hint,
    KLDivergence,
    LabelCE,
    RankingKD,
    Relational,
    distill,
    loss_from_dict,
)
from edgecart.runtime.errors import UnknownNameError  # noqa: E402


def _pair(seed: int = 0, n: int = 8, d: int = 6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


@pytest.mark.parametrize("term", [Cosine(), MSE(), Relational(), KLDivergence(temperature=3.0)], ids=lambda t: t.name)
def test_teacher_matching_terms_are_zero_at_the_teacher_and_positive_elsewhere(term):
    s, t = _pair()
    assert float(term(t, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(term(s, t)) > 1e-3


def test_kl_matches_its_definition():
    s, t = _pair(1)
    tt = 2.0
    p = torch.softmax(t / tt, -1)
    want = (p * (torch.log(p) - torch.log_softmax(s / tt, -1))).sum(-1).mean() * tt * tt
    assert float(KLDivergence(temperature=tt)(s, t)) == pytest.approx(float(want), rel=1e-5)


def test_ranking_uses_the_teachers_top_k_as_weighted_positives():
    s, t = _pair(2, n=3, d=10)
    k, tt = 3, 0.5
    top, idx = torch.topk(t, k, -1)
    w = torch.softmax(top / tt, -1)
    want = -(torch.log_softmax(s, -1).gather(1, idx) * w).sum(1).mean()
    assert float(RankingKD(top_k=k, temperature=tt)(s, t)) == pytest.approx(float(want), rel=1e-6)
    # excluding column 0 (a padding slot) changes the targets when the teacher ranks it high
    t2 = t.clone()
    t2[:, 0] = 100.0
    assert float(RankingKD(top_k=k, exclude_first=True)(s, t2)) != pytest.approx(float(RankingKD(top_k=k)(s, t2)))


def test_label_term_is_cross_entropy_and_needs_labels():
    s, _ = _pair(3)
    y = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    assert float(LabelCE()(s, None, y)) == pytest.approx(float(torch.nn.functional.cross_entropy(s, y)))
    with pytest.raises(ValueError, match="needs labels"):
        LabelCE()(s, None, None)


def test_loss_terms_round_trip_and_unknown_names_list_the_known_ones():
    cfg = DistillConfig(losses=(Cosine(weight=0.5), RankingKD(top_k=7, temperature=2.0), LabelCE(weight=0.1)),
                        epochs=2, patience=3)
    again = DistillConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(UnknownNameError, match="cosine"):
        loss_from_dict({"name": "cosin"})
    with pytest.raises(UnknownNameError, match="top_k"):
        loss_from_dict({"name": "ranking", "topk": 5})
    with pytest.raises(UnknownNameError, match="epochs"):
        DistillConfig.from_dict({"losses": [{"name": "mse"}], "epoch": 3})
    with pytest.raises(ValueError, match="weight"):
        Cosine(weight=-1)
    with pytest.raises(ValueError, match="non-empty"):
        DistillConfig(losses=())
    assert set(LOSSES.names()) >= {"cosine", "mse", "relational", "kl", "ranking", "label", "hint"}


def _toy(seed: int = 0, n: int = 96, d_in: int = 8, d_t: int = 6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    teacher = torch.nn.Sequential(torch.nn.Linear(d_in, 16), torch.nn.Tanh(), torch.nn.Linear(16, d_t))
    for p in teacher.parameters():
        p.requires_grad_(False)
    return x, teacher


def _cos(student, teacher, x) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.cosine_similarity(student(x), teacher(x), dim=-1).mean())


def test_distillation_learns_the_teachers_space_and_a_teacher_is_required():
    x, teacher = _toy()
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 6))
    before = _cos(student, teacher, x)
    cfg = DistillConfig(losses=(Cosine(), MSE(weight=0.5)), epochs=40, batch_size=32, lr=1e-2)
    res = distill(student, teacher, DistillData(x), cfg, progress=False)
    assert before < 0.5 < 0.95 < _cos(student, teacher, x)
    assert res.losses[-1] < res.losses[0] and res.epochs_run == 40
    with pytest.raises(DistillError, match="need a teacher"):
        distill(student, None, DistillData(x), cfg, progress=False)


def test_cached_teacher_outputs_train_like_the_live_teacher():
    x, teacher = _toy(1)
    cfg = DistillConfig(losses=(Cosine(),), epochs=3, batch_size=16, lr=1e-2, schedule="constant")
    a = torch.nn.Linear(8, 6)
    b = torch.nn.Linear(8, 6)
    b.load_state_dict(a.state_dict())
    distill(a, teacher, DistillData(x), cfg, progress=False)
    with torch.no_grad():
        cached = teacher(x)
    distill(b, None, DistillData(x, teacher_outputs=cached), cfg, progress=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_hint_trains_a_projection_to_a_wider_teacher():
    x, teacher = _toy(2, d_t=12)
    student = torch.nn.Linear(8, 4)
    cfg = DistillConfig(losses=(Hint(),), epochs=30, batch_size=32, lr=1e-2)
    res = distill(student, teacher, DistillData(x), cfg, progress=False)
    assert res.losses[-1] < 0.5 * res.losses[0]


def test_validation_keeps_the_best_epoch_and_patience_stops_early():
    x, teacher = _toy(3)
    student = torch.nn.Linear(8, 6)
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9, 0.9])
    kept = {}

    def validate(m):
        s = next(scores)
        if s == 0.5:
            kept.update({k: v.clone() for k, v in m.state_dict().items()})
        return s

    cfg = DistillConfig(losses=(MSE(),), epochs=7, batch_size=32, lr=1e-2, patience=3)
    res = distill(student, teacher, DistillData(x), cfg, validate=validate, progress=False)
    assert res.stopped_early and res.epochs_run == 5 and res.best_epoch == 2
    for k, v in student.state_dict().items():
        torch.testing.assert_close(v, kept[k])


def test_resume_equals_an_uninterrupted_run(tmp_path):
    x, teacher = _toy(4)
    cfg = DistillConfig(losses=(Cosine(), MSE()), epochs=4, batch_size=16, lr=5e-3)

    def fresh():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 6))

    def rising(crash_at: int | None = None):
        calls = {"n": 0}

        def validate(_m):  # every epoch better than the last, so the last epoch is the one kept
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise KeyboardInterrupt
            return float(calls["n"])
        return validate

    ref = fresh()
    torch.manual_seed(1)
    distill(ref, teacher, DistillData(x), cfg, validate=rising(), progress=False)

    # interrupted in epoch 3 (after its checkpointed predecessor), then resumed from the checkpoint
    part = fresh()
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        distill(part, teacher, DistillData(x), cfg, checkpoint_dir=tmp_path, validate=rising(crash_at=3),
                progress=False)
    resumed = fresh()
    later = rising()
    res = distill(resumed, teacher, DistillData(x), cfg, checkpoint_dir=tmp_path, resume=True,
                  validate=lambda m: 10 + later(m), progress=False)
    assert res.resumed_from == 2 and res.epochs_run == 4 and res.best_epoch == 4
    for k, v in resumed.state_dict().items():
        torch.testing.assert_close(v, ref.state_dict()[k])
    # a checkpoint of another configuration is refused
    other = DistillConfig.from_dict({**cfg.to_dict(), "lr": 1e-3})
    with pytest.raises(DistillError, match="another configuration"):
        distill(fresh(), teacher, DistillData(x), other, checkpoint_dir=tmp_path, resume=True, progress=False)


def test_resume_refuses_to_switch_model_selection_on_or_off(tmp_path):
    x, teacher = _toy(4)
    cfg = DistillConfig(losses=(MSE(),), epochs=3, batch_size=16, lr=5e-3)

    def fresh():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 6))

    def crash_at_second(_m, calls={"n": 0}):  # noqa: B006 - a counter kept across calls
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return 1.0

    with pytest.raises(KeyboardInterrupt):
        distill(fresh(), teacher, DistillData(x), cfg, checkpoint_dir=tmp_path / "v", validate=crash_at_second,
                progress=False)
    # without validate the old best epoch's weights would come back instead of the last epoch's
    with pytest.raises(DistillError, match="validate"):
        distill(fresh(), teacher, DistillData(x), cfg, checkpoint_dir=tmp_path / "v", resume=True, progress=False)

    # and a run checkpointed without validation cannot pick a best epoch among epochs it never scored
    distill(fresh(), teacher, DistillData(x), cfg, checkpoint_dir=tmp_path / "u", progress=False)
    with pytest.raises(DistillError, match="validate"):
        distill(fresh(), teacher, DistillData(x), cfg, checkpoint_dir=tmp_path / "u", resume=True,
                validate=lambda m: 1.0, progress=False)


_DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from edgecart.compress import Cosine, MSE, KLDivergence, DistillConfig, DistillData, distill
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(90, 8, generator=g)
    torch.manual_seed(1)  # every rank must hold the same teacher (torchrun's workers start from other RNG states)
    teacher = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 6))
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.ReLU(), torch.nn.Linear(12, 6))
    cfg = DistillConfig(losses=(Cosine(), MSE(weight=0.5), KLDivergence(weight=0.2)), epochs=3, batch_size=32,
                        lr=1e-2)
    res = distill(student, teacher, DistillData(x), cfg, progress=False)
    again = distill(student, teacher, DistillData(x), cfg, progress=False)  # the same group, formed once
    before = torch.distributed.is_initialized() if torch.distributed.is_available() else False
    import atexit
    atexit._run_exitfuncs()  # what the interpreter runs at exit: the group distill formed is closed there
    after = torch.distributed.is_initialized() if torch.distributed.is_available() else False
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save({"state": student.state_dict(), "world": res.world_size, "losses": res.losses,
                    "again": again.world_size, "open": (before, after)}, sys.argv[1])
""")


def test_two_processes_under_torchrun_reach_the_one_process_result(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(_DDP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, str(script), str(one)], check=True, env=env, timeout=300)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script), str(two)], env=env, timeout=300, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = torch.load(one, weights_only=True), torch.load(two, weights_only=True)
    assert a["world"] == 1 and b["world"] == 2 and b["again"] == 2
    assert a["open"] == (False, False)
    assert b["open"] == (True, False)  # open between calls, closed at exit (pytorch/pytorch#190489)
    for k, v in a["state"].items():
        torch.testing.assert_close(v, b["state"][k], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5)


def test_inputs_may_be_a_callable_that_builds_each_batch():
    x, teacher = _toy(5)
    seen = []

    def make(rows):
        seen.append(len(rows))
        return x[torch.from_numpy(rows)] + 0.0

    student = torch.nn.Linear(8, 6)
    cfg = DistillConfig(losses=(Cosine(),), epochs=1, batch_size=40)
    distill(student, teacher, DistillData(make, size=len(x)), cfg, progress=False)
    assert seen == [40, 40, 16]
    with pytest.raises(DistillError, match="size="):
        DistillData(make)
    with pytest.raises(DistillError, match="one row per training row"):
        DistillData(x, labels=torch.zeros(3, dtype=torch.long))


def test_progress_prints_lines_when_not_on_a_terminal(capsys):
    import io

    from edgecart.progress import LineProgress
    buf = io.StringIO()
    list(LineProgress(range(3), desc="work", unit="step", every=0.0, stream=buf))
    text = buf.getvalue()
    assert "work: 1/3 step" in text and "done in" in text


def test_path_helpers_write_nothing_without_a_checkpoint_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, teacher = _toy(6)
    distill(torch.nn.Linear(8, 6), teacher, DistillData(x), DistillConfig(losses=(MSE(),), epochs=1),
            progress=False)
    assert list(Path(tmp_path).iterdir()) == []
