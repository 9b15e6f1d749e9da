"""The recommendations teacher: SASRecs from consecutive seeds, averaged, their width chosen on validation.

Each member is cached under a key of its data, model size and training settings (:func:`fingerprint`), so a build
that runs again, or a study script with the same settings, loads the same models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgecart.cache import Cache
from edgecart.data.sequences import SequenceData, Split
from edgecart.models.sasrec import SASRec, SASRecConfig, SASRecEnsemble, as_teacher

from .config import RecsConfig, TrainConfig
from .metrics import evaluate_scores
from .train import eager_scores, train

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class Teacher:
    """A trained (or cached) teacher and how it was chosen.

    ``config``: the run's settings with the teacher's width set to the chosen one (what was trained);
    ``widths``: each width tried and its first member's validation NDCG@10 (empty when only one width was given);
    ``seconds``: the training time of every member trained here, candidates included (None: all were cached)."""

    model: SASRec | SASRecEnsemble
    config: RecsConfig
    widths: dict[int, float]
    seconds: float | None

    @property
    def dim(self) -> int:
        return self.config.teacher.dim


def fingerprint(data: SequenceData, cfg: SASRecConfig, train_cfg: Any) -> str:
    """The cache key of one model: its size, its training settings and the data it learns from (the item ids, each
    user's sequence, and the sequences' lengths, so that logs whose items run in the same order end to end but split
    differently between users get different keys)."""
    h = hashlib.sha256()
    h.update(json.dumps([dataclasses.asdict(cfg), train_key(train_cfg), data.name], sort_keys=True).encode())
    h.update(np.ascontiguousarray(data.item_ids).tobytes())
    for s in data.sequences:
        h.update(np.ascontiguousarray(s).tobytes())
    h.update(np.array([len(s) for s in data.sequences], dtype="<i8").tobytes())
    return h.hexdigest()[:16]


def train_key(train_cfg: Any) -> dict[str, Any]:
    """The training settings as a cache key; a field added later is left out while it has its default value, so
    models cached before it existed are still found."""
    d = dataclasses.asdict(train_cfg)
    for name, default in (("schedule", "constant"), ("label_smoothing", 0.0), ("exclude_seen", False)):
        if name in d and d[name] == default:
            d.pop(name)
    if not d.get("augment_copies"):  # no copies: their drop rate is moot
        d.pop("augment_copies", None)
        d.pop("augment_drop", None)
    return d


def model_config(data: SequenceData, cfg: RecsConfig, which: str) -> SASRecConfig:
    """The SASRec settings of the run's ``"teacher"`` (each member) or ``"student"`` for ``data``."""
    size = cfg.teacher if which == "teacher" else cfg.student
    return SASRecConfig(data.num_items, cfg.max_len, size.dim, size.heads, size.layers, 2, size.dropout)


def train_teacher(data: SequenceData, split: Split, cfg: RecsConfig, cache: Path | None,
                  progress: Progress = None) -> Teacher:
    """Train (or load from ``cache``) the teacher: ``cfg.teacher_seeds`` members from consecutive seeds, their mean
    log-probabilities as one ensemble (one member: that model).

    With several ``cfg.teacher_dims``, the first member (seed ``teacher_train.seed``) is trained at each width and
    the width whose member scores the highest validation NDCG@10 is kept (ties: the narrower); the other members are
    then trained at that width only."""
    dims = cfg.teacher_dims or (cfg.teacher.dim,)
    widths: dict[int, float] = {}
    firsts: dict[int, SASRec] = {}
    total, trained = 0.0, False
    for d in dims:
        c = _with_width(cfg, d)
        m, seconds = _train_one(data, split, model_config(data, c, "teacher"), c.teacher_train, cache, progress,
                                f" {d}-d" if len(dims) > 1 else "")
        firsts[d] = m
        if seconds is not None:
            total, trained = total + seconds, True
        if len(dims) > 1:
            widths[d] = float(evaluate_scores(eager_scores(m, split.valid_history), split.valid_target)["ndcg@10"])
    dim = max(dims, key=lambda d: (widths.get(d, 0.0), -d))
    if len(dims) > 1 and progress:
        tried = ", ".join(f"{d}-d {v:.4f}" for d, v in widths.items())
        progress(f"{data.name}: teacher width {dim} chosen on validation (NDCG@10 of each width's first member: "
                 f"{tried})")
    cfg = _with_width(cfg, dim)
    mcfg = model_config(data, cfg, "teacher")
    members = [firsts[dim]]
    for i in range(1, cfg.teacher_seeds):
        tcfg = _member_train(cfg, i)
        m, seconds = _train_one(data, split, mcfg, tcfg, cache, progress, f" seed {tcfg.seed}")
        members.append(m)
        if seconds is not None:
            total, trained = total + seconds, True
    return Teacher(as_teacher(members), cfg, widths, total if trained else None)


def teacher_key(data: SequenceData, cfg: RecsConfig) -> str:
    """The cache key of the whole teacher of ``cfg`` (its width already chosen): a distilled student's key holds it."""
    key = fingerprint(data, model_config(data, cfg, "teacher"), cfg.teacher_train)
    return key + (f"x{cfg.teacher_seeds}" if cfg.teacher_seeds > 1 else "")


def member_keys(data: SequenceData, cfg: RecsConfig) -> dict[int, list[str]]:
    """For each teacher width :func:`train_teacher` may try, the cache keys of its members by seed (cache entries
    ``recs/<data set>-teacher-<key>``): the first member is trained at every width, the others at the chosen one."""
    out = {}
    for d in cfg.teacher_dims or (cfg.teacher.dim,):
        c = _with_width(cfg, d)
        mcfg = model_config(data, c, "teacher")
        out[d] = [fingerprint(data, mcfg, _member_train(c, i)) for i in range(cfg.teacher_seeds)]
    return out


def _member_train(cfg: RecsConfig, i: int) -> TrainConfig:
    """Member ``i``'s training settings: the teacher's, from seed ``teacher_train.seed + i``."""
    return dataclasses.replace(cfg.teacher_train, seed=cfg.teacher_train.seed + i)


def _with_width(cfg: RecsConfig, dim: int) -> RecsConfig:
    return dataclasses.replace(cfg, teacher=dataclasses.replace(cfg.teacher, dim=dim))


def _train_one(data: SequenceData, split: Split, mcfg: SASRecConfig, tcfg: TrainConfig, cache: Path | None,
               progress: Progress, suffix: str) -> tuple[SASRec, float | None]:
    store, name, key = Cache(cache, "recs"), f"{data.name}-teacher", fingerprint(data, mcfg, tcfg)
    hit = store.load_state(name, key)
    if hit is not None:
        teacher = SASRec(mcfg)
        teacher.load_state_dict(hit[0])
        if progress:
            progress(f"{data.name}: teacher{suffix} loaded from {store.path(name, key, '.pt')}")
        return teacher.eval(), None
    torch.manual_seed(tcfg.seed)
    teacher = SASRec(mcfg)
    log = train(teacher, split, tcfg, desc=f"{data.name} teacher{suffix}", progress=progress)
    store.save_state(name, key, teacher.state_dict(), {"train_s": log.seconds, "config": dataclasses.asdict(mcfg),
                                                       "best_epoch": log.best_epoch, "epochs_run": len(log.losses)})
    return teacher.eval(), log.seconds
