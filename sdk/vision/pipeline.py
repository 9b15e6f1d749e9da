"""The image-search build, one code path for the demo and for a user's pictures:

data → split → teacher (cached) → teacher embeddings (cached) → students → compress (int8, gated) → bundle →
evaluate through the runtime → report (summary.md, summary.json, a quality-vs-latency-vs-size plot).

Every choice (the teacher's epoch, the student and its catalog model, the int8 recipe) is made on the validation
queries; the test queries only report. Data-set specifics live in the loaders, which hand over a :class:`SearchData`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgecart.data.image_folder import ImageSet

from .config import BuildConfig, config_hash

Progress = Callable[[str], None]

#: student options that only the distilled student uses (kept out of the label-only student's cache key)
DISTIL_ONLY = ("w_cosine", "w_relational", "w_label", "w_soft", "temperature", "w_contrastive",
               "contrastive_temperature", "consistent_teacher")


@dataclass(frozen=True)
class SearchData:
    """What a build learns from and is judged on.

    ``train``: pictures the teacher and the students learn from (labels = what a hit means). ``val`` / ``test``:
    held-out query photos (choices / reported figures) searched in ``catalog`` (the evaluation catalog).
    ``shipped``: the catalog written into the bundle (may be ``catalog`` itself). ``extra_catalogs``: further
    reported settings (name -> catalog). ``skipped``: unreadable pictures, (path, reason).
    """

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    catalog: ImageSet
    shipped: ImageSet
    extra_catalogs: dict[str, ImageSet] = field(default_factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()
    hit: str = "same label"


def fingerprint(*sets: ImageSet) -> str:
    """A hash of pictures, labels and ids: the cache key part that says which data a model saw."""
    h = hashlib.sha256()
    for s in sets:
        h.update(np.ascontiguousarray(s.images).tobytes())
        h.update(np.ascontiguousarray(s.labels).tobytes())
        h.update("\n".join(s.ids).encode())
    return h.hexdigest()[:16]


def teacher_key(data: SearchData, cfg: BuildConfig) -> str:
    """The cache key of the fine-tuned teacher (cache entry ``vision/teacher-<key>``)."""
    return config_hash({"teacher": cfg.to_dict()["teacher"], "v": 2,
                        "data": fingerprint(data.train, data.val, data.catalog)})


def embeddings_key(data: SearchData, who: str, model_key: str) -> str:
    """The cache key of ``who``'s embeddings of every set (cache entry ``vision/<who>-embeddings-<key>``)."""
    sets = _sets(data)
    return config_hash({"model": model_key, "sets": fingerprint(*[sets[n] for n in _embedded_sets(data)]),
                        "who": who})


def _sets(data: SearchData) -> dict[str, ImageSet]:
    return {"train": data.train, "val": data.val, "test": data.test, "catalog": data.catalog,
            "shipped": data.shipped, **{f"extra:{k}": v for k, v in data.extra_catalogs.items()}}


def _embedded_sets(data: SearchData) -> dict[str, int]:
    """The sets embedded, by name, with their sizes (the shipped catalog only when it is not the catalog itself)."""
    return {name: len(s) for name, s in _sets(data).items() if not (name == "shipped" and s is data.catalog)}


def run_build(data: SearchData, cfg: BuildConfig, out: str | Path, *, cache: str | Path | None = None,
              progress: Progress = print) -> dict[str, Any]:
    """Run the whole build into ``out`` (``out/bundle`` is the verified bundle); returns the summary dict that is
    also written as ``out/summary.json`` and ``out/summary.md`` with the plot ``out/summary.png``."""
    from edgecart.cache import Cache
    from edgecart.threads import set_torch_threads

    from . import report

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = set_torch_threads(cfg.threads)
    vc = Cache(cache, "vision")
    timings: dict[str, float] = {}
    cached: dict[str, bool] = {}
    for path, why in data.skipped:
        progress(f"skipped unreadable picture: {path} ({why})")
    progress(f"image search '{data.name}': {len(data.train)} training pictures, {len(data.val)} val and "
             f"{len(data.test)} test queries, evaluation catalog {len(data.catalog)}, shipped catalog "
             f"{len(data.shipped)}; {threads} torch thread(s)")
    ctx = _Context(data, cfg, vc, timings, cached, progress)
    ctx.out = out
    teacher, history = ctx.teacher()
    temb = ctx.embeddings("teacher", teacher, cfg.teacher_preprocessing, ctx.teacher_key)
    base = ctx.imagenet_baseline()
    students = ctx.students(teacher, temb)
    choice = ctx.pick(temb, students)
    rows = ctx.eager_rows(teacher, temb, base, students, choice)
    bundle, gates = ctx.bundle(teacher, temb, students, choice)
    arts = ctx.evaluate_artifacts(bundle, temb, students, choice)
    seeds = ctx.seed_table(students)
    teacher_ms = ctx.eager_latency(teacher, cfg.teacher_preprocessing)
    timings["total_s"] = time.perf_counter() - t_start
    summary = report.summarise(ctx, rows, arts, choice, history, gates, bundle, threads, seeds, teacher_ms)
    report.write(summary, out)
    progress(f"wrote {out / 'summary.md'}, {out / 'summary.json'}, {out / 'summary.png'}")
    return summary


class _Context:
    """The build's state between stages (data, config, cache, timings)."""

    def __init__(self, data: SearchData, cfg: BuildConfig, vc: Any, timings: dict[str, float],
                 cached: dict[str, bool], progress: Progress) -> None:
        self.data, self.cfg, self.vc = data, cfg, vc
        self.timings, self.cached, self.progress = timings, cached, progress
        self.teacher_key = teacher_key(data, cfg)
        self.sets = _sets(data)
        self.eval: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        self.t0 = time.perf_counter()

    # --- helpers ------------------------------------------------------------------------------------------------

    def _score(self, q: np.ndarray, qset: ImageSet, g: np.ndarray, gset: ImageSet, int8: bool = False,
               coarse: bool = False) -> dict[str, np.ndarray]:
        from edgecart.runtime.search import quantize_rows

        from .metrics import full_ranking, per_query

        scales = None
        if int8:
            g, scales = quantize_rows(g)
        r = full_ranking(q, g, scales)
        if coarse:
            return per_query(r, qset.coarse, gset.coarse)
        return per_query(r, qset.labels, gset.labels)

    def val_score(self, q: np.ndarray, g: np.ndarray, int8: bool = False) -> dict[str, float]:
        from .metrics import means

        return means(self._score(q, self.data.val, g, self.data.catalog, int8))

    # --- teacher --------------------------------------------------------------------------------------------------

    def teacher(self):
        from edgecart.models.vision import LiteTeacher

        from .train import embed, train_teacher

        cfg, tc, data = self.cfg, self.cfg.teacher, self.data
        key = self.teacher_key
        hit = self.vc.load_state("teacher", key)
        if hit is not None:
            teacher = LiteTeacher(tc.dim, len(data.train.classes), tc.size, pretrained=False)
            teacher.load_state_dict(hit[0])
            self.cached["teacher"] = True
            self.progress(f"teacher: cached {key} (fine-tuned in {hit[1].get('train_s', 0):.0f} s)")
            return teacher.eval(), hit[1].get("history", [])
        pre = cfg.teacher_preprocessing
        cat = data.catalog

        def validate(model) -> float:
            return self.val_score(embed(model, data.val.images, pre), embed(model, cat.images, pre))["map@10"]

        self.progress(f"teacher: fine-tuning EfficientNet-Lite0 at {tc.size}x{tc.size} RGB on {len(data.train)} "
                      f"pictures, up to {tc.epochs} epochs, the best epoch on validation mAP@10 kept")
        t0 = time.perf_counter()
        teacher, history = train_teacher(data.train, tc, pre, validate=validate, progress=self.progress)
        self.timings["teacher_train_s"] = time.perf_counter() - t0
        info = {"key": key, "train_s": self.timings["teacher_train_s"], "history": history}
        self.vc.save_state("teacher", key, {k: v.contiguous() for k, v in teacher.state_dict().items()}, info)
        self.cached["teacher"] = False
        return teacher, history

    def embeddings(self, who: str, model, pre, key: str) -> dict[str, np.ndarray]:
        """``model``'s embeddings of every set (cached under ``key``)."""

        want = _embedded_sets(self.data)
        k = embeddings_key(self.data, who, key)
        hit = self.vc.load_arrays(f"{who}-embeddings", k)
        if hit is not None and all(n in hit[0] and len(hit[0][n]) == m for n, m in want.items()):
            self.cached[f"{who}_embeddings"] = True
            emb = hit[0]
        else:
            t0 = time.perf_counter()
            emb = self.embed_sets(model, pre, list(want), desc=f"{who} embeds")
            self.timings[f"{who}_embed_s"] = time.perf_counter() - t0
            self.vc.save_arrays(f"{who}-embeddings", k, emb, {"key": k, "embed_s": self.timings[f"{who}_embed_s"]})
            self.cached[f"{who}_embeddings"] = False
            self.progress(f"{who} embeddings: {sum(len(v) for v in emb.values())} pictures in "
                          f"{self.timings[f'{who}_embed_s']:.0f} s")
        if "shipped" not in emb:
            emb["shipped"] = emb["catalog"]
        return emb

    def embed_sets(self, model, pre, names: list[str], desc: str = "embed") -> dict[str, np.ndarray]:
        """Embeddings of the named sets, each distinct picture (by id) embedded once: the sets overlap (the
        training photos are also a catalog; a folder build's catalog is its training split)."""
        from .train import embed

        where: dict[str, int] = {}
        pics: list[tuple[str, int]] = []
        for n in names:
            for i, pid in enumerate(self.sets[n].ids):
                if pid not in where:
                    where[pid] = len(pics)
                    pics.append((n, i))
        if not pics:
            return {n: np.zeros((0, 0), np.float32) for n in names}
        images = np.stack([self.sets[n].images[i] for n, i in pics])
        rows = embed(model, images, pre, desc=f"{desc} {len(pics)} pictures")
        return {n: rows[[where[pid] for pid in self.sets[n].ids]] for n in names}

    def imagenet_baseline(self) -> dict[str, np.ndarray]:
        """Embeddings of the ImageNet-only teacher (no fine-tuning): Lite0's pooled 1280-d features, normalised."""
        import torch
        from edgecart.models.vision import LiteTeacher

        class Features(torch.nn.Module):
            def __init__(self, net: LiteTeacher) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.nn.functional.normalize(self.net.features(x), dim=1)

        tc = self.cfg.teacher
        net = LiteTeacher(tc.dim, 1, tc.size, pretrained=True)
        return self.embeddings("imagenet", Features(net).eval(), self.cfg.teacher_preprocessing,
                               config_hash({"size": tc.size, "imagenet": 1}))

    # --- students -------------------------------------------------------------------------------------------------

    def students(self, teacher, temb) -> dict[str, dict[str, Any]]:
        """Distilled and label-only students for each seed, with their embeddings of every set."""
        sc = self.cfg.student
        t0 = time.perf_counter()
        kinds = "distilled and label-only" if sc.baseline else "distilled"
        self.progress(f"students: {kinds} at {sc.size}x{sc.size}, width {sc.width}, {sc.epochs} "
                      f"epochs, {sc.seeds} seed(s)")
        out: dict[str, dict[str, Any]] = {}
        for i in range(sc.seeds):
            for kind in ("distilled", "labels") if sc.baseline else ("distilled",):
                out[f"{kind}/{sc.seed + i}"] = self.student(kind, sc.seed + i, teacher, temb)
        self.timings["students_s"] = time.perf_counter() - t0
        return out

    def student(self, kind: str, seed: int, teacher, temb) -> dict[str, Any]:
        """One student (``kind`` "distilled" or "labels"; cached) and its embeddings of the query and catalog sets."""
        import torch
        from edgecart.models.vision import MobileStudent

        from .train import train_student

        sc, pre, dim = self.cfg.student, self.cfg.student_preprocessing, self.cfg.teacher.dim
        data = self.data
        train = data.train.resized(pre)
        kw: dict[str, Any] = {}
        if kind == "distilled":
            protos = torch.nn.functional.normalize(teacher.classifier.weight.detach(), dim=1).numpy()
            kw = dict(teacher_emb=temb["train"], prototypes=protos, proto_scale=teacher.classifier.scale)
            if sc.consistent_teacher:
                kw.update(teacher=teacher, teacher_size=self.cfg.teacher.size)
        # the key holds what the student's weights depend on (not how many seeds or which kinds were asked for, nor,
        # for the label-only student, the distillation loss weights);
        # "v" 2 = trained through edgecart.compress.distill (v 1: the pipeline's own loop)
        skip = ("baseline", "seeds", "seed") + (() if kind == "distilled" else DISTIL_ONLY)
        if not self.cfg.student.w_contrastive:  # added later: without it the student is the same as before
            skip += ("w_contrastive", "contrastive_temperature")
        if not self.cfg.student.consistent_teacher:  # likewise
            skip += ("consistent_teacher",)
        st_cfg = {k: v for k, v in self.cfg.to_dict()["student"].items() if k not in skip}
        key = config_hash({"student": st_cfg, "teacher": self.teacher_key, "kind": kind, "seed": seed, "v": 2})
        hit = self.vc.load_state(f"student-{kind}", key)
        if hit is not None:
            model = MobileStudent(dim, len(train.classes), size=sc.size, in_channels=pre.channels, width=sc.width)
            model.load_state_dict(hit[0])
            model.eval()
            self.cached[f"student_{kind}_{seed}"] = True
        else:
            t1 = time.perf_counter()
            model = train_student(train, sc, pre, dim=dim, seed=seed, desc=f"student {kind} seed {seed}", **kw)
            self.vc.save_state(f"student-{kind}", key, {k: v.contiguous() for k, v in model.state_dict().items()},
                               {"key": key, "train_s": time.perf_counter() - t1})
            self.cached[f"student_{kind}_{seed}"] = False
        names = ["val", "test", "catalog", *(f"extra:{n}" for n in data.extra_catalogs)]
        if data.shipped is not data.catalog:
            names.append("shipped")
        emb = self.embed_sets(model, pre, names, desc=f"student {kind} embeds")
        emb.setdefault("shipped", emb["catalog"])
        return {"model": model, "emb": emb, "kind": kind, "seed": seed}

    def pick(self, temb, students) -> dict[str, Any]:
        """The exported student and its catalog model, by validation mAP@10 (then R@1) of the first seed's pair."""
        seed = self.cfg.student.seed
        cands = {
            "distilled student → teacher catalog": (f"distilled/{seed}", "teacher"),
            "distilled student → student catalog": (f"distilled/{seed}", "student"),
            "label-only student → student catalog": (f"labels/{seed}", "student"),
        }
        cands = {k: v for k, v in cands.items() if v[0] in students}
        val = {}
        for name, (sk, cat) in cands.items():
            s = students[sk]["emb"]
            g = temb["catalog"] if cat == "teacher" else s["catalog"]
            val[name] = self.val_score(s["val"], g, int8=True)
        best = max(val, key=lambda n: (val[n]["map@10"], val[n]["recall@1"]))
        self.progress(f"pick (validation): {best} (mAP@10 {val[best]['map@10']:.4f}; "
                      + ", ".join(f"{n} {v['map@10']:.4f}" for n, v in val.items() if n != best) + ")")
        sk, cat = cands[best]
        return {"name": best, "student": sk, "catalog_by": cat, "validation": val}

    # --- eager quality on the test queries ----------------------------------------------------------------------

    def eager_rows(self, teacher, temb, base, students, choice) -> list[dict[str, Any]]:
        from edgecart.models.vision import embedding_params

        from .metrics import means

        data = self.data
        rows = []
        coarse = data.test.coarse is not None and data.catalog.coarse is not None
        catalogs = {"catalog": data.catalog, **{f"extra:{k}": v for k, v in data.extra_catalogs.items()}}

        def add(name: str, params: int, q: dict, g: dict, int8: bool, key: str) -> None:
            for cname, cset in catalogs.items():
                pq = self._score(q["test"], data.test, g[cname], cset, int8)
                row = {"model": name, "catalog": _catalog_label(cname), "params": int(params), "catalog_int8": int8,
                       **means(pq)}
                self.eval[f"{key}|{cname}"] = {"instance": pq}
                if coarse and cset.coarse is not None:
                    cq = self._score(q["test"], data.test, g[cname], cset, int8, coarse=True)
                    row["coarse"] = means(cq)
                    self.eval[f"{key}|{cname}"]["coarse"] = cq
                rows.append(row)

        tp = embedding_params(teacher)
        add("teacher (fine-tuned Lite0)", tp, temb, temb, False, "teacher")
        add("ImageNet-only Lite0 (no fine-tuning)", tp - teacher.head.weight.numel() - teacher.head.bias.numel(),
            base, base, False, "imagenet")
        for k, s in students.items():
            p = embedding_params(s["model"])
            label = ("distilled" if s["kind"] == "distilled" else "label-only") + f" student, seed {s['seed']}"
            add(label + " → own catalog", p, s["emb"], s["emb"], False, f"{k}|self")
            if s["kind"] == "distilled":
                add(label + " → teacher catalog", p, s["emb"], temb, False, f"{k}|teacher")
        return rows

    # --- bundle ---------------------------------------------------------------------------------------------------

    def bundle(self, teacher, temb, students, choice):
        from edgecart.models.vision import embedding_params
        from edgecart.runtime.search import quantize_rows

        from .evaluate import session_embed
        from .export import export_search_bundle
        from .metrics import full_ranking, means, per_query

        cfg, ec, data = self.cfg, self.cfg.export, self.data
        t0 = time.perf_counter()
        st = students[choice["student"]]
        by_teacher = choice["catalog_by"] == "teacher"
        cat_emb = (temb if by_teacher else st["emb"])
        spre = cfg.student_preprocessing
        cat_model = {"model": "teacher EfficientNet-Lite0 (fine-tuned)" if by_teacher else "student",
                     "params": embedding_params(teacher if by_teacher else st["model"]),
                     "preprocessing": asdict(cfg.teacher_preprocessing if by_teacher else spre)}
        from edgecart.runtime.preprocess import normalise, to_model_uint8

        val_inputs = normalise(to_model_uint8(data.val.images, spre), spre)
        g8, gs = quantize_rows(cat_emb["catalog"])

        def evaluate(session) -> dict[str, float]:
            q = session_embed(session, val_inputs)
            return means(per_query(full_ranking(q, g8, gs), data.val.labels, data.catalog.labels))

        reference = means(per_query(full_ranking(st["emb"]["val"], g8, gs), data.val.labels, data.catalog.labels))
        quality = {"validation": {"float student on the int8 catalog": reference, "pick": choice["name"],
                                  "candidates": choice["validation"]},
                   "metrics": f"hit = {data.hit}; Recall@K = share of queries with a hit in the top K; mAP@10 and "
                              "full mAP over the evaluation catalog; choices on validation queries, figures on test"}
        rng = np.random.default_rng(cfg.data.seed + 2)
        train_s = data.train.resized(spre)
        calib = train_s.images[rng.permutation(len(train_s))[:ec.calibration]]
        golden = data.val.resized(spre).images[:ec.golden]
        self.progress(f"bundle: {choice['name']} in {', '.join(ec.formats)} (fp32" + (" + gated int8)" if ec.int8
                                                                                      else ")"))
        path, gates = export_search_bundle(
            Path(self._out_dir()) / "bundle", st["model"], name=cfg.name, version=cfg.version, pre=spre,
            gallery=data.shipped, catalog_emb=cat_emb["shipped"], catalog_by=choice["catalog_by"],
            catalog_model=cat_model, golden_images=golden, cfg=ec, quality=quality, int8=ec.int8,
            calibration_images=calib, query_images=data.val.images, query_labels=data.val.labels,
            reference=reference, evaluate=evaluate, progress=self.progress, qat_train_images=train_s.images)
        self.timings["export_s"] = time.perf_counter() - t0
        return path, gates

    def _out_dir(self) -> Path:
        return self.out

    def seed_table(self, students) -> list[dict[str, Any]]:
        """Distilled vs label-only, per seed: validation and test quality (each student searching its own catalog,
        and the distilled one also the teacher's), and the paired test difference with its interval."""
        from .metrics import means, paired_diff_ci

        data = self.data
        out = []
        for seed in sorted({s["seed"] for s in students.values()}):
            if f"labels/{seed}" not in students:
                continue
            d, lab = students[f"distilled/{seed}"]["emb"], students[f"labels/{seed}"]["emb"]
            row: dict[str, Any] = {"seed": seed}
            for split, qset in (("val", data.val), ("test", data.test)):
                dq = self._score(d[split], qset, d["catalog"], data.catalog)
                lq = self._score(lab[split], qset, lab["catalog"], data.catalog)
                row[split] = {"distilled": means(dq), "labels": means(lq)}
                if split == "test":
                    row["test_diff"] = {m: paired_diff_ci(dq[m], lq[m], seed=seed) for m in ("recall@10", "map@10",
                                                                                            "recall@1")}
            out.append(row)
        return out

    def eager_latency(self, model, pre, runs: int = 30) -> float:
        """p50 ms of one picture through the eager torch model (batch 1, the latency threads): a reference point
        for the plot, not a runtime figure."""
        import torch

        from .train import model_inputs

        x = model_inputs(self.data.test.images[:1], pre)
        old = torch.get_num_threads()
        torch.set_num_threads(self.cfg.export.latency_threads)
        try:
            with torch.no_grad():
                model.eval()
                for _ in range(3):
                    model(x)
                ts = []
                for _ in range(runs):
                    t = time.perf_counter()
                    model(x)
                    ts.append(time.perf_counter() - t)
        finally:
            torch.set_num_threads(old)
        return float(np.median(ts) * 1e3)

    def evaluate_artifacts(self, bundle: Path, temb, students, choice) -> list[dict[str, Any]]:
        """Every artifact through the runtime: test queries (raw pictures → the manifest's preprocessing → the
        artifact), scored against the int8 evaluation catalog; single-image p50 latency on ``latency_threads``."""
        from edgecart.runtime import open_bundle
        from edgecart.runtime.backends import backend_for_format
        from edgecart.runtime.preprocess import preprocess
        from edgecart.runtime.search import ImageSearch

        from .evaluate import latency
        from .metrics import means

        ec, data = self.cfg.export, self.data
        t0 = time.perf_counter()
        st = students[choice["student"]]
        g = (temb if choice["catalog_by"] == "teacher" else st["emb"])["catalog"]
        b = open_bundle(bundle)
        rows = []
        for a in b.manifest.artifacts:
            be = backend_for_format(a.format)
            if not be.available():
                self.progress(f"eval: {a.name}: {be.name} not installed, skipped")
                continue
            s = ImageSearch(b, be.name, threads=ec.latency_threads, artifact=a.name)
            from edgecart.progress import progress_iter

            q = np.stack([s.embed(img) for img in progress_iter(data.test.images, desc=f"eval {a.name}",
                                                                 unit="img")])
            pq = self._score(q, data.test, g, data.catalog, int8=True)
            row = {"artifact": a.name, "format": a.format, "precision": a.precision, "backend": be.name,
                   "bytes": b.manifest.artifact_bytes(a), **means(pq),
                   "recipe": (a.quantization or {}).get("recipe") if a.precision == "int8" else None}
            self.eval[f"artifact:{a.name}"] = {"instance": pq}
            if data.test.coarse is not None and data.catalog.coarse is not None:
                cq = self._score(q, data.test, g, data.catalog, int8=True, coarse=True)
                row["coarse"] = means(cq)
            lat = latency(s.session, preprocess(data.test.images[0], s.preprocessing), ec.latency_runs)
            row["p50_ms"] = lat.p50_ms
            rows.append(row)
            self.progress(f"eval: {a.name:<34} {be.name:<12} R@1 {row['recall@1']:.4f} mAP@10 {row['map@10']:.4f} "
                          f"p50 {lat.p50_ms:.3f} ms")
        self.timings["evaluate_s"] = time.perf_counter() - t0
        return rows


def _catalog_label(name: str) -> str:
    return "evaluation catalog" if name == "catalog" else name.split(":", 1)[1]


__all__ = ["SearchData", "embeddings_key", "fingerprint", "run_build", "teacher_key"]
