"""Longer recommendations studies behind the README's tables: a teacher sweep, the distillation ablation and the
quality-vs-size curve. Choices use the validation split only; test figures are reported with paired 95% bootstrap
intervals over test users. ``scripts/recs_experiments.py`` is the command line; results go to JSON and Markdown.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgecart.data.sequences import SequenceData, Split, leave_last_out, training_windows
from edgecart.models.sasrec import SASRec, num_params

from .config import DistillConfig, ModelSize, RecsConfig, TrainConfig
from .metrics import format_ratio, paired_bootstrap, target_ranks, user_ndcg
from .train import eager_scores, pca_init, teacher_soft_targets, train

Say = Callable[[str], None]


@dataclass(frozen=True)
class Fit:
    """One trained model: validation NDCG@10 (the choice), test NDCG@10 and per-user test NDCG (the report)."""

    label: str
    params: int
    valid_ndcg: float
    test_ndcg: float
    test_recall: float
    best_epoch: int
    epochs_run: int
    seconds: float
    config: dict[str, Any]
    user_ndcg: np.ndarray = dataclasses.field(repr=False, compare=False, default_factory=lambda: np.zeros(0))

    def public(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "user_ndcg"}


def evaluate(model: SASRec, split: Split) -> tuple[float, float, float, np.ndarray]:
    """(valid NDCG@10, test NDCG@10, test Recall@10, per-user test NDCG@10) of an eager model."""
    v = user_ndcg(target_ranks(eager_scores(model, split.valid_history), split.valid_target)).mean()
    r = target_ranks(eager_scores(model, split.test_history), split.test_target)
    u = user_ndcg(r)
    return float(v), float(u.mean()), float((r < 10).mean()), u


def fit(label: str, data: SequenceData, split: Split, size: ModelSize, max_len: int, tcfg: TrainConfig, *,
        teacher: SASRec | None = None, distill: DistillConfig | None = None, say: Say = print,
        soft_cache: dict[Any, Any] | None = None, cache: Path | None = None) -> tuple[Fit, SASRec]:
    """Train one SASRec of ``size`` (distilled from ``teacher`` when ``distill`` is given) and evaluate it; with
    ``cache``, a model trained before with the same data, settings and teacher is loaded instead."""
    import hashlib

    from edgecart.cache import Cache
    from edgecart.models.sasrec import SASRecConfig

    torch.manual_seed(tcfg.seed)
    model = SASRec(SASRecConfig(data.num_items, max_len, size.dim, size.heads, size.layers, 2, size.dropout))
    from .teacher import train_key

    cfg = {"size": dataclasses.asdict(size), "train": train_key(tcfg),
           "distill": dataclasses.asdict(distill) if distill else None}
    tsum = None if teacher is None or distill is None else round(float(sum(p.double().sum() for p in
                                                                           teacher.parameters())), 6)
    key = hashlib.sha256(json.dumps([data.name, data.num_items, data.num_interactions, max_len, cfg, tsum],
                                    sort_keys=True).encode()).hexdigest()[:16]
    store = Cache(cache, "recs-experiments")
    hit = store.load_state(f"{data.name}-fit", key)
    if hit is not None:
        model.load_state_dict(hit[0])
        model.eval()
        info = hit[1]
        v, t, r, u = evaluate(model, split)
        say(f"{label}: loaded from the cache")
        return Fit(label, num_params(model), v, t, r, info["best_epoch"], info["epochs_run"], info["seconds"], cfg,
                   u), model
    kw: dict[str, Any] = {}
    if distill is not None:
        if teacher is None:
            raise ValueError("distillation needs a teacher")
        if distill.pca_init:
            pca_init(model, teacher)
        skey = (distill.top_k, distill.temperature, distill.hint > 0)
        soft = None if soft_cache is None else soft_cache.get(skey)
        if soft is None:
            windows, _ = training_windows(split.train, max_len)
            soft = teacher_soft_targets(teacher, windows, distill)
            if soft_cache is not None:
                soft_cache[skey] = soft
        if distill.alpha > 0 or distill.hint > 0:
            kw = {"soft": soft, "distill": distill}
    log = train(model, split, tcfg, desc=f"{data.name} {label}", progress=say, **kw)
    store.save_state(f"{data.name}-fit", key, model.state_dict(), {"best_epoch": log.best_epoch,
                     "epochs_run": len(log.losses), "seconds": log.seconds, "config": cfg})
    v, t, r, u = evaluate(model, split)
    return Fit(label, num_params(model), v, t, r, log.best_epoch, len(log.losses), log.seconds, cfg, u), model


def compare(a: Fit, b: Fit) -> dict[str, float | None]:
    return paired_bootstrap(a.user_ndcg, b.user_ndcg)


def teacher_sweep(data: SequenceData, max_len: int, candidates: Sequence[tuple[ModelSize, TrainConfig]],
                  say: Say = print) -> tuple[list[Fit], int, SASRec]:
    """Train every candidate teacher; returns the fits, the index chosen on validation NDCG@10, and that model."""
    split = leave_last_out(data)
    fits, best, best_model = [], -1, None
    for i, (size, tcfg) in enumerate(candidates):
        label = f"teacher d{size.dim} L{size.layers} drop{size.dropout} wd{tcfg.weight_decay}"
        f, model = fit(label, data, split, size, max_len, tcfg, say=say)
        fits.append(f)
        say(f"{label}: valid {f.valid_ndcg:.4f} (epoch {f.best_epoch}/{f.epochs_run}), {f.seconds:.0f} s")
        if best < 0 or f.valid_ndcg > fits[best].valid_ndcg:
            best, best_model = i, model
    assert best_model is not None
    return fits, best, best_model


def write_json_md(path: Path, doc: dict[str, Any], md: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # name + suffix, not with_suffix: a stem may hold a dot ("alpha0.8")
    path.parent.joinpath(path.name + ".json").write_text(json.dumps(doc, indent=2, default=_plain) + "\n")
    path.parent.joinpath(path.name + ".md").write_text(md + "\n")


def _plain(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)


def fmt_ci(c: dict[str, float | None], key: str = "diff") -> str:
    if key == "diff":
        return f"{c['diff']:+.4f} [{c['diff_lo']:+.4f}, {c['diff_hi']:+.4f}]"
    return format_ratio(c)


def fits_table(fits: Sequence[Fit], reference: Fit | None = None, teacher: Fit | None = None) -> str:
    head = "| model | params | valid NDCG@10 | test NDCG@10 | test R@10 | best epoch / run | train s |"
    sep = "|---|---:|---:|---:|---:|---:|---:|"
    if reference is not None:
        head += f" test NDCG − {reference.label} [95% CI] |"
        sep += "---:|"
    if teacher is not None:
        head += " test NDCG / teacher [95% CI] |"
        sep += "---:|"
    lines = [head, sep]
    for f in fits:
        row = (f"| {f.label} | {f.params / 1e3:.1f}k | {f.valid_ndcg:.4f} | {f.test_ndcg:.4f} | {f.test_recall:.4f} | "
               f"{f.best_epoch} / {f.epochs_run} | {f.seconds:.0f} |")
        if reference is not None:
            row += " - |" if f is reference else f" {fmt_ci(compare(f, reference))} |"
        if teacher is not None:
            row += " - |" if f is teacher else f" {fmt_ci(compare(f, teacher), 'ratio')} |"
        lines.append(row)
    return "\n".join(lines)


def recs_config_with(base: RecsConfig, teacher: ModelSize, teacher_train: TrainConfig) -> RecsConfig:
    return dataclasses.replace(base, teacher=teacher, teacher_train=teacher_train)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
