"""Item-drop copies of the training histories (``TrainConfig.augment_copies``): what they are, that training and
the build use them, and that a distilled student gets the teacher's soft targets on them too."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from edgecart.data.sequences import drop_copies

from ..tiny_recs import cycle_data


def _is_subsequence(short: np.ndarray, long: np.ndarray) -> bool:
    it = iter(long.tolist())
    return all(any(x == y for y in it) for x in short.tolist())


def test_drop_copies_keep_order_and_two_items_and_drop_about_the_asked_share():
    rng = np.random.default_rng(0)
    train = tuple(rng.permutation(500)[:n] + 1 for n in (2, 3, 40, 200, 300))
    copies = drop_copies(train, 3, 0.2, seed=7)
    assert len(copies) == 3 * len(train)
    for i, c in enumerate(copies):
        assert len(c) >= 2 and _is_subsequence(c, train[i % len(train)]) and c.dtype == np.int64
    long = [c for i, c in enumerate(copies) if i % len(train) >= 2]
    assert 0.75 < sum(map(len, long)) / (3 * (40 + 200 + 300)) < 0.85
    assert all(np.array_equal(a, b) for a, b in zip(copies, drop_copies(train, 3, 0.2, seed=7)))
    assert any(not np.array_equal(a, b) for a, b in zip(copies, drop_copies(train, 3, 0.2, seed=8)))
    assert drop_copies(train, 0, 0.2) == ()
    for n, drop in ((-1, 0.2), (1, 0.0), (1, 1.0)):
        with pytest.raises(ValueError):
            drop_copies(train, n, drop)


def test_config_checks_the_copies_and_a_build_config_can_ask_for_them():
    from edgecart.config import ConfigError
    from edgecart.recs.config import RecsConfig, TrainConfig

    with pytest.raises(ValueError, match="augment_copies"):
        TrainConfig(augment_copies=-1)
    for drop in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="augment_drop"):
            TrainConfig(augment_drop=drop)
    with pytest.raises(ConfigError, match="augment_copies"):
        RecsConfig.from_dict({"student_train": {"augment_copies": "3"}})
    cfg = RecsConfig.from_dict({"student_train": {"augment_copies": 2, "augment_drop": 0.3}})
    assert (cfg.student_train.augment_copies, cfg.student_train.augment_drop) == (2, 0.3)
    assert RecsConfig.from_dict(cfg.to_dict()) == cfg


def test_training_split_adds_copies_to_training_only_and_leaves_old_cache_keys_alone():
    from edgecart.recs.config import TrainConfig
    from edgecart.recs.teacher import train_key
    from edgecart.recs.train import training_split

    _, split, _ = cycle_data()
    assert training_split(split, TrainConfig()) is split
    more = training_split(split, TrainConfig(augment_copies=2))
    assert len(more.train) == 3 * len(split.train) and more.train[: len(split.train)] == split.train
    assert more.valid_history is split.valid_history and more.test_history is split.test_history
    assert "augment_copies" not in train_key(TrainConfig())  # teachers cached (and shipped) before still match
    assert train_key(TrainConfig(augment_copies=1)) != train_key(TrainConfig())


def test_the_build_trains_both_students_on_the_copies_and_distils_on_them(monkeypatch):
    import edgecart.recs.pipeline as pipeline
    import edgecart.recs.train as train_mod
    from edgecart.recs.config import FAST

    data, split, _ = cycle_data()
    seen: list[tuple[str, int]] = []
    real_windows, real_soft = train_mod.training_windows, pipeline.teacher_soft_targets

    def spy_windows(train, max_len):
        seen.append(("train", len(train)))
        return real_windows(train, max_len)

    def spy_soft(teacher, windows, cfg, **kw):
        seen.append(("soft", len(windows)))
        return real_soft(teacher, windows, cfg, **kw)

    monkeypatch.setattr(train_mod, "training_windows", spy_windows)
    monkeypatch.setattr(pipeline, "teacher_soft_targets", spy_soft)
    cfg = dataclasses.replace(FAST, student_train=dataclasses.replace(FAST.student_train, augment_copies=2))
    pipeline.run_dataset(data, cfg, None, progress=None)
    users = len(split.train)
    # the teacher (no copies) trains on the log; both students on the log and two copies of it
    assert [n for what, n in seen if what == "train"] == [users, 3 * users, 3 * users]
    soft = [n for what, n in seen if what == "soft"]
    assert len(soft) == 1 and soft[0] >= 3 * users  # the teacher's soft targets cover every copy's windows
