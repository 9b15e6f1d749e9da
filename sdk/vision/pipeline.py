"""The search-by-image job end to end: data, teacher (cached), teacher embeddings (cached), students, bundles,
evaluation of every artifact through the runtime, parity across formats and single-image latency per backend."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import SearchPipelineConfig, fast_config

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelRow:
    """Quality of one eager model in one search setting (query model -> catalog model)."""

    name: str
    setting: str
    params: int
    recall_at_1: float
    recall_at_10: float
    map_at_10: float


@dataclass(frozen=True)
class ArtifactRow:
    """One exported artifact evaluated through the runtime on its own backend."""

    bundle: str
    artifact: str
    backend: str
    precision: str
    bytes: int
    recall_at_10: float
    map_at_10: float
    symmetric_recall_at_10: float | None
    p50_ms: float
    recipe: str | None = None


@dataclass(frozen=True)
class SearchDemoSummary:
    """What the demo measured; ``str()`` gives the table."""

    models: tuple[ModelRow, ...]
    artifacts: tuple[ArtifactRow, ...]
    parity: dict[str, float]
    speedup: dict[str, float]
    targets: dict[str, Any]
    timings: dict[str, float]
    cached: dict[str, bool]
    bundles: dict[str, str]
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        lines = ["| model | search | params | R@1 | R@10 | mAP@10 |", "|---|---|---:|---:|---:|---:|"]
        for r in self.models:
            lines.append(f"| {r.name} | {r.setting} | {r.params:,} | {r.recall_at_1:.4f} | {r.recall_at_10:.4f} | "
                         f"{r.map_at_10:.4f} |")
        lines += ["", "| artifact (through the runtime) | backend | bytes | R@10 vs catalog | mAP@10 | R@10 s→s | "
                  "p50 ms (1 image) |", "|---|---|---:|---:|---:|---:|---:|"]
        for a in self.artifacts:
            sym = f"{a.symmetric_recall_at_10:.4f}" if a.symmetric_recall_at_10 is not None else "-"
            name = a.artifact + (f" [{a.recipe}]" if a.recipe else "")
            lines.append(f"| {name} | {a.backend} | {a.bytes:,} | {a.recall_at_10:.4f} | {a.map_at_10:.4f} | {sym} | "
                         f"{a.p50_ms:.3f} |")
        lines.append("")
        lines += [f"- parity: {k} = {v:.3f}" for k, v in self.parity.items()]
        lines += [f"- speed-up of the int8 student over the fp32 teacher on {k}: {v:.1f}x" for k, v in
                  self.speedup.items()]
        lines += [f"- target {k}: {v}" for k, v in self.targets.items()]
        lines.append("- time: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.timings.items())
                     + "; cached: " + ", ".join(f"{k}={v}" for k, v in self.cached.items()))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def run_demo(out: Path, cache: Path | None = None, progress: Progress = print,
             config: SearchPipelineConfig | None = None) -> SearchDemoSummary:
    """The main job on Fashion-MNIST (2 threads): bundles under ``out`` (``student/``, ``teacher/``), the teacher and
    its embeddings cached under ``cache``; writes ``summary.json`` / ``summary.md`` and returns the summary."""
    return run_pipeline(config or SearchPipelineConfig(), Path(out), cache=cache, progress=progress)


def run_fast(out: Path, cache: Path | None = None, progress: Progress = print) -> SearchDemoSummary:
    """The same job at toy scale (:func:`fast_config`), for tests and smoke runs."""
    return run_pipeline(fast_config(), Path(out), cache=cache, progress=progress)


def run_pipeline(cfg: SearchPipelineConfig, out: Path, cache: Path | None = None,
                 progress: Progress = print) -> SearchDemoSummary:
    import torch
    from edgecart.cache import Cache
    from edgecart.data.fashion_mnist import load_fashion_mnist, search_splits

    t_start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vc = Cache(cache, "vision")
    d = cfg.data
    train, test = load_fashion_mnist(d.root)
    sp = search_splits(train, test, queries=d.queries, gallery=d.gallery, train_size=d.train_size, seed=d.seed)
    progress(f"image search: {len(sp.train)} training pictures, catalog {len(sp.gallery)}, queries {len(sp.queries)}")
    timings: dict[str, float] = {}
    cached: dict[str, bool] = {}
    teacher, tinfo = _teacher(cfg, sp.train, vc, timings, cached, progress)
    emb = _teacher_embeddings(cfg, teacher, sp, vc, timings, cached, progress)
    students = _students(cfg, sp, teacher, emb, timings, progress)
    models, student_emb = _model_rows(cfg, sp, teacher, emb, students)
    for r in models:
        progress(f"  {r.name:<34} {r.setting:<24} R@10 {r.recall_at_10:.4f}  mAP@10 {r.map_at_10:.4f}")
    bundles, gates, ref = _bundles(cfg, out, sp, teacher, emb, students, student_emb, models, timings, progress)
    arts, lats, tops = _evaluate_bundles(cfg, bundles, sp, gates, timings, progress)
    parity = _parity(tops)
    speedup = _speedup(lats)
    timings["total_s"] = time.perf_counter() - t_start
    summary = SearchDemoSummary(tuple(models), tuple(arts), parity, speedup,
                                _targets(models, arts, ref, parity, speedup, cfg), timings, cached,
                                {k: str(v) for k, v in bundles.items()}, cfg.to_dict())
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2, default=_json_default) + "\n")
    (out / "summary.md").write_text(summary.table() + "\n")
    return summary


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def _teacher(cfg, train, vc, timings, cached, progress):
    from edgecart.models.vision import LiteTeacher

    from .train import train_teacher

    key = cfg.teacher_key()
    hit = vc.load_state("teacher", key)
    tc = cfg.teacher
    if hit is not None:
        teacher = LiteTeacher(tc.dim, len(train.classes), tc.size, pretrained=False)
        teacher.load_state_dict(hit[0])
        cached["teacher"] = True
        progress(f"teacher: cached {key} (fine-tuned in {hit[1].get('train_s', 0):.0f} s)")
        return teacher.eval(), hit[1]
    data = train
    if tc.train_size is not None and tc.train_size < len(train):
        data = train.take(np.sort(np.random.default_rng(tc.seed).permutation(len(train))[:tc.train_size]))
    progress(f"teacher: fine-tuning EfficientNet-Lite0 at {tc.size}x{tc.size} on {len(data)} pictures, "
             f"{tc.epochs} epoch(s)")
    t0 = time.perf_counter()
    teacher = train_teacher(data, tc, cfg.teacher_preprocessing)
    timings["teacher_train_s"] = time.perf_counter() - t0
    info = {"key": key, "train_s": timings["teacher_train_s"], "config": asdict(tc)}
    vc.save_state("teacher", key, {k: v.contiguous() for k, v in teacher.state_dict().items()}, info)
    cached["teacher"] = False
    return teacher, info


def _teacher_embeddings(cfg, teacher, sp, vc, timings, cached, progress):
    from .train import embed

    key = cfg.embeddings_key()
    hit = vc.load_arrays("embeddings", key)
    if hit is not None and all(len(hit[0][s]) == len(getattr(sp, s)) for s in ("train", "gallery", "queries")):
        cached["teacher_embeddings"] = True
        progress(f"teacher embeddings: cached {key}")
        return hit[0]
    t0 = time.perf_counter()
    emb = {s: embed(teacher, getattr(sp, s).images, cfg.teacher_preprocessing, desc=f"teacher embeds {s}")
           for s in ("train", "gallery", "queries")}
    timings["teacher_embed_s"] = time.perf_counter() - t0
    vc.save_arrays("embeddings", key, emb,
                   {"key": key, "teacher": cfg.teacher_key(), "embed_s": timings["teacher_embed_s"]})
    cached["teacher_embeddings"] = False
    progress(f"teacher embeddings: {sum(len(v) for v in emb.values())} pictures in {timings['teacher_embed_s']:.0f} s")
    return emb


def _students(cfg, sp, teacher, emb, timings, progress):
    import torch

    from .train import train_student

    sc, pre, dim = cfg.student, cfg.student_preprocessing, cfg.teacher.dim
    protos = torch.nn.functional.normalize(teacher.classifier.weight.detach(), dim=1).numpy()
    common = dict(dim=dim)
    distil = dict(teacher_emb=emb["train"], prototypes=protos, proto_scale=teacher.classifier.scale)
    t0 = time.perf_counter()
    out = {}
    progress(f"students: distilled and label-only, {sc.epochs} epoch(s) each")
    out["distilled"] = train_student(sp.train, sc, pre, **common, **distil, desc="student distilled")
    out["labels"] = train_student(sp.train, sc, pre, **common, desc="student labels only")
    if cfg.label_fraction > 0:
        n = len(sp.train)
        mask = np.zeros(n, bool)
        mask[np.random.default_rng(cfg.data.seed + 1).permutation(n)[:max(1, round(cfg.label_fraction * n))]] = True
        progress(f"students: {mask.sum()} labelled pictures ({cfg.label_fraction:.0%}); the distilled one also learns "
                 f"from the teacher on all {n}")
        out["distilled_few"] = train_student(sp.train, sc, pre, **common, **distil, labelled=mask,
                                             desc="student distilled, few labels")
        out["labels_few"] = train_student(sp.train, sc, pre, **common, labelled=mask,
                                          epochs=sc.label_fraction_epochs, desc="student few labels only")
    timings["students_s"] = time.perf_counter() - t0
    return out


def _model_rows(cfg, sp, teacher, emb, students):
    """Quality rows of every eager model, and the distilled student's query and gallery embeddings (for export)."""
    from edgecart.models.vision import embedding_params

    from .metrics import retrieval
    from .train import embed

    ql, gl = sp.queries.labels, sp.gallery.labels
    rows = [_row("teacher EfficientNet-Lite0", "teacher → teacher", embedding_params(teacher),
                 retrieval(emb["queries"], ql, emb["gallery"], gl))]
    labels = {"distilled": "student distilled", "labels": "student labels only",
              "distilled_few": f"student distilled, {cfg.label_fraction:.0%} labels",
              "labels_few": f"student labels only, {cfg.label_fraction:.0%} labels"}
    pre = cfg.student_preprocessing
    distilled = {}
    for k, model in students.items():
        q = embed(model, sp.queries.images, pre)
        g = embed(model, sp.gallery.images, pre)
        if k == "distilled":
            distilled = {"queries": q, "gallery": g}
        p = embedding_params(model)
        rows.append(_row(labels[k], "student → student", p, retrieval(q, ql, g, gl)))
        if k.startswith("distilled"):
            rows.append(_row(labels[k], "student → teacher catalog", p, retrieval(q, ql, emb["gallery"], gl)))
    return rows, distilled


def _row(name, setting, params, r) -> ModelRow:
    return ModelRow(name, setting, int(params), r.recall_at_1, r.recall_at_10, r.map_at_10)


def _bundles(cfg, out, sp, teacher, emb, students, student_emb, models, timings, progress):
    from edgecart.models.vision import embedding_params
    from edgecart.runtime.search import quantize_rows

    from .export import export_search_bundle
    from .metrics import retrieval

    ec = cfg.export
    t0 = time.perf_counter()
    student = students["distilled"]
    spre, tpre = cfg.student_preprocessing, cfg.teacher_preprocessing
    by_teacher = ec.catalog_model == "teacher"
    cat_emb = emb["gallery"] if by_teacher else student_emb["gallery"]
    cat_info = {"model": "teacher EfficientNet-Lite0" if by_teacher else "student", "params":
                embedding_params(teacher if by_teacher else student),
                "preprocessing": asdict(tpre if by_teacher else spre)}
    q8, scales = quantize_rows(cat_emb)
    ref = retrieval(student_emb["queries"], sp.queries.labels, q8, sp.gallery.labels, scales)
    reference = {"recall@1": ref.recall_at_1, "recall@10": ref.recall_at_10, "map@10": ref.map_at_10}
    quality = {"teacher": {}, "student": {}, "student_float_on_int8_catalog": reference,
               "metrics": "hit = same category; Recall@K = share of queries with a hit in the top K; "
                          "mAP@10 = mean AP@10 normalised by min(10, relevant items)"}
    for r in models:
        who = "teacher" if r.name.startswith("teacher") else "student"
        quality[who][f"{r.name} | {r.setting}"] = {"recall@1": r.recall_at_1, "recall@10": r.recall_at_10,
                                                  "map@10": r.map_at_10, "params": r.params}
    rng = np.random.default_rng(cfg.data.seed + 2)
    calib = sp.train.images[rng.permutation(len(sp.train))[:ec.calibration]]
    golden = sp.queries.images[:ec.golden]
    bundles = {}
    progress("bundle: student (fp32 + gated int8), catalog embedded by " + ("the teacher" if by_teacher else
                                                                             "the student"))
    bundles["student"], gates = export_search_bundle(
        out / "student", student, name=cfg.name, version=cfg.version, pre=spre, gallery=sp.gallery,
        catalog_emb=cat_emb, catalog_by="teacher" if by_teacher else "student", catalog_model=cat_info,
        golden_images=golden, cfg=ec, quality=quality, int8=ec.int8, calibration_images=calib,
        query_images=sp.queries.images, query_labels=sp.queries.labels, reference=reference, progress=progress)
    if ec.export_teacher:
        progress("bundle: teacher (fp32, server side; same catalog)")
        bundles["teacher"], _ = export_search_bundle(
            out / "teacher", teacher, name=f"{cfg.name}-teacher", version=cfg.version, pre=tpre, gallery=sp.gallery,
            catalog_emb=emb["gallery"], catalog_by="teacher", catalog_model=cat_info if by_teacher else {
                "model": "teacher EfficientNet-Lite0", "params": embedding_params(teacher)},
            golden_images=golden, cfg=ec, quality={"teacher": quality["teacher"]}, query_images=sp.queries.images,
            query_labels=sp.queries.labels, progress=progress)
    timings["export_s"] = time.perf_counter() - t0
    return bundles, gates, reference


def _evaluate_bundles(cfg, bundles, sp, gates, timings, progress):
    from edgecart.runtime import open_bundle
    from edgecart.runtime.backends import backend_for_format
    from edgecart.runtime.preprocess import preprocess
    from edgecart.runtime.search import ImageSearch

    from .evaluate import evaluate_search, latency

    ec = cfg.export
    t0 = time.perf_counter()
    arts, lats, tops = [], {}, {}
    for bname, path in bundles.items():
        b = open_bundle(path)
        sym = ec.artifact_symmetric_eval and bname == "student"
        for a in b.manifest.artifacts:
            be = backend_for_format(a.format)
            if not be.available():
                progress(f"eval: {a.name}: {be.name} not installed, skipped")
                continue
            s = ImageSearch(b, be.name, threads=ec.latency_threads, artifact=a.name)
            ev = evaluate_search(s, sp.queries.images, sp.queries.labels,
                                 gallery_images=sp.gallery.images if sym else None, desc=f"eval {a.name}")
            lat = latency(s.session, preprocess(sp.queries.images[0], s.preprocessing), ec.latency_runs)
            recipe = (a.quantization or {}).get("recipe") if a.precision == "int8" else None
            arts.append(ArtifactRow(bname, a.name, be.name, a.precision, ev.bytes, ev.catalog.recall_at_10,
                                    ev.catalog.map_at_10, ev.symmetric.recall_at_10 if ev.symmetric else None,
                                    lat.p50_ms, recipe))
            lats[(bname, a.precision, be.name)] = lat.p50_ms
            tops[(bname, a.precision, a.format)] = ev.top10
            progress(f"eval: {a.name:<34} {be.name:<12} R@10 {ev.catalog.recall_at_10:.4f}  p50 {lat.p50_ms:.3f} ms")
    timings["evaluate_s"] = time.perf_counter() - t0
    return arts, lats, tops


def _parity(tops) -> dict[str, float]:
    from .evaluate import same_top10, top10_overlap

    out = {}
    for bname in sorted({k[0] for k in tops}):
        for prec in ("fp32", "int8"):
            group = [v for k, v in sorted(tops.items()) if k[0] == bname and k[1] == prec]
            if len(group) > 1:
                out[f"{bname} {prec}: formats return the same top-10 (as sets)"] = same_top10(group)
                out[f"{bname} {prec}: formats return the same top-10 (same order)"] = same_top10(group, ordered=True)
                out[f"{bname} {prec}: mean top-10 overlap between formats"] = float(np.mean(
                    [top10_overlap(a, b) for i, a in enumerate(group) for b in group[i + 1:]]))
    return out


def _speedup(lats) -> dict[str, float]:
    out = {}
    for (bname, prec, backend), ms in lats.items():
        if bname == "student" and prec == "int8" and ("teacher", "fp32", backend) in lats:
            out[backend] = lats[("teacher", "fp32", backend)] / ms
    return out


def _targets(models, arts, ref, parity, speedup, cfg) -> dict[str, Any]:
    by = {(r.name, r.setting): r for r in models}
    teacher = next(r for r in models if r.name.startswith("teacher"))
    dist = by[("student distilled", "student → student")]
    asym = by[("student distilled", "student → teacher catalog")]
    base = by[("student labels only", "student → student")]
    t = {
        "params ratio student/teacher (<= 0.10)": round(dist.params / teacher.params, 4),
        "distilled R@10 / teacher R@10, student→student (>= 0.97)": round(dist.recall_at_10 / teacher.recall_at_10, 4),
        "distilled R@10 / teacher R@10, asymmetric (>= 0.97)": round(asym.recall_at_10 / teacher.recall_at_10, 4),
        "distilled beats labels-only (R@10, mAP@10)": f"{dist.recall_at_10 > base.recall_at_10}, "
                                                       f"{dist.map_at_10 > base.map_at_10}",
    }
    few = [r for r in models if "labels" in r.name and "%" in r.name and r.setting == "student → student"]
    if len(few) == 2:
        t["few labels: distilled beats labels-only (mAP@10)"] = few[0].map_at_10 > few[1].map_at_10
    drops = {a.artifact: round(ref["recall@10"] - a.recall_at_10, 4) for a in arts
             if a.bundle == "student" and a.precision == "int8"}
    if drops:
        t["int8 R@10 drop vs float student, per artifact (<= 0.01)"] = drops
    agree = [v for k, v in parity.items() if k.startswith("student") and "sets" in k]
    if agree:
        t["formats agree on top-10 (>= 0.95)"] = round(min(agree), 4)
    if speedup:
        t["int8 student vs fp32 teacher speed-up (>= 10x)"] = {k: round(v, 1) for k, v in speedup.items()}
    return t


__all__ = ["ArtifactRow", "ModelRow", "SearchDemoSummary", "fast_config", "run_demo", "run_fast", "run_pipeline"]
