"""The shipped blend of a student with the item-to-item table is chosen on validation (jointly with the student)."""

from __future__ import annotations

import dataclasses

import pytest


@pytest.fixture(scope="module")
def setup():
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.baselines import CoOccurrence
    from edgecart.recs.config import FAST

    from ..tiny_recs import cycle_data

    data, split, _ = cycle_data()
    torch.manual_seed(0)
    mcfg = SASRecConfig(data.num_items, max_len=8, dim=8, heads=1, layers=1, dropout=0.0)
    students = {"student, distilled": SASRec(mcfg).eval(), "student, no distillation": SASRec(mcfg).eval()}
    cfg = dataclasses.replace(FAST, max_len=8, cooc_window=1)
    return students, CoOccurrence(split.train, data.num_items, window=1), cfg, split


def _valid(model, i2i, split) -> float:
    from edgecart.recs.metrics import evaluate_scores
    from edgecart.recs.train import eager_scores

    s = eager_scores(model, split.valid_history)
    if i2i is not None:
        s = i2i.blend_scores(s, split.valid_history)
    return evaluate_scores(s, split.valid_target)["ndcg@10"]


def _choose(students, co, cfg, split):
    """The pipeline's choice, fed as ``run_dataset`` feeds it: each student's validation scores, the table."""
    from edgecart.recs.pipeline import _choose_export, blend_table
    from edgecart.recs.train import eager_scores

    valid = {k: eager_scores(m, split.valid_history) for k, m in students.items()}
    return _choose_export(valid, blend_table(co, cfg), cfg, split)


def test_the_best_validation_pair_is_chosen(setup):
    students, co, cfg, split = setup
    name, i2i, v = _choose(students, co, cfg, split)
    assert i2i is not None and i2i.blend < 1.0  # untrained students: the table carries the cycle
    assert v == pytest.approx(_valid(students[name], i2i, split))
    base = co.item_to_item(1.0, cfg.item_to_item)
    for model in students.values():
        for w in cfg.blend_grid:
            assert _valid(model, dataclasses.replace(base, blend=w), split) <= v + 1e-12
    assert v > _valid(students[name], None, split) + 0.2
    # the order of the grid does not matter
    again = _choose(students, co, dataclasses.replace(cfg, blend_grid=cfg.blend_grid[::-1]), split)
    assert again[0] == name and again[1] is not None and again[1].blend == i2i.blend and again[2] == v


def test_no_table_when_the_student_alone_wins_or_the_blend_is_off(setup):
    students, co, cfg, split = setup
    name, i2i, v = _choose(students, co, dataclasses.replace(cfg, blend_grid=(1.0,)), split)
    assert i2i is None and v == pytest.approx(_valid(students[name], None, split))
    name, i2i, _ = _choose(students, co, dataclasses.replace(cfg, item_to_item=0), split)
    assert i2i is None


def test_config_checks():
    from edgecart.recs.config import RecsConfig

    with pytest.raises(ValueError, match="blend_grid"):
        RecsConfig(blend_grid=(0.0, 0.5))
    with pytest.raises(ValueError, match="blend_grid"):
        RecsConfig(blend_grid=())
    with pytest.raises(ValueError, match="item_to_item"):
        RecsConfig(item_to_item=-1)
    assert RecsConfig.from_dict(RecsConfig(blend_grid=[0.5, 1]).to_dict()).blend_grid == (0.5, 1.0)
