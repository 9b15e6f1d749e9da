"""The cross-fitted soft targets of ``scripts/recs_round5.py``: each user in one fold, and every training window
given the soft targets of the fold teacher that did not train on its user."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def _round5():
    spec = importlib.util.spec_from_file_location("recs_round5", ROOT / "scripts" / "recs_round5.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _FoldMarker:
    """A stand-in teacher that ranks item ``fold + 1`` first everywhere, so a soft target names its teacher."""

    def __init__(self, fold: int, num_items: int) -> None:
        self.fold, self.cfg = fold, SimpleNamespace(num_items=num_items)

    def eval(self) -> _FoldMarker:
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def score(self, h: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(*h.shape, self.cfg.num_items + 1)
        out[..., self.fold + 1] = 1.0
        return out


def test_folds_cover_every_user_once_in_near_equal_parts():
    m = _round5()
    fold = m._folds(10, 3)
    assert sorted(np.bincount(fold).tolist()) == [3, 3, 4]
    assert np.array_equal(fold, m._folds(10, 3))  # fixed, so every student sees the same fold teachers
    # shuffled: neither round-robin in user order nor consecutive blocks (users are ordered by id)
    assert not np.array_equal(fold, np.arange(10) % 3) and not np.array_equal(fold, np.sort(fold))


def test_each_window_gets_the_teacher_that_never_saw_its_user(monkeypatch):
    from edgecart.data.sequences import SequenceData, leave_last_out, training_windows
    from edgecart.recs.config import DistillConfig

    m = _round5()
    rng = np.random.default_rng(1)
    # lengths 5..16 with windows of 4: users own one to four windows each
    seqs = tuple(rng.integers(1, 9, n).astype(np.int64) for n in rng.integers(5, 17, 30))
    split = leave_last_out(SequenceData("t", np.arange(8), np.arange(30), seqs))
    asked = []

    def fold_teacher(args, split_, fold, f, seed):
        asked.append(f)
        return _FoldMarker(f, split_.num_items)

    monkeypatch.setattr(m, "_fold_teacher", fold_teacher)
    args = SimpleNamespace(folds=3, max_len=4, teacher_seeds=[0])
    soft = m.crossfit_soft_targets(args, split, DistillConfig(top_k=2, temperature=1.0, alpha=0.5))

    fold = m._folds(split.num_users, 3)
    owner = [u for u, s in enumerate(split.train) for _ in range(len(training_windows((s,), 4)[0]))]
    inputs, _ = training_windows(split.train, 4)
    assert soft.index.shape == (*inputs.shape, 2) and len(owner) == len(inputs)
    assert len(set(np.bincount(owner).tolist())) > 1  # users really own different numbers of windows
    for w, u in enumerate(owner):
        assert (soft.index[w, :, 0] == fold[u] + 1).all(), f"window {w} of user {u}"
    assert asked == [0, 1, 2]
