"""The text main job: MiniLM teacher → reduced-vocabulary student distilled into its space (and the same student on
labels only) → linear routing heads → a ``text_search`` bundle with int8 through the gate → timing.

Every choice (probe weight decay, which student ships, which model embeds the catalog, int8 recipe) is made on the
validation split; the test split only reports, with 95% bootstrap intervals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgecart.cache import Cache
from edgecart.data.reviews import (
    LEVELS,
    ProductText,
    TextSplit,
    load_grocery_descriptions,
    load_reviews,
    stratified_split,
)
from edgecart.models.text import TextEncoder, load_minilm, minilm_dir, num_params
from edgecart.recs.metrics import paired_bootstrap
from edgecart.runtime.manifest import TextPreprocessing
from edgecart.runtime.text import TextTokenizer

from .bundle import ArtifactRow, CatalogTexts, EvalSet, write_text_bundle
from .config import TextConfig
from .evaluate import mean_ci, retrieval_per_query
from .train import embed, fit_probe, make_student, train_student, trainer_key
from .vocab import reduce_tokenizer

Progress = Callable[[str], None] | None
TEACHER = "teacher (all-MiniLM-L6-v2)"
DISTILLED = "student, distilled"
LABELS_ONLY = "student, labels only"


def _key(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, (list, tuple)) and p and isinstance(p[0], str):
            for s in p:
                h.update(s.encode("utf-8", "surrogatepass"))
                h.update(b"\x00")
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


def student_key(label: str, cfg: TextConfig, vocab_texts: Sequence[str], train_ids: Sequence[str]) -> str:
    """Cache key of a trained student: what shapes its weights (not threads, formats or the gate), the trainer
    included."""
    fields = {k: v for k, v in cfg.to_dict().items()
              if k in ("max_len", "train", "valid", "test", "split_seed", "student", "student_train")}
    return _key(label, trainer_key(), fields, list(vocab_texts), list(train_ids))


@dataclass(frozen=True)
class ModelEval:
    """One model's per-query results on the test split, and its validation means."""

    model: str
    params: int
    test: dict[str, np.ndarray]
    valid: dict[str, float]
    seconds: float | None = None

    def means(self) -> dict[str, float]:
        return {k: float(v.mean()) for k, v in self.test.items()}


@dataclass(frozen=True)
class TextSummary:
    description: str
    models: tuple[ModelEval, ...]
    artifacts: tuple[ArtifactRow, ...]
    extra: dict[str, Any]
    bundle: Path | None
    seconds: float

    def model(self, name: str) -> ModelEval:
        for m in self.models:
            if m.model == name:
                return m
        raise KeyError(f"no model {name!r}; have {[m.model for m in self.models]}")

    def table(self) -> str:
        metrics = ("recall@10", "map@10", "department_acc", "class_acc")
        lines = [self.description, "",
                 "Test split, 95% bootstrap intervals (2000 resamples over test messages). Retrieval: each test "
                 "message against the training messages (same-class hit); routing: a linear probe fitted on the "
                 "training split, weight decay chosen on validation.", "",
                 "| model | params | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
        for m in self.models:
            cells = [_ci(mean_ci(m.test[k])) if k in m.test else "-" for k in metrics]
            lines.append(f"| {m.model} | {m.params / 1e6:.2f}M | " + " | ".join(cells) + " |")
        comps = self.extra.get("comparisons", {})
        if comps:
            lines += ["", "| a vs b (test) | metric | a − b [95% CI] |", "|---|---|---:|"]
            for pair, per in comps.items():
                for k, c in per.items():
                    lines.append(f"| {pair} | {k} | {c['diff']:+.4f} [{c['diff_lo']:+.4f}, {c['diff_hi']:+.4f}] |")
        if self.artifacts:
            lines += ["", "| artifact (through the runtime, test) | backend | bytes | R@10 | mAP@10 | dept acc | "
                      "class acc | cosine vs eager |", "|---|---|---:|---:|---:|---:|---:|---:|"]
            for a in self.artifacts:
                t = a.test
                cos = f"{a.cosine:.5f}" if a.cosine is not None else "-"
                lines.append(f"| {a.artifact} | {a.backend} | {a.bytes} | {t['recall@10']:.4f} | {t['map@10']:.4f} "
                             f"| {t['department_acc']:.4f} | {t['class_acc']:.4f} | {cos} |")
        timing = self.extra.get("timing")
        if timing:
            lines += ["", "Latency, tokenize and encode split (1 thread, 64-token texts, interleaved; "
                      + timing["note"] + ")", "", timing["table"], ""]
            for n, sp in timing["speedup_vs_teacher"].items():
                lines.append(f"- teacher fp32 / {n}: {sp['speedup_p50']:.1f}x [{sp['lo']:.1f}, {sp['hi']:.1f}]")
        for key in ("targets", "grocery", "choices", "stage_seconds", "stage_cpu_seconds"):
            if key in self.extra:
                lines += ["", f"{key}: {json.dumps(self.extra[key], default=_plain)}"]
        notes = self.extra.get("notes")
        if notes:
            lines += ["", "Notes on the data:", ""] + [f"- {n}" for n in notes]
        lines.append(f"total: {self.seconds:.0f} s")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _ci(c: dict[str, float]) -> str:
    return f"{c['mean']:.4f} [{c['lo']:.4f}, {c['hi']:.4f}]"


def _plain(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def load_data(cfg: TextConfig) -> tuple[TextSplit, tuple[ProductText, ...]]:
    data = load_reviews()
    split = stratified_split(data, cfg.valid, cfg.test, cfg.train, seed=cfg.split_seed)
    grocery = load_grocery_descriptions() if cfg.catalog_grocery else ()
    return split, grocery


def _parts(split: TextSplit, grocery: Sequence[ProductText]) -> dict[str, tuple[str, ...]]:
    return {"train": split.train.texts, "valid": split.valid.texts, "test": split.test.texts,
            "g_desc": tuple(p.description for p in grocery), "g_title": tuple(p.title for p in grocery)}


def teacher_keys(cfg: TextConfig, split: TextSplit, grocery: Sequence[ProductText]) -> dict[str, str]:
    """The cache keys of the teacher's embeddings of each part (cache entries ``text/teacher-<part>-<key>``)."""
    return {part: _key("minilm-l6-v2", cfg.max_len, list(texts) or ["<empty>"])
            for part, texts in _parts(split, grocery).items()}


def run(cfg: TextConfig, out: Path | None, cache: Path | None = None, progress: Progress = print,
        split: TextSplit | None = None, grocery: Sequence[ProductText] | None = None,
        name: str = "text-reviews") -> TextSummary:
    """The whole job. ``split``/``grocery`` default to the reviews and the grocery descriptions."""
    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}  # process CPU seconds per stage: the work itself, whatever else loads the machine
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    else:
        from edgecart.threads import set_torch_threads

        set_torch_threads()
    if split is None:
        split, grocery = load_data(cfg)
    grocery = tuple(grocery or ())
    say(f"{split.train.describe()}; valid {len(split.valid)}, test {len(split.test)}; grocery {len(grocery)}")
    store = Cache(cache, "text")

    # --- teacher ---------------------------------------------------------------------------------------------
    s, c = time.perf_counter(), time.process_time()
    teacher = load_minilm(max_len=cfg.max_len)
    full_json = (minilm_dir() / "tokenizer.json").read_text(encoding="utf-8")
    pre = TextPreprocessing("tokenizer.json", cfg.max_len)
    full_tok = TextTokenizer(full_json, pre)
    parts = _parts(split, grocery)
    keys = teacher_keys(cfg, split, grocery)
    t_emb: dict[str, np.ndarray] = {}
    teacher_s = 0.0
    for part, texts in parts.items():
        key = keys[part]
        hit = store.load_arrays(f"teacher-{part}", key)
        if hit is not None:
            t_emb[part] = hit[0]["emb"]
            continue
        ids, mask = full_tok.encode_batch(list(texts))
        ts = time.perf_counter()
        t_emb[part] = embed(teacher, ids, mask, cfg.teacher_batch, desc=f"teacher embeds {part}")
        dt = time.perf_counter() - ts
        teacher_s += dt
        store.save_arrays(f"teacher-{part}", key, {"emb": t_emb[part]},
                          {"texts": len(texts), "seconds": dt, "ms_per_text": 1e3 * dt / max(1, len(texts))})
    stages["teacher_embeddings"] = time.perf_counter() - s
    cpu["teacher_embeddings"] = time.process_time() - c
    say(f"teacher embeddings: {stages['teacher_embeddings']:.0f} s ({teacher_s:.0f} s computing)")

    # --- student vocabulary and students ---------------------------------------------------------------------
    s, c = time.perf_counter(), time.process_time()
    vocab_texts = list(split.train.texts) + list(parts["g_desc"]) + list(parts["g_title"])
    small_json, old_ids = reduce_tokenizer(full_json, vocab_texts, cfg.student.min_token_count)
    small_tok = TextTokenizer(small_json, pre)
    tok = {p: small_tok.encode_batch(list(t)) for p, t in parts.items()}
    labels = {p: {lv: getattr(split, p).labels(lv) for lv in LEVELS} for p in ("train", "valid", "test")}
    n_classes = [len(split.train.label_names(lv)) for lv in LEVELS]
    train_x = np.concatenate([tok["train"][0], tok["g_desc"][0], tok["g_title"][0]])
    train_m = np.concatenate([tok["train"][1], tok["g_desc"][1], tok["g_title"][1]])
    train_t = np.concatenate([t_emb["train"], t_emb["g_desc"], t_emb["g_title"]])
    ng = 2 * len(grocery)
    students: dict[str, TextEncoder] = {}
    seconds: dict[str, float | None] = {}
    for label, distill in ((DISTILLED, True), (LABELS_ONLY, False)):
        st = make_student(cfg.student, len(old_ids), cfg.max_len, teacher.cfg.embedding_dim, teacher, old_ids)
        key = student_key(label, cfg, vocab_texts, split.train.ids)
        hit = store.load_state(f"student-{'distilled' if distill else 'labels'}", key)
        if hit is not None:
            st.load_state_dict(hit[0])
            students[label], seconds[label] = st.eval(), None
            say(f"{label}: loaded from the cache")
            continue
        if distill:  # grocery texts join the distillation (no labels: they get the teacher's targets only)
            x, m, temb = train_x, train_m, train_t
            ys = [np.concatenate([labels["train"][lv], np.full(ng, -100, np.int64)]) for lv in LEVELS]
        else:
            x, m, temb = tok["train"][0], tok["train"][1], None
            ys = [labels["train"][lv] for lv in LEVELS]
        log = train_student(st, x, m, ys, n_classes, cfg.student_train, temb, desc=label)
        store.save_state(f"student-{'distilled' if distill else 'labels'}", key, st.state_dict(),
                         {"train_s": log.seconds, "losses": list(log.losses)})
        students[label], seconds[label] = st.eval(), log.seconds
    stages["students"] = time.perf_counter() - s
    cpu["students"] = time.process_time() - c
    ratio = num_params(students[DISTILLED]) / num_params(teacher)
    if ratio > cfg.max_student_ratio:
        raise ValueError(f"student has {ratio:.3f} of the teacher's parameters, above max_student_ratio "
                         f"{cfg.max_student_ratio}; shrink the student or raise the limit")

    # --- evaluation (eager) ----------------------------------------------------------------------------------
    s, c = time.perf_counter(), time.process_time()
    emb: dict[str, dict[str, np.ndarray]] = {TEACHER: t_emb}
    for label, st in students.items():
        emb[label] = {p: embed(st, *tok[p], batch=128, desc=f"{label} embeds {p}") for p in parts}
    probes = {m: {lv: fit_probe(e["train"], labels["train"][lv], e["valid"], labels["valid"][lv], n)
                  for lv, n in zip(LEVELS, n_classes, strict=True)} for m, e in emb.items()}
    gal_labels = split.train.klass
    evals = []
    for m, e in emb.items():
        test = retrieval_per_query(e["test"], labels["test"]["class"], e["train"], gal_labels)
        valid = {k: float(v.mean()) for k, v in
                 retrieval_per_query(e["valid"], labels["valid"]["class"], e["train"], gal_labels).items()}
        for lv in LEVELS:
            p = probes[m][lv]
            test[f"{lv}_acc"] = (p.predict(e["test"]) == labels["test"][lv]).astype(np.float64)
            valid[f"{lv}_acc"] = p.valid_accuracy
        params = num_params(teacher) if m == TEACHER else num_params(students[m])
        evals.append(ModelEval(m, params, test, valid, seconds.get(m)))
    # asymmetric: student queries against the teacher-embedded gallery
    for m in (DISTILLED, LABELS_ONLY):
        test = retrieval_per_query(emb[m]["test"], labels["test"]["class"], t_emb["train"], gal_labels)
        valid = {k: float(v.mean()) for k, v in retrieval_per_query(emb[m]["valid"], labels["valid"]["class"],
                                                                    t_emb["train"], gal_labels).items()}
        evals.append(ModelEval(f"{m} → teacher gallery", num_params(students[m]), test, valid))
    by = {e.model: e for e in evals}
    stages["evaluation"] = time.perf_counter() - s
    cpu["evaluation"] = time.process_time() - c

    grocery_rows = {}
    if grocery:
        coarse = {c: i for i, c in enumerate(sorted({p.coarse for p in grocery}))}
        gl = np.asarray([coarse[p.coarse] for p in grocery])
        for m, e in emb.items():
            r = retrieval_per_query(e["g_title"], gl, e["g_desc"], gl)
            exact = float(np.mean(np.argmax(e["g_title"] @ e["g_desc"].T, axis=1) == np.arange(len(grocery))))
            grocery_rows[m] = {"exact_product@1": exact, "coarse_recall@1": float(r["recall@1"].mean())}

    # --- choices on validation -------------------------------------------------------------------------------
    def vscore(m: str) -> float:
        # the issue's target metrics on validation, plus Recall@10 against a teacher-embedded gallery: the student
        # is meant to live in the teacher's space (a catalog embedded on the server by the teacher stays usable)
        v, asym = by[m].valid, by[f"{m} → teacher gallery"].valid
        return float(np.mean([v["recall@10"], asym["recall@10"], v["department_acc"], v["class_acc"]]))

    exported = max((DISTILLED, LABELS_ONLY), key=lambda m: (vscore(m), m == DISTILLED))
    asym = by[f"{exported} → teacher gallery"].valid
    catalog_by = "teacher" if (asym["recall@10"], asym["map@10"]) > (by[exported].valid["recall@10"],
                                                                       by[exported].valid["map@10"]) else "student"
    choices = {"exported_student": exported,
               "why": "higher mean of validation Recall@10 (own gallery and the teacher's), department and class "
                      "accuracy",
               "valid_score": {m: vscore(m) for m in (DISTILLED, LABELS_ONLY)},
               "catalog_embedded_by": catalog_by,
               "catalog_why": "validation Recall@10 then mAP@10 of student queries against each gallery",
               "probe_weight_decay": {m: {lv: p.weight_decay for lv, p in ps.items()} for m, ps in probes.items()}}
    comparisons = {}
    for a, b in ((DISTILLED, LABELS_ONLY), (DISTILLED, TEACHER), (f"{DISTILLED} → teacher gallery", TEACHER)):
        comparisons[f"{a} vs {b}"] = {k: paired_bootstrap(by[a].test[k], by[b].test[k])
                                      for k in ("recall@10", "map@10", "department_acc", "class_acc")
                                      if k in by[a].test and k in by[b].test}

    # --- bundle ----------------------------------------------------------------------------------------------
    s, c = time.perf_counter(), time.process_time()
    artifacts: list[ArtifactRow] = []
    bundle = None
    student = students[exported]
    src = emb[TEACHER] if catalog_by == "teacher" else emb[exported]
    cat = CatalogTexts(
        ids=list(split.train.ids) + [f"grocery-{p.id}" for p in grocery],
        texts=list(split.train.texts) + [f"{p.title}: {p.description}" for p in grocery],
        labels=[split.train.class_names[c] for c in split.train.klass] + [p.coarse for p in grocery],
        sources=["review"] * len(split.train) + ["grocery"] * len(grocery),
        embeddings=np.concatenate([src["train"], src["g_desc"]]) if grocery else src["train"],
        embedded_by=catalog_by)
    heads = {lv: (probes[exported][lv].weights, probes[exported][lv].bias, split.train.label_names(lv))
             for lv in LEVELS}
    quality = {"models_test": {e.model: {k: mean_ci(v) for k, v in e.test.items()} for e in evals},
               "models_valid": {e.model: e.valid for e in evals}, "choices": choices,
               "comparisons_test": comparisons, "student_to_teacher_params": ratio, "grocery": grocery_rows,
               "config": cfg.to_dict(), "data": {"reviews": "Women's E-Commerce Clothing Reviews (CC0)",
                                                 "grocery": "Grocery Store Dataset descriptions (MIT)"}}
    if out is not None:
        valid_set = EvalSet(*tok["valid"], labels["valid"])
        test_set = EvalSet(*tok["test"], labels["test"])
        bundle, artifacts = write_text_bundle(Path(out) / name, student, small_json, cfg, name=name, catalog=cat,
                                              heads=heads, gallery_labels=gal_labels, gallery_rows=len(split.train),
                                              valid=valid_set, test=test_set, quality=quality, progress=progress,
                                              train=EvalSet(*tok["train"], labels["train"]))
        say(f"bundle: {bundle}")
    stages["bundle"] = time.perf_counter() - s
    cpu["bundle"] = time.process_time() - c

    extra: dict[str, Any] = {"comparisons": comparisons, "choices": choices, "grocery": grocery_rows,
                             "student_to_teacher_params": ratio, "stage_seconds": stages,
                             "stage_cpu_seconds": cpu,
                             "vocab": {"teacher": teacher.cfg.vocab_size, "student": len(old_ids)}}
    desc = (f"{split.train.describe()} (train), {len(split.valid)} valid, {len(split.test)} test; grocery "
            f"{len(grocery)} products; max_len {cfg.max_len}; student {num_params(student) / 1e6:.2f}M params "
            f"({ratio:.3f} of the teacher), vocabulary {len(old_ids)} of {teacher.cfg.vocab_size}")
    return TextSummary(desc, tuple(evals), tuple(artifacts), extra, bundle, time.perf_counter() - t0)


def write_summary(summary: TextSummary, out: Path) -> None:
    """``out/summary.md`` (the tables) and ``out/summary.json`` (every figure, means with intervals)."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {"seconds": summary.seconds, "description": summary.description,
           "models_test": {m.model: {k: mean_ci(v) for k, v in m.test.items()} for m in summary.models},
           "models_valid": {m.model: m.valid for m in summary.models},
           "params": {m.model: m.params for m in summary.models},
           "train_seconds": {m.model: m.seconds for m in summary.models},
           "artifacts": [{**{f.name: getattr(a, f.name) for f in dataclasses.fields(a) if f.name != "per_query"}}
                         for a in summary.artifacts],
           "bundle": str(summary.bundle) if summary.bundle else None, **summary.extra}
    (out / "summary.json").write_text(json.dumps(doc, indent=2, default=_plain) + "\n")
    (out / "summary.md").write_text(summary.table() + "\n")





# --- timing and the demo ---------------------------------------------------------------------------------------

def teacher_bundle(teacher: TextEncoder, max_len: int, cache: Path | None, progress: Progress = None) -> Path:
    """The fp32 teacher as a one-artifact ONNX bundle (task ``generic``) for timing, kept in the cache."""
    from edgecart.exporters import export
    from edgecart.runtime.bundle import open_bundle
    from edgecart.runtime.errors import BundleError

    root = Path(cache) / "text" if cache is not None else Path(".edgecart-tmp")
    dest = root / f"teacher-onnx-{max_len}"
    if dest.is_dir():
        try:
            open_bundle(dest)
            return dest
        except BundleError:
            pass
    if progress:
        progress("exporting the fp32 teacher to ONNX for timing")
    ids = torch.zeros(1, max_len, dtype=torch.long)
    ids[0, :3] = torch.tensor([101, 7592, 102])
    export(teacher.eval(), (ids, (ids != 0).long()), ("onnx",), out=dest, name="minilm-teacher", task="generic",
           overwrite=True)
    return dest


def benchmark(bundle: Path, teacher_dir: Path, full_json: str, texts: Sequence[str], max_len: int,
              rounds: int = 200) -> dict[str, Any]:
    """Tokenize and encode p50 at one thread, 64-token texts: the fp32 teacher (ONNX Runtime) against every student
    artifact of the bundle whose engine is installed, interleaved."""
    from edgecart.benchmarks.text_task import TextModel, markdown, speedup, time_text_models
    from edgecart.runtime import available_backends, load, open_bundle
    from edgecart.runtime.backends import backend_for_format

    sb = open_bundle(bundle)
    pre = sb.manifest.preprocessing
    student_tok = TextTokenizer(sb.read_verified(pre.tokenizer).decode("utf-8"), pre)
    teacher_tok = TextTokenizer(full_json, TextPreprocessing("tokenizer.json", max_len))
    long_texts = [t for t in texts if int(teacher_tok.encode(t)[1].sum()) == max_len][:100] or list(texts)[:100]
    models = {"teacher fp32": TextModel(load(teacher_dir, "onnxruntime", threads=1), teacher_tok)}
    here = set(available_backends())
    for art in sb.manifest.artifacts:
        be = backend_for_format(art.format).name
        if be in here:
            models[f"student {art.precision} {art.format}"] = TextModel(load(sb, be, artifact=art.name, threads=1),
                                                                       student_tok)
    rows = time_text_models(models, long_texts, rounds=rounds)
    speed = {n: speedup(rows, "teacher fp32", n) for n in rows if n != "teacher fp32"}
    for r in rows.values():
        r.pop("samples_ms")
    return {"rows": rows, "speedup_vs_teacher": speed, "table": markdown(rows), "texts": len(long_texts),
            "note": "1 thread per model, interleaved rounds; measured on the machine that ran the demo"}


def targets(summary: TextSummary) -> dict[str, Any]:
    """Each issue target with its figure and whether it is reached (test split; intervals where they apply)."""
    ex = summary.extra
    exported = ex["choices"]["exported_student"]
    shipped = exported if ex["choices"]["catalog_embedded_by"] == "student" else f"{exported} → teacher gallery"
    t, s = summary.model(TEACHER).test, summary.model(shipped).test
    st = summary.model(exported).test
    r10 = paired_bootstrap(s["recall@10"], t["recall@10"])
    out: dict[str, Any] = {
        "student_params_ratio<=0.1": {"value": ex["student_to_teacher_params"],
                                      "reached": ex["student_to_teacher_params"] <= 0.1},
        "recall@10>=0.9*teacher": {"value": r10["ratio"], "ci": [r10["ratio_lo"], r10["ratio_hi"]],
                                   "reached": r10["ratio"] is not None and r10["ratio"] >= 0.9,
                                   "retrieval_as_shipped": shipped},
    }
    for lv in ("department", "class"):
        c = paired_bootstrap(st[f"{lv}_acc"], t[f"{lv}_acc"])
        out[f"{lv}_acc_within_2_points"] = {"diff": c["diff"], "ci": [c["diff_lo"], c["diff_hi"]],
                                            "reached": c["diff"] >= -0.02}
    d, lonly = summary.model(DISTILLED).test, summary.model(LABELS_ONLY).test
    for k in ("recall@10", "map@10", "department_acc", "class_acc"):
        c = paired_bootstrap(d[k], lonly[k])
        out[f"distilled_beats_labels_only_{k}"] = {"diff": c["diff"], "ci": [c["diff_lo"], c["diff_hi"]],
                                                   "reached": c["diff_lo"] > 0}
    fp32 = {a.format: a for a in summary.artifacts if a.precision == "fp32"}
    for a in summary.artifacts:
        if a.precision == "int8" and a.format in fp32:
            drops = {k: fp32[a.format].test[k] - a.test[k] for k in a.test}
            out[f"int8_cost<=1_point_{a.format}"] = {"drops": drops, "reached": max(drops.values()) <= 0.01}
    timing = ex.get("timing", {}).get("speedup_vs_teacher", {})
    for n, sp in timing.items():
        if "int8" in n:
            out[f"speedup>=10x_{n}"] = {"value": sp["speedup_p50"], "ci": [sp["lo"], sp["hi"]],
                                        "reached": sp["speedup_p50"] >= 10}
    return out


#: The demo's settings: 4,000 training / 1,000 validation / 1,000 test reviews (a stratified subset: embedding all
#: 22.6k reviews with the teacher takes ~4 min on 2 quiet cores and far longer loaded) plus the 81 grocery products.
DEMO_CONFIG = TextConfig()


def run_demo(out: Path, cache: Path | None = None, progress: Progress = print,
             cfg: TextConfig | None = None) -> TextSummary:
    """The text main job on the reviews and grocery descriptions; bundle, summary.md/json and timing under ``out``."""
    cfg = cfg or DEMO_CONFIG
    out = Path(out)
    summary = run(cfg, out, cache=cache, progress=progress)
    if summary.bundle is not None:
        s, c = time.perf_counter(), time.process_time()
        teacher = load_minilm(max_len=cfg.max_len)
        tdir = teacher_bundle(teacher, cfg.max_len, cache, progress)
        split, _ = load_data(cfg)
        full_json = (minilm_dir() / "tokenizer.json").read_text(encoding="utf-8")
        summary.extra["timing"] = benchmark(summary.bundle, tdir, full_json, split.test.texts, cfg.max_len)
        summary.extra["stage_seconds"]["timing"] = time.perf_counter() - s
        summary.extra["stage_cpu_seconds"]["timing"] = time.process_time() - c
    summary.extra["targets"] = targets(summary)
    summary = dataclasses.replace(summary, seconds=summary.seconds + summary.extra["stage_seconds"].get("timing", 0))
    write_summary(summary, out)
    return summary


__all__ = ["DEMO_CONFIG", "DISTILLED", "LABELS_ONLY", "TEACHER", "ModelEval", "TextSummary", "benchmark", "load_data",
           "run", "run_demo", "targets", "teacher_bundle", "teacher_keys", "write_summary"]
