"""The recommendations main job: per data set, baselines → teacher → distilled and plain students → bundle.

``run_demo`` runs Instacart and MovieLens-100K and returns (and prints through ``progress``) one table of models ×
data sets with Recall@10 / NDCG@10 on the test targets, parameters, and every exported artifact measured through
the runtime.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgecart.cache import Cache
from edgecart.config import ConfigError
from edgecart.data.sequences import SequenceData, Split, leave_last_out
from edgecart.models.sasrec import SASRec, SASRecEnsemble, num_params
from edgecart.runtime.buy_again import BuyAgain
from edgecart.runtime.item_to_item import ItemToItem

from .baselines import CoOccurrence, Popularity
from .bundle import ArtifactRow, write_bundle
from .config import RecsConfig
from .metrics import evaluate_scores, format_ratio, paired_bootstrap, rank_metrics, target_ranks, user_ndcg
from .teacher import _with_width, fingerprint, model_config, teacher_key, train_teacher
from .train import eager_scores, pca_init, teacher_soft_targets, train, training_split

Progress = Callable[[str], None] | None


def _load(name: str, min_item_count: int) -> SequenceData:
    if name == "instacart":
        from edgecart.data.instacart import load_instacart

        return load_instacart(min_item_count=min_item_count)
    if name == "movielens-100k":
        from edgecart.data.movielens import load_movielens_100k

        return load_movielens_100k(min_item_count=min_item_count)
    if name == "movielens-1m":
        from edgecart.data.movielens import load_movielens_1m

        return load_movielens_1m(min_item_count=min_item_count)
    raise ValueError(f"unknown data set {name!r}; known: {(*DATASETS, 'movielens-1m')}")


#: the demo's data sets; MovieLens-1M is loadable too (a longer, documented command, not in the demo)
DATASETS = ("instacart", "movielens-100k")


@dataclass(frozen=True)
class ModelRow:
    model: str
    params: int | None
    recall: float
    ndcg: float
    valid_ndcg: float
    train_seconds: float | None = None
    user_ndcg: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)  # per test user
    ndcg_unseen: float | None = None  # test NDCG@10 with the user's seen items excluded (the runtime's default)
    recall_unseen: float | None = None
    user_ndcg_unseen: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class DatasetResult:
    dataset: str
    description: str
    models: tuple[ModelRow, ...]
    artifacts: tuple[ArtifactRow, ...]
    bundle: Path | None
    exported: str
    table_bytes: dict[str, int]
    seconds: float
    blend: float | None = None  # the shipped blend of the student with the item-to-item table (None: student alone)
    buy_again: tuple[float, float] | None = None  # the shipped buy-again prior's (weight, decay); None: none
    teacher_dim: int | None = None  # the width of the teacher's members (chosen on validation among several)
    teacher_widths: dict[int, float] = dataclasses.field(default_factory=dict)  # width -> its first member's valid

    def model(self, name: str) -> ModelRow:
        for m in self.models:
            if m.model == name:
                return m
        raise KeyError(f"no model {name!r}; have {[m.model for m in self.models]}")


@dataclass(frozen=True)
class RecsSummary:
    results: tuple[DatasetResult, ...]
    seconds: float

    def table(self) -> str:
        """Markdown: models × data sets (test Recall@10 / NDCG@10), then every artifact through the runtime."""
        names = [r.dataset for r in self.results]
        lines = ["| model | " + " | ".join(f"{n} params | {n} R@10 | {n} NDCG@10 | {n} NDCG@10 exclude_seen"
                                          for n in names) + " |",
                 "|---|" + "---:|---:|---:|---:|" * len(names)]
        order = list(dict.fromkeys(m.model for r in self.results for m in r.models))
        for model in order:
            cells = []
            for r in self.results:
                m = next((x for x in r.models if x.model == model), None)
                if m is None:  # e.g. no blend shipped for this data set
                    cells += ["-"] * 4
                    continue
                cells += [_fmt_params(m.params), f"{m.recall:.4f}", f"{m.ndcg:.4f}",
                          "-" if m.ndcg_unseen is None else f"{m.ndcg_unseen:.4f}"]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines += ["", "Paired bootstrap over test users (2000 resamples), NDCG@10: a − b and a / b with 95% intervals",
                  "", "| data set | a vs b | a − b [95% CI] | a / b [95% CI] |", "|---|---|---:|---:|"]
        for r in self.results:
            for pair, c in compare_models(r.models).items():
                lines.append(f"| {r.dataset} | {pair} | {c['diff']:+.4f} [{c['diff_lo']:+.4f}, {c['diff_hi']:+.4f}] | "
                             f"{format_ratio(c)} |")
        lines += ["", "Artifacts: the exported student's user-vector model, scored against the bundle's int8 item "
                  "table (and blended with its item-to-item table where the bundle ships one) through the runtime "
                  "(test users; NDCG@10 without / with exclude_seen; p50 of one Recommender.recommend call, "
                  "measured on whatever load the machine had)", "",
                  "| data set | artifact (exported student) | backend | model bytes | R@10 | NDCG@10 | Δ NDCG vs fp32 "
                  "| NDCG@10 exclude_seen | cosine vs eager | p50 ms |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.results:
            fp32 = {a.format: a.ndcg for a in r.artifacts if a.precision == "fp32"}
            for a in r.artifacts:
                cos = f"{a.cosine:.5f}" if a.cosine is not None else "-"
                delta = f"{a.ndcg - fp32[a.format]:+.4f}" if a.precision != "fp32" and a.format in fp32 else "-"
                unseen = "-" if a.ndcg_unseen is None else f"{a.ndcg_unseen:.4f}"
                ms = "-" if a.p50_ms is None else f"{a.p50_ms:.3f}"
                lines.append(f"| {r.dataset} | {a.artifact} | {a.backend} | {a.bytes} | {a.recall:.4f} | "
                             f"{a.ndcg:.4f} | {delta} | {unseen} | {cos} | {ms} |")
        lines.append("")
        for r in self.results:
            t = r.table_bytes
            shipped = r.exported if r.blend is None else f"{r.exported} + item-to-item, blend {r.blend:g}"
            if r.buy_again is not None:
                shipped += f" + buy again, weight {r.buy_again[0]:g}, decay {r.buy_again[1]:g}"
            if r.teacher_widths:
                tried = ", ".join(f"{d}-d {v:.4f}" for d, v in r.teacher_widths.items())
                lines.append(f"{r.dataset}: teacher members {r.teacher_dim}-d, chosen on validation NDCG@10 of "
                             f"each width's first member ({tried})")
            lines.append(f"{r.description}; exported: {shipped}; the item table is stored once, "
                         f"as int8 rows + per-row scales: {t['int8_bytes']} B (fp32 would be {t['fp32_bytes']} B); "
                         f"{r.seconds:.0f} s")
        lines.append(f"total: {self.seconds:.0f} s")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _fmt_params(p: int | None) -> str:
    return "-" if p is None else f"{p / 1e3:.1f}k"


def run_dataset(data: SequenceData, cfg: RecsConfig, out: Path | None, cache: Path | None = None,
                progress: Progress = print, metadata: list[dict[str, Any]] | None = None) -> DatasetResult:
    """Everything for one data set — the one path of ``edgecart build recommendations`` and of the demo: baselines,
    teacher (cached), distilled and label-only students, export of the student chosen on validation, runtime
    evaluation. The bundle goes to ``out`` (skipped when ``out`` is None)."""
    from edgecart.threads import set_torch_threads

    check_student_size(data, cfg)
    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    threads = set_torch_threads(cfg.threads)
    say(f"{data.describe()}; {threads} torch thread(s)")
    split = leave_last_out(data)
    rows: list[ModelRow] = []

    pop = Popularity(split.train, data.num_items)
    cooc = CoOccurrence(split.train, data.num_items, window=cfg.cooc_window)
    for label, base in (("popularity", pop), ("co-occurrence", cooc)):
        rows.append(_row(label, None, base.scores(split.test_history), base.scores(split.valid_history), split))
    rows.append(_buy_again_row(data.num_items + 1, cfg, split))

    chosen = train_teacher(data, split, cfg, cache, progress)
    teacher, teacher_s, cfg = chosen.model, chosen.seconds, chosen.config  # cfg: the teacher's width now chosen
    scores = {"teacher (SASRec)": _scores(teacher, split)}  # (validation, test), computed once per model
    rows.append(_model_row("teacher (SASRec)", teacher, scores["teacher (SASRec)"], split, teacher_s))

    scfg = model_config(data, cfg, "student")
    ratio = num_params(SASRec(scfg)) / num_params(teacher)  # an ensemble teacher: all its members
    if ratio > cfg.max_student_ratio:  # only where validation chose a width that check_student_size let through
        raise ConfigError(f"student has {ratio:.2f} of the {cfg.teacher.dim}-d teacher's parameters, chosen on "
                          f"validation among teacher_dims {list(cfg.teacher_dims)}, above max_student_ratio "
                          f"{cfg.max_student_ratio}; {_SHRINK}")
    students = {}
    store = Cache(cache, "recs")
    tkey = teacher_key(data, cfg)
    for label in ("student, distilled", "student, no distillation"):
        distil = label == "student, distilled"
        h = hashlib.sha256(json.dumps([fingerprint(data, scfg, cfg.student_train), label,
                                       dataclasses.asdict(cfg.distill) if distil else None,
                                       tkey if distil else None], sort_keys=True).encode()).hexdigest()[:16]
        name = f"{data.name}-{'student-distilled' if distil else 'student-plain'}"
        student = SASRec(scfg)
        hit = store.load_state(name, h)
        if hit is not None:
            student.load_state_dict(hit[0])
            student.eval()
            say(f"{data.name}: {label} loaded from {store.path(name, h, '.pt')}")
            seconds = None
        else:
            torch.manual_seed(cfg.student_train.seed)
            student = SASRec(scfg)
            kw: dict[str, Any] = {}
            if distil:
                if cfg.distill.pca_init:
                    pca_init(student, teacher)
                if cfg.distill.alpha > 0 or cfg.distill.hint > 0:
                    from edgecart.data.sequences import training_windows

                    windows, _ = training_windows(training_split(split, cfg.student_train).train, cfg.max_len)
                    soft = teacher_soft_targets(teacher, windows, cfg.distill,
                                                exclude_seen=cfg.student_train.exclude_seen)
                    kw = {"soft": soft, "distill": cfg.distill}
            log = train(student, split, cfg.student_train, desc=f"{data.name} {label}", progress=progress, **kw)
            seconds = log.seconds
            store.save_state(name, h, student.state_dict(), {"train_s": log.seconds, "best_epoch": log.best_epoch,
                                                             "epochs_run": len(log.losses)})
        students[label] = student
        scores[label] = _scores(student, split)
        rows.append(_model_row(label, student, scores[label], split, seconds))

    base = blend_table(cooc, cfg)
    exported, i2i, blend_valid = _choose_export({k: scores[k][0] for k in students}, base, cfg, split)
    if base is not None:
        t_blend, t_valid = _best_blend(scores["teacher (SASRec)"][0], base, cfg, split)
        rows.append(_blend_row(TEACHER_BLEND, num_params(teacher), t_blend, scores["teacher (SASRec)"], split))
        say(f"{data.name}: teacher + item-to-item, blend {t_blend.blend:g} chosen on validation "
            f"(NDCG@10 {t_valid:.4f})")
    if i2i is not None:
        rows.append(_blend_row(STUDENT_BLEND, num_params(students[exported]), i2i, scores[exported], split))
    say(f"{data.name}: exported {exported}" + (f" + item-to-item ({i2i.items.size} neighbours), blend "
                                                f"{i2i.blend:g}" if i2i is not None else " alone")
        + f", chosen on validation (NDCG@10 {blend_valid:.4f})")
    shipped = scores[exported] if i2i is None else tuple(
        i2i.blend_scores(sc, h) for sc, h in zip(scores[exported], (split.valid_history, split.test_history)))
    again, again_valid = _choose_buy_again(shipped[0], cfg, split)
    if again is not None:
        params = num_params(students[exported]) + (0 if i2i is None else int(i2i.items.size))
        rows.append(_row(SHIPPED_AGAIN, params, again.blend_scores(shipped[1], split.test_history),
                         again.blend_scores(shipped[0], split.valid_history), split))
    say(f"{data.name}: buy-again prior " + ("none" if again is None else f"weight {again.weight:g}, decay "
                                                                       f"{again.decay:g}")
        + f", chosen on validation (NDCG@10 {again_valid:.4f})")
    quality = {
        "models_test": {r.model: {"recall@10": r.recall, "ndcg@10": r.ndcg, "params": r.params} for r in rows},
        "models_valid_ndcg@10": {r.model: r.valid_ndcg for r in rows},
        "exported_model": exported, "exported_why": "the student (and blend weight with the item-to-item table) "
                                                    "with the highest validation NDCG@10",
        "blend": None if i2i is None else i2i.blend,
        "buy_again": None if again is None else again.describe(),
        "student_to_teacher_params": ratio, "config": cfg.to_dict(),
        "teacher_width": {"chosen": cfg.teacher.dim,
                          "valid_ndcg@10_first_member": {str(d): v for d, v in chosen.widths.items()}},
        "test_ndcg@10_paired_bootstrap_95": compare_models(rows),
    }
    bundle, arts, catalog = None, [], {"item_embeddings": {"fp32_bytes": 0, "int8_bytes": 0, "saved_bytes": 0}}
    if out is not None:
        bundle, arts, catalog = write_bundle(students[exported], data, split, cfg, Path(out),
                                             popularity=pop.counts, quality=quality, metadata=metadata,
                                             item_to_item=i2i, buy_again=again,
                                             name=f"recs-{data.name}", progress=progress)
        say(f"{data.name}: bundle {bundle}")
    emb = catalog["item_embeddings"]
    table = {k: int(emb[k]) for k in ("fp32_bytes", "int8_bytes", "saved_bytes")}
    return DatasetResult(data.name, data.describe(), tuple(rows), tuple(arts), bundle, exported, table,
                         time.perf_counter() - t0, None if i2i is None else i2i.blend,
                         None if again is None else (again.weight, again.decay), cfg.teacher.dim,
                         chosen.widths)


_SHRINK = ("shrink the student ([student] dim or layers), widen the teacher ([teacher] dim, teacher_dims or "
           "teacher_seeds) or raise max_student_ratio")


def _count_params(data: SequenceData, cfg: RecsConfig, which: str) -> int:
    with torch.device("meta"):  # sizes only: no memory, no initialisation
        return num_params(SASRec(model_config(data, cfg, which)))


def check_student_size(data: SequenceData, cfg: RecsConfig) -> None:
    """Refuse, before anything trains, a student above ``cfg.max_student_ratio`` of the teacher's parameters (all
    ``teacher_seeds`` members) at every width the teacher may take (``teacher_dims``, else ``teacher.dim``): a
    :class:`~edgecart.config.ConfigError` that says the fix. Where only some widths are too narrow they are still
    tried; the limit is checked again against the width validation chooses."""
    student = _count_params(data, cfg, "student")
    ratios = {d: student / (cfg.teacher_seeds * _count_params(data, _with_width(cfg, d), "teacher"))
              for d in cfg.teacher_dims or (cfg.teacher.dim,)}
    if min(ratios.values()) > cfg.max_student_ratio:
        each = ", ".join(f"{r:.2f} ({d}-d teacher)" for d, r in ratios.items())
        members = f"{cfg.teacher_seeds} member{'s' if cfg.teacher_seeds > 1 else ''}"
        raise ConfigError(f"the student would hold {each} of the teacher's parameters ({members}), above "
                          f"max_student_ratio {cfg.max_student_ratio}; {_SHRINK}")


#: model rows of the blends with the item-to-item table (weights chosen on validation)
STUDENT_BLEND = "shipped: student + item-to-item"
TEACHER_BLEND = "teacher + item-to-item"
#: the baseline that ranks the shopper's own items by decayed count, and the shipped scorer with that prior added
BUY_AGAIN = "buy again"
SHIPPED_AGAIN = "shipped: + buy again"


def blend_table(cooc: CoOccurrence, cfg: RecsConfig) -> ItemToItem | None:
    """The item-to-item table the blend may ship (``cfg.item_to_item`` neighbours per item; weight still 1.0), or
    None when the blend is off (``item_to_item = 0``)."""
    return cooc.item_to_item(1.0, cfg.item_to_item) if cfg.item_to_item else None


def _best_blend(sv: np.ndarray, i2i: ItemToItem, cfg: RecsConfig, split: Split) -> tuple[ItemToItem, float]:
    """The blend weight of ``cfg.blend_grid`` with the highest validation NDCG@10 of a model's validation scores
    ``sv`` (ties: the larger weight)."""
    best = None
    for w in cfg.blend_grid:
        cand = dataclasses.replace(i2i, blend=w)
        v = evaluate_scores(cand.blend_scores(sv, split.valid_history), split.valid_target)["ndcg@10"]
        if best is None or (v, w) > (best[1], best[0].blend):
            best = (cand, v)
    assert best is not None
    return best


def _choose_export(valid_scores: dict[str, np.ndarray], base: ItemToItem | None, cfg: RecsConfig,
                   split: Split) -> tuple[str, ItemToItem | None, float]:
    """The student to export (by label, from each student's validation scores) and its blend with the item-to-item
    table ``base`` (None: the student alone), jointly chosen on validation NDCG@10; ties go to the distilled
    student. Without ``base`` only the student is chosen."""
    if base is None:
        valid = {k: evaluate_scores(sv, split.valid_target)["ndcg@10"] for k, sv in valid_scores.items()}
        best = max(valid, key=lambda k: (valid[k], k == "student, distilled"))
        return best, None, valid[best]
    picks = {k: _best_blend(sv, base, cfg, split) for k, sv in valid_scores.items()}
    best = max(picks, key=lambda k: (picks[k][1], k == "student, distilled"))
    i2i, v = picks[best]
    return best, (None if i2i.blend >= 1.0 else i2i), v


def _scores(model: SASRec | SASRecEnsemble, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """The eager model's (validation, test) scores."""
    return eager_scores(model, split.valid_history), eager_scores(model, split.test_history)


def _buy_again_row(columns: int, cfg: RecsConfig, split: Split) -> ModelRow:
    """The buy-again baseline alone, its decay chosen on validation from ``cfg.buy_again_decays``."""
    def valid(d: float) -> float:
        return evaluate_scores(BuyAgain(1.0, d).log_probs(split.valid_history, columns), split.valid_target)["ndcg@10"]

    best = max(cfg.buy_again_decays, key=lambda d: (valid(d), d))
    prior = BuyAgain(1.0, best)
    return _row(BUY_AGAIN, None, prior.log_probs(split.test_history, columns),
                prior.log_probs(split.valid_history, columns), split)


def _choose_buy_again(sv: np.ndarray, cfg: RecsConfig, split: Split) -> tuple[BuyAgain | None, float]:
    """The buy-again prior (weight, decay from ``cfg``'s grids) added to the shipped scorer's validation scores
    ``sv`` with the highest validation NDCG@10 (ties: the smaller weight, then the larger decay); None when weight 0
    (the scorer alone) wins."""
    best: tuple[float, float, float] | None = None
    for d in cfg.buy_again_decays:
        for w in cfg.buy_again_weights:
            v = evaluate_scores(BuyAgain(w, d).blend_scores(sv, split.valid_history), split.valid_target)["ndcg@10"]
            if best is None or (v, -w, d) > (best[0], -best[1], best[2]):
                best = (v, w, d)
    assert best is not None
    v, w, d = best
    return (BuyAgain(w, d) if w > 0 else None), v


def _blend_row(label: str, params: int, i2i: ItemToItem, scores: tuple[np.ndarray, np.ndarray],
               split: Split) -> ModelRow:
    """The row of a model's (validation, test) ``scores`` blended with ``i2i``; its parameters count the table."""
    valid, test = scores
    return _row(label, params + int(i2i.items.size), i2i.blend_scores(test, split.test_history),
                i2i.blend_scores(valid, split.valid_history), split)


def _model_row(label: str, model: SASRec | SASRecEnsemble, scores: tuple[np.ndarray, np.ndarray], split: Split,
               seconds: float | None) -> ModelRow:
    valid, test = scores
    return _row(label, num_params(model), test, valid, split, seconds)


def _row(label: str, params: int | None, test_scores: np.ndarray, valid_scores: np.ndarray, split: Split,
         seconds: float | None = None) -> ModelRow:
    ranks = target_ranks(test_scores, split.test_target)
    test = rank_metrics(ranks)
    valid = evaluate_scores(valid_scores, split.valid_target)
    unseen_ranks = target_ranks(test_scores, split.test_target, exclude=split.test_history)
    unseen = rank_metrics(unseen_ranks)
    return ModelRow(label, params, test["recall@10"], test["ndcg@10"], valid["ndcg@10"], seconds, user_ndcg(ranks),
                    unseen["ndcg@10"], unseen["recall@10"], user_ndcg(unseen_ranks))


#: The paired comparisons the summary reports (a, b): the issue's targets are judged on these with their CIs.
COMPARISONS = ((SHIPPED_AGAIN, BUY_AGAIN), (SHIPPED_AGAIN, STUDENT_BLEND), (SHIPPED_AGAIN, "student, distilled"),
               (SHIPPED_AGAIN, "student, no distillation"), (BUY_AGAIN, "popularity"),
               (STUDENT_BLEND, "co-occurrence"), (STUDENT_BLEND, "popularity"),
               (STUDENT_BLEND, "student, no distillation"), (STUDENT_BLEND, "student, distilled"),
               (TEACHER_BLEND, "co-occurrence"), (TEACHER_BLEND, "student, no distillation"),
               (TEACHER_BLEND, "teacher (SASRec)"), (STUDENT_BLEND, TEACHER_BLEND),
               ("student, distilled", "teacher (SASRec)"), ("student, distilled", "student, no distillation"),
               ("teacher (SASRec)", "student, no distillation"),
               ("student, distilled", "co-occurrence"), ("student, distilled", "popularity"),
               ("student, no distillation", "popularity"),
               ("teacher (SASRec)", "co-occurrence"),
               ("student, no distillation", "co-occurrence"), ("co-occurrence", "popularity"))


def compare_models(models: tuple[ModelRow, ...] | list[ModelRow],
                   samples: int = 2000) -> dict[str, dict[str, float | None]]:
    """Paired bootstrap (over test users) of the test NDCG@10 difference and ratio for each pair in COMPARISONS
    (the ratio None where b's NDCG@10 is 0: see :func:`edgecart.recs.metrics.paired_bootstrap`)."""
    by = {m.model: m for m in models}
    out = {}
    for a, b in COMPARISONS:
        if a in by and b in by and by[a].user_ndcg is not None and by[b].user_ndcg is not None:
            out[f"{a} vs {b}"] = paired_bootstrap(by[a].user_ndcg, by[b].user_ndcg, samples=samples)
    return out


def _recipe() -> RecsConfig:
    from .build import recipe

    return recipe()


#: The demo's settings per data set (see README for the measured table and time): the validated recipe of rounds 3
#: to 7 (benchmarks/results/recs/README.md), the same as `edgecart build recommendations`' defaults: a teacher of
#: three one-block SASRecs (seeds 0-2), 32-d or 60-d as validation prefers, a 16-d student, top-10 soft targets at
#: T=1. Instacart used to keep an
#: older 128-d two-block teacher at 15 epochs with top-50 soft targets at T=2, never compared there on validation;
#: round 5 measured the recipe on Instacart itself (teacher valid NDCG@10 0.1269; its soft targets beat top-100 at
#: T=2 on validation, 0.0799 against 0.0577).
DEMO_CONFIGS: dict[str, RecsConfig] = {
    "instacart": _recipe(),
    "movielens-100k": _recipe(),
}


def run_demo(out: Path, cache: Path | None = None, progress: Progress = print,
             configs: Mapping[str, RecsConfig] | None = None,
             datasets: tuple[str, ...] = DATASETS) -> RecsSummary:
    """The recommendations build (:func:`edgecart.recs.build.build`, the path of ``edgecart build
    recommendations``) on Instacart and MovieLens-100K: ``out/<data set>/bundle`` and its report, then one summary
    of both in ``out``."""
    from .build import build
    from .report import plot_summary

    t0 = time.perf_counter()
    configs = dict(DEMO_CONFIGS if configs is None else configs)
    results = []
    for name in datasets:
        if name not in configs:
            raise ValueError(f"no configuration for data set {name!r}; have {sorted(configs)}")
        data = _load(name, configs[name].min_item_count)
        results.append(build(data, configs[name], Path(out) / name, cache=cache, progress=progress))
    summary = RecsSummary(tuple(results), time.perf_counter() - t0)
    write_summary(summary, Path(out))
    plot_summary(summary, Path(out) / "summary.png")
    return summary


def write_summary(summary: RecsSummary, out: Path, notes: tuple[str, ...] = ()) -> None:
    """``out/summary.md`` (the table) and ``out/summary.json`` (every figure, without per-user arrays)."""
    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                    if not f.name.startswith("user_ndcg")}
        if isinstance(obj, (list, tuple)):
            return [plain(v) for v in obj]
        if isinstance(obj, dict):
            return {str(k): plain(v) for k, v in obj.items()}
        if isinstance(obj, (np.floating, np.integer)):
            return obj.item()
        return str(obj) if isinstance(obj, Path) else obj

    out.mkdir(parents=True, exist_ok=True)
    doc = {"seconds": summary.seconds, "results": plain(summary.results),
           "comparisons": {r.dataset: compare_models(r.models) for r in summary.results}}
    doc["notes"] = list(notes)
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "summary.md").write_text("\n\n".join([*notes, summary.table()]) + "\n")
