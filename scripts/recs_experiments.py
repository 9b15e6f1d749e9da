"""Recommendations studies: teacher sweep, distillation ablation, quality-vs-size curve (issue 12).

    EDGECART_THREADS=1 .venv/bin/python scripts/recs_experiments.py sweep --dataset movielens-100k
    EDGECART_THREADS=1 .venv/bin/python scripts/recs_experiments.py ablation --dataset movielens-100k
    EDGECART_THREADS=1 .venv/bin/python scripts/recs_experiments.py curve --dataset movielens-100k

Teachers are cached (``--cache``, default ``out/cache``) under the same key the demo uses, so a teacher chosen here
is the demo's teacher when DEMO_CONFIGS names the same settings. Results: ``benchmarks/results/recs/<study>-<data>``
(.json, .md; the curve also .png).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path("benchmarks/results/recs")


def _data(name: str, min_item_count: int = 5):
    from edgecart.recs.pipeline import _load

    return _load(name, min_item_count)


def _teacher(data, split, cfg, cache: Path, say):
    """The demo's teacher for ``cfg`` (cached by the pipeline's key), with its Fit and ``cfg`` with the teacher's
    width chosen (when ``cfg.teacher_dims`` offers several)."""
    import json

    from edgecart.cache import Cache
    from edgecart.models.sasrec import num_params
    from edgecart.recs.experiments import Fit, evaluate
    from edgecart.recs.teacher import fingerprint, model_config, train_teacher

    t0 = time.perf_counter()
    chosen = train_teacher(data, split, cfg, cache, say)
    teacher, seconds, cfg = chosen.model, chosen.seconds, chosen.config
    v, t, r, u = evaluate(teacher, split)
    meta = Cache(cache, "recs").path(f"{data.name}-teacher", fingerprint(data, model_config(data, cfg, "teacher"),
                                                                          cfg.teacher_train), ".json")
    info = json.loads(meta.read_text()) if meta.is_file() else {}
    seconds = info.get("train_s", seconds)
    fit = Fit("teacher", num_params(teacher), v, t, r, info.get("best_epoch", 0), info.get("epochs_run", 0),
              seconds or (time.perf_counter() - t0),
              {"size": dataclasses.asdict(cfg.teacher), "train": dataclasses.asdict(cfg.teacher_train)}, u)
    return fit, teacher, cfg


SWEEPS = {
    # (dim, layers, heads, dropout, weight decay); max epochs, patience and lr below
    "movielens-100k": [(128, 2, 2, 0.5, 0.0), (128, 2, 2, 0.2, 0.0)],
    "instacart": [(128, 2, 2, 0.2, 0.0)],
    "movielens-1m": [(64, 2, 2, 0.2, 0.0)],
}
SWEEP_TRAIN = {"movielens-100k": dict(epochs=40, lr=3e-3, patience=5),
               "instacart": dict(epochs=15, lr=2e-3, patience=3),
               "movielens-1m": dict(epochs=10, lr=2e-3, patience=2)}


def _demo_setup(args: argparse.Namespace, cfg=None):
    """The demo's config for ``args.dataset`` (or ``cfg``), its data and split, its teacher with the teacher's Fit,
    and the students' training: the demo's, with ``args.epochs`` and ``args.patience``."""
    from edgecart.data.sequences import leave_last_out
    from edgecart.recs.pipeline import DEMO_CONFIGS

    cfg = cfg or DEMO_CONFIGS[args.dataset]
    data = _data(args.dataset)
    split = leave_last_out(data)
    tfit, teacher, cfg = _teacher(data, split, cfg, args.cache, print)
    tcfg = dataclasses.replace(cfg.student_train, epochs=args.epochs, patience=args.patience)
    return cfg, data, split, tfit, teacher, tcfg


def sweep(args: argparse.Namespace) -> int:
    from edgecart.data.sequences import leave_last_out
    from edgecart.recs.config import ModelSize, RecsConfig, TrainConfig
    from edgecart.recs.experiments import Fit, fits_table, write_json_md

    data = _data(args.dataset)
    split = leave_last_out(data)
    fits: list[Fit] = []
    for dim, layers, heads, drop, wd in SWEEPS[args.dataset]:
        cfg = RecsConfig(teacher=ModelSize(dim, layers, heads, drop),
                         teacher_train=TrainConfig(weight_decay=wd, **SWEEP_TRAIN[args.dataset]))
        f, _, _ = _teacher(data, split, cfg, args.cache, print)
        f = dataclasses.replace(f, label=f"teacher d{dim} L{layers} dropout {drop} wd {wd}")
        print(f"{f.label}: valid NDCG@10 {f.valid_ndcg:.4f}", flush=True)
        fits.append(f)
        _partial(f"teacher-sweep-{args.dataset}", fits)
    best = max(range(len(fits)), key=lambda i: fits[i].valid_ndcg)
    md = (f"# Teacher sweep, {data.describe()}\n\nChosen on validation NDCG@10: **{fits[best].label}**. "
          f"Training: {SWEEP_TRAIN[args.dataset]} (best validation epoch kept), one torch thread, seed 0.\n\n"
          + fits_table(fits) + f"\n\nCommand: `{_command()}`")
    write_json_md(RESULTS / f"teacher-sweep-{args.dataset}", {"dataset": data.describe(), "chosen": best,
                  "train": SWEEP_TRAIN[args.dataset], "fits": [f.public() for f in fits],
                  "command": _command()}, md)
    print(md)
    return 0


def ablation(args: argparse.Namespace) -> int:
    from edgecart.recs.config import DistillConfig
    from edgecart.recs.experiments import fit, fits_table, write_json_md
    from edgecart.recs.pipeline import DEMO_CONFIGS

    cfg = DEMO_CONFIGS[args.dataset]
    if args.student_dim:
        cfg = dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, dim=args.student_dim))
    cfg, data, split, tfit, teacher, tcfg = _demo_setup(args, cfg)
    base = DistillConfig(top_k=args.top_k, temperature=args.temperature, alpha=0.0)
    variants = [
        ("label-only (no teacher)", None),
        (f"soft top-{args.top_k} T={args.temperature}", dataclasses.replace(base, alpha=args.alpha)),
        ("hint only", dataclasses.replace(base, hint=args.hint)),
        ("PCA init only", dataclasses.replace(base, pca_init=True)),
        ("soft + hint", dataclasses.replace(base, alpha=args.alpha, hint=args.hint)),
        ("soft + hint + PCA init", dataclasses.replace(base, alpha=args.alpha, hint=args.hint, pca_init=True)),
    ]
    short = dataclasses.replace(cfg.student_train, patience=None)
    variants_short = [("soft + hint + PCA init, demo epochs, no early stop",
                       dataclasses.replace(base, alpha=args.alpha, hint=args.hint, pca_init=True))]
    soft_cache: dict = {}
    fits = []
    for label, d in variants:
        f, _ = fit(label, data, split, cfg.student, cfg.max_len, tcfg, teacher=teacher if d else None, distill=d,
                   soft_cache=soft_cache, cache=args.cache)
        fits.append(f)
    for label, d in variants_short:
        f, _ = fit(label, data, split, cfg.student, cfg.max_len, short, teacher=teacher, distill=d,
                   soft_cache=soft_cache)
        fits.append(f)
    ref = fits[0]
    md = (f"# Distillation ablation, {data.describe()}\n\nStudent {dataclasses.asdict(cfg.student)}; teacher "
          f"{dataclasses.asdict(cfg.teacher)} (test NDCG@10 {tfit.test_ndcg:.4f}, valid {tfit.valid_ndcg:.4f}, "
          f"{tfit.params / 1e3:.1f}k params). Students: up to {args.epochs} epochs, early stop after "
          f"{args.patience} without a validation gain. Paired bootstrap over test users (2000 resamples).\n\n"
          + fits_table([*fits, tfit], reference=ref, teacher=tfit) + f"\n\nCommand: `{_command()}`")
    write_json_md(RESULTS / f"ablation-{args.dataset}", {"dataset": data.describe(), "teacher": tfit.public(),
                  "fits": [f.public() for f in fits], "command": _command()}, md)
    print(md)
    return 0


def curve(args: argparse.Namespace) -> int:
    from edgecart.recs.config import DistillConfig, ModelSize
    from edgecart.recs.experiments import compare, fit

    cfg, data, split, tfit, teacher, tcfg = _demo_setup(args)
    rows, soft_cache, done = [], {}, []
    teacher_ms = _latency_ms(teacher, data, split)
    for dim in [int(d) for d in args.dims.split(",")]:
        size = ModelSize(dim, 1, 1, cfg.student.dropout)
        pair = {}
        soft_only = DistillConfig(top_k=args.top_k, temperature=args.temperature, alpha=args.alpha)
        for label, d in (("distilled", soft_only), ("label-only", None)):
            f, model = fit(f"d{dim} {label}", data, split, size, cfg.max_len, tcfg,
                           teacher=teacher if d else None, distill=d, soft_cache=soft_cache, cache=args.cache)
            pair[label] = (f, model)
            done.append(f)
            _partial(f"curve-{args.dataset}", done)
        ms = _latency_ms(pair["distilled"][1], data, split)
        c = compare(pair["distilled"][0], pair["label-only"][0])
        ct = compare(pair["distilled"][0], tfit)
        rows.append({"dim": dim, "params": pair["distilled"][0].params,
                     "params_ratio": pair["distilled"][0].params / tfit.params, "p50_ms": ms,
                     "distilled": pair["distilled"][0].public(), "label_only": pair["label-only"][0].public(),
                     "distilled_minus_label_only": c, "distilled_over_teacher": ct,
                     "ci_distilled": _ci(pair["distilled"][0].user_ndcg),
                     "ci_label_only": _ci(pair["label-only"][0].user_ndcg)})
        _write_curve(args, data, tfit, teacher_ms, rows)
    return 0


def tune(args: argparse.Namespace) -> int:
    """Teachers and students under one budget: every model (teacher candidates, label-only and distilled students)
    gets the same epochs, learning rate and schedule, the best validation epoch kept; the teacher (among the
    candidates and the demo's cached one) and each student's recipe are chosen on validation NDCG@10; test only
    reports, with paired 95% bootstrap intervals and the issue-12 targets marked."""
    from edgecart.data.sequences import leave_last_out
    from edgecart.recs.config import DistillConfig, ModelSize, TrainConfig
    from edgecart.recs.experiments import compare, fit, fits_table, fmt_ci, write_json_md
    from edgecart.recs.pipeline import DEMO_CONFIGS

    data = _data(args.dataset)
    split = leave_last_out(data)
    stem = f"{args.stem}-{args.dataset}"
    tcfg = TrainConfig(epochs=args.epochs, lr=args.lr, schedule=args.schedule, patience=args.patience or None,
                       seed=args.seed)
    fits, teachers = [], []
    if args.with_demo_teacher:
        f, m, _ = _teacher(data, split, DEMO_CONFIGS[args.dataset], args.cache, print)
        teachers.append((dataclasses.replace(f, label="teacher (demo settings) " + _size_label(
            DEMO_CONFIGS[args.dataset].teacher)), m))
        fits.append(teachers[-1][0])
    for spec in filter(None, args.teachers.split(",")):
        dim, layers, heads, drop = spec.split("x")
        size = ModelSize(int(dim), int(layers), int(heads), float(drop))
        t_train = dataclasses.replace(tcfg, epochs=args.teacher_epochs or args.epochs, seed=0)
        f, m = fit(f"teacher {_size_label(size)}", data, split, size, DEMO_CONFIGS[args.dataset].max_len, t_train,
                   cache=args.cache)
        teachers.append((f, m))
        fits.append(f)
        _partial(stem, fits)
    tfit, teacher = max(teachers, key=lambda p: p[0].valid_ndcg)
    print(f"teacher chosen on validation: {tfit.label} ({tfit.valid_ndcg:.4f})", flush=True)
    recipes = {"soft": DistillConfig(top_k=args.top_k, temperature=args.temperature, alpha=args.alpha),
               "soft + hint + PCA init": DistillConfig(top_k=args.top_k, temperature=args.temperature,
                                                       alpha=args.alpha, hint=args.hint, pca_init=True)}
    recipes = {k: v for k, v in recipes.items() if k in args.recipes.split("|")}
    soft_cache: dict = {}
    rows = []
    for dim in [int(d) for d in args.dims.split(",")]:
        size = ModelSize(dim, 1, 1, args.student_dropout)
        lo, _ = fit(f"d{dim} label-only", data, split, size, DEMO_CONFIGS[args.dataset].max_len, tcfg,
                    cache=args.cache)
        fits.append(lo)
        _partial(stem, fits)
        dist = []
        for name, d in recipes.items():
            f, _ = fit(f"d{dim} distilled ({name})", data, split, size, DEMO_CONFIGS[args.dataset].max_len, tcfg,
                       teacher=teacher, distill=d, soft_cache=soft_cache, cache=args.cache)
            fits.append(f)
            dist.append(f)
            _partial(stem, fits)
        if not dist:
            continue
        best = max(dist, key=lambda f: f.valid_ndcg)
        rows.append({"dim": dim, "params": lo.params, "params_ratio": lo.params / tfit.params,
                     "label_only": lo.public(), "distilled": best.public(),
                     "distilled_minus_label_only": compare(best, lo), "distilled_over_teacher": compare(best, tfit),
                     "teacher_minus_label_only": compare(tfit, lo)})
    md = [f"# Teacher and students under one budget, {data.describe()}\n",
          f"Every model: up to {tcfg.epochs} epochs (teacher candidates {args.teacher_epochs or args.epochs}; the "
          f"demo's cached teacher keeps its own settings), lr {tcfg.lr}, "
          f"{tcfg.schedule} schedule, patience {tcfg.patience}, best validation epoch kept, students' seed "
          f"{tcfg.seed} (teachers 0), one torch "
          f"thread. Teacher chosen on validation NDCG@10: **{tfit.label}** ({tfit.params / 1e3:.1f}k params). "
          f"Distilled recipes: top-{args.top_k} soft targets at T={args.temperature}, alpha {args.alpha} (hint "
          f"weight {args.hint}); per size the recipe with the higher validation NDCG@10 is reported. Students: 1 "
          f"block, 1 head, dropout {args.student_dropout}. Paired bootstrap over test users (2000 resamples).\n",
          fits_table(fits), "", "## Targets (issue 12; test figures, choices on validation)\n",
          "| student | params (x teacher) | distilled / teacher [95% CI] | distilled - label-only [95% CI] | "
          "teacher - label-only [95% CI] | >= 95% of teacher at <= 1/4 | beats label-only | teacher beats it |",
          "|---|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        ratio, dl, tl = r["distilled_over_teacher"], r["distilled_minus_label_only"], r["teacher_minus_label_only"]
        ok1 = "reached" if ratio["ratio"] >= 0.95 and r["params_ratio"] <= 0.25 else "NOT reached"
        ok1 += " (interval)" if ratio["ratio_lo"] >= 0.95 else ""
        ok2 = "reached" if dl["diff_lo"] > 0 else "NOT reached"
        ok3 = "yes" if tl["diff"] > 0 else "no"
        ok3 += " (interval)" if tl["diff_lo"] > 0 else ""
        md.append(f"| d{r['dim']}: {r['distilled']['label']} | {r['params'] / 1e3:.1f}k ({r['params_ratio']:.3f}) | "
                  f"{fmt_ci(ratio, 'ratio')} | {fmt_ci(dl)} | {fmt_ci(tl)} | {ok1} | {ok2} | {ok3} |")
    md.append(f"\nCommand: `{_command()}`")
    write_json_md(RESULTS / stem, {"dataset": data.describe(), "teacher": tfit.public(), "train": dataclasses.asdict(
        tcfg), "fits": [f.public() for f in fits], "rows": rows, "command": _command()}, "\n".join(md))
    print("\n".join(md))
    return 0


#: the last commit whose sdk/recs/train.py had its own training loop (before the shared trainer)
OLD_TRAIN_COMMIT = "b82f835"


def equivalence(args: argparse.Namespace) -> int:
    """The hand-written training loop of OLD_TRAIN_COMMIT against today's (the shared trainer), same student, seed,
    epochs and soft targets: validation NDCG@10 per epoch and the best one, label-only and soft targets + hint."""
    import json

    import torch
    from edgecart.data.sequences import leave_last_out, training_windows
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs import train as new_train
    from edgecart.recs.config import DistillConfig, TrainConfig
    from edgecart.recs.experiments import write_json_md
    from edgecart.recs.pipeline import DEMO_CONFIGS

    old_train = _old_train()
    data = _data(args.dataset)
    split = leave_last_out(data)
    tfit, teacher, cfg = _teacher(data, split, DEMO_CONFIGS[args.dataset], args.cache, print)
    windows, _ = training_windows(split.train, cfg.max_len)
    d = DistillConfig(top_k=args.top_k, temperature=args.temperature, alpha=args.alpha, hint=args.hint)
    tc = TrainConfig(epochs=args.epochs, lr=3e-3)
    rows = []
    for label, dd in (("label-only", None), ("soft + hint", d)):
        for impl, mod in ((f"own loop ({OLD_TRAIN_COMMIT})", old_train), ("shared trainer", new_train)):
            torch.manual_seed(0)
            m = SASRec(SASRecConfig(data.num_items, cfg.max_len, args.student_dim or 16, 1, 1, 2, 0.1))
            kw = {} if dd is None else {"soft": mod.teacher_soft_targets(teacher, windows, dd), "distill": dd}
            log = mod.train(m, split, tc, desc=f"{impl} {label}", **kw)
            rows.append({"implementation": impl, "variant": label, "best_valid_ndcg": max(log.valid_ndcg),
                         "best_epoch": log.best_epoch, "valid_ndcg": list(log.valid_ndcg), "seconds": log.seconds})
            print(json.dumps(rows[-1]), flush=True)
    md = [f"# Shared trainer vs the former hand-written loop, {data.describe()}\n",
          f"Student d{args.student_dim or 16} L1, {args.epochs} epochs, lr 3e-3 constant, seed 0; teacher: the demo's "
          f"({_size_label(cfg.teacher)}); distillation: {dataclasses.asdict(d)}. Validation NDCG@10 (943 users; "
          "the two loops draw batches in different orders, so equal within noise is the expectation).\n",
          "| variant | implementation | best valid NDCG@10 | best epoch |", "|---|---|---:|---:|"]
    md += [f"| {r['variant']} | {r['implementation']} | {r['best_valid_ndcg']:.4f} | {r['best_epoch']} |" for r in rows]
    md.append(f"\nCommand: `{_command()}`")
    write_json_md(RESULTS / f"shared-trainer-equivalence-{args.dataset}", {"rows": rows, "command": _command()},
                  "\n".join(md))
    print("\n".join(md))
    return 0


def _old_train():
    """sdk/recs/train.py as of OLD_TRAIN_COMMIT, imported as the module ``old_train``."""
    import importlib.util
    import subprocess
    import tempfile

    src = subprocess.run(["git", "show", f"{OLD_TRAIN_COMMIT}:sdk/recs/train.py"], check=True, capture_output=True,
                         text=True).stdout
    src = src.replace("from .config import", "from edgecart.recs.config import").replace(
        "from .metrics import", "from edgecart.recs.metrics import")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "old_train.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("old_train", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["old_train"] = mod  # dataclasses look their module up there
        spec.loader.exec_module(mod)
    return mod


def trainer_speed(args: argparse.Namespace) -> int:
    """CPU seconds (this process only, so other load does not count) of one training epoch, former loop against
    the shared trainer, interleaved, ``--repeats`` rounds; medians."""
    import json

    import torch
    from edgecart.data.sequences import leave_last_out, training_windows
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs import train as new_train
    from edgecart.recs.config import DistillConfig, TrainConfig
    from edgecart.recs.pipeline import DEMO_CONFIGS

    old_train = _old_train()
    data = _data(args.dataset)
    split = leave_last_out(data)
    cfg = DEMO_CONFIGS[args.dataset]
    _, teacher, cfg = _teacher(data, split, cfg, args.cache, print)
    windows, _ = training_windows(split.train, cfg.max_len)
    d = DistillConfig(top_k=args.top_k, temperature=args.temperature, alpha=args.alpha, hint=args.hint)
    soft = {m.__name__: m.teacher_soft_targets(teacher, windows, d) for m in (old_train, new_train)}
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for impl, mod in (("own loop", old_train), ("shared trainer", new_train)):
            for label, kw in (("label-only", {}), ("soft + hint", {"soft": soft[mod.__name__], "distill": d})):
                torch.manual_seed(0)
                m = SASRec(SASRecConfig(data.num_items, cfg.max_len, args.student_dim or 16, 1, 1, 2, 0.1))
                t0 = time.process_time()
                mod.train(m, split, TrainConfig(epochs=1, lr=3e-3), **kw)
                times.setdefault(f"{label}, {impl}", []).append(time.process_time() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(json.dumps({"median_cpu_s_per_epoch": med, "all": times, "command": _command()}, indent=1))
    return 0


def _size_label(size) -> str:
    return f"d{size.dim} L{size.layers} H{size.heads} dropout {size.dropout}"


def _write_curve(args: argparse.Namespace, data, tfit, teacher_ms: float, rows: list) -> None:
    """Write the curve's JSON, Markdown and PNG with the sizes done so far."""
    from edgecart.recs.experiments import fmt_ci, write_json_md

    doc = {"dataset": data.describe(), "teacher": {**tfit.public(), "p50_ms": teacher_ms,
                                                    "ci": _ci(tfit.user_ndcg)},
           "rows": rows, "command": _command(),
           "students": f"1 block, 1 head, dropout 0.1; distilled = top-{args.top_k} soft targets at "
                       f"T={args.temperature}, alpha {args.alpha}; up to {args.epochs} epochs, early stop after "
                       f"{args.patience}",
           "latency": "p50 of one query through ONNX Runtime (fp32, 1 thread), "
           "model + int8 item-table top-10, measured on a shared, loaded 2-core machine"}
    md = [f"# Quality vs size, {data.describe()}\n", f"Teacher: {tfit.params / 1e3:.1f}k params, test NDCG@10 "
          f"{tfit.test_ndcg:.4f}, p50 {teacher_ms:.2f} ms. Students: {doc['students']}.\n",
          "| student | params (× teacher) | p50 ms | distilled "
          "NDCG@10 [95% CI] | label-only NDCG@10 [95% CI] | distilled − label-only [95% CI] | distilled / teacher |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cd, cl = r["ci_distilled"], r["ci_label_only"]
        md.append(f"| d{r['dim']} L1 | {r['params'] / 1e3:.1f}k ({r['params_ratio']:.3f}) | {r['p50_ms']:.2f} | "
                  f"{cd[0]:.4f} [{cd[1]:.4f}, {cd[2]:.4f}] | {cl[0]:.4f} [{cl[1]:.4f}, {cl[2]:.4f}] | "
                  f"{fmt_ci(r['distilled_minus_label_only'])} | {fmt_ci(r['distilled_over_teacher'], 'ratio')} |")
    md.append(f"\n{doc['latency']}.\n\nCommand: `{_command()}`")
    write_json_md(RESULTS / f"curve-{args.dataset}", doc, "\n".join(md))
    _plot(doc, RESULTS / f"curve-{args.dataset}.png")
    print("\n".join(md))


def _partial(stem: str, fits: list) -> None:
    """Each finished fit at once (a long study cut short keeps what it measured)."""
    import json

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.partial.json").write_text(json.dumps([f.public() for f in fits], indent=2) + "\n")


def _ci(u: np.ndarray, samples: int = 2000) -> tuple[float, float, float]:
    idx = np.random.default_rng(0).integers(0, u.size, size=(samples, u.size))
    m = u[idx].mean(axis=1)
    return float(u.mean()), float(np.percentile(m, 2.5)), float(np.percentile(m, 97.5))


def _latency_ms(model, data, split, queries: int = 200) -> float:
    """p50 ms of one recommendation through the runtime (ONNX fp32 user-vector model + int8 item table). A seed
    ensemble (the demo's teacher) has no single bundle: its figure is the sum of its members' p50s, each measured
    as its own bundle, i.e. the members run one after another."""
    import tempfile

    if hasattr(model, "members"):
        return sum(_latency_ms(m, data, split, queries) for m in model.members)

    from edgecart.recs.baselines import Popularity
    from edgecart.recs.bundle import median_recommend_ms, write_bundle
    from edgecart.recs.config import RecsConfig
    from edgecart.runtime.recommender import Recommender

    cfg = RecsConfig(max_len=model.cfg.max_len, formats=("onnx",), int8=False, gate_users=8, golden_samples=2,
                     calibration_samples=2)
    with tempfile.TemporaryDirectory() as tmp:
        sub = dataclasses.replace(split, valid_history=split.valid_history[:8], valid_target=split.valid_target[:8],
                                  test_history=split.test_history[:8], test_target=split.test_target[:8],
                                  train=split.train[:8])
        path, _, _ = write_bundle(model, data, sub, cfg, Path(tmp) / "b", popularity=Popularity(split.train,
                                  data.num_items).counts, quality={}, name="curve")
        rec = Recommender(path, backend="onnxruntime", threads=1)
        hist = [data.item_ids[h - 1].tolist() for h in split.test_history[:queries]]
        return median_recommend_ms(rec, hist)


def _plot(doc: dict, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = doc["rows"]
    t = doc["teacher"]
    for ax, key, xlabel in ((axes[0], "params", "parameters"), (axes[1], "p50_ms", "p50 latency, ms (runtime)")):
        x = [r[key] for r in rows]
        for name, color in (("distilled", "C0"), ("label_only", "C1")):
            ci = np.array([r[f"ci_{name}"] for r in rows])
            ax.errorbar(x, ci[:, 0], yerr=[ci[:, 0] - ci[:, 1], ci[:, 2] - ci[:, 0]], marker="o", capsize=3,
                        color=color, label=name.replace("_", "-"))
        tx = t["params"] if key == "params" else t["p50_ms"]
        ax.errorbar([tx], [t["ci"][0]], yerr=[[t["ci"][0] - t["ci"][1]], [t["ci"][2] - t["ci"][0]]], marker="*",
                    markersize=12, color="k", capsize=3, label="teacher")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test NDCG@10 (95% CI)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(doc["dataset"].split(":")[0] + ": quality vs size")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def _command() -> str:
    return "EDGECART_THREADS=1 .venv/bin/python scripts/recs_experiments.py " + " ".join(sys.argv[1:])


def main(argv: list[str] | None = None) -> int:
    from edgecart.threads import set_torch_threads

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="study", required=True)
    for name, fn in (("sweep", sweep), ("ablation", ablation), ("curve", curve), ("tune", tune),
                     ("equivalence", equivalence), ("trainer-speed", trainer_speed)):
        s = sub.add_parser(name)
        s.add_argument("--dataset", required=True, choices=("instacart", "movielens-100k", "movielens-1m"))
        s.add_argument("--cache", type=Path, default=Path("out/cache"))
        s.add_argument("--epochs", type=int, default=60)
        s.add_argument("--patience", type=int, default=6)
        s.add_argument("--top-k", type=int, default=50)
        s.add_argument("--temperature", type=float, default=2.0)
        s.add_argument("--alpha", type=float, default=0.5)
        s.add_argument("--hint", type=float, default=1.0)
        s.add_argument("--dims", default="8,16,32")
        s.add_argument("--student-dim", type=int, default=None, help="ablation: student width (default: the demo's)")
        s.add_argument("--variants", default="", help="ablation: indices of the variants to run (default all)")
        s.add_argument("--repeats", type=int, default=3, help="trainer-speed: interleaved rounds")
        if name == "tune":
            s.add_argument("--teachers", default="128x2x2x0.5", help="teachers: dim x layers x heads x dropout")
            s.add_argument("--stem", default="tune", help="result file stem (<stem>-<dataset>.json/.md)")
            s.add_argument("--teacher-epochs", type=int, default=None)
            s.add_argument("--with-demo-teacher", action="store_true", help="also the demo's cached teacher")
            s.add_argument("--lr", type=float, default=3e-3)
            s.add_argument("--schedule", default="cosine", choices=("constant", "cosine"))
            s.add_argument("--student-dropout", type=float, default=0.1)
            s.add_argument("--seed", type=int, default=0, help="students' seed (teacher candidates keep seed 0)")
            s.add_argument("--recipes", default="soft|soft + hint + PCA init", help="'|'-separated")
        s.set_defaults(func=fn)
    args = p.parse_args(argv)
    set_torch_threads()
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
