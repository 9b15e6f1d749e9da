"""Per-step compression report of the demo's real models: the grocery image teacher (EfficientNet-Lite0 fine-tuned),
the grocery student (the distilled MobileStudent) and the MovieLens-100K SASRec teacher, all loaded from the demo's
cache (``edgecart demo`` fills it; nothing is retrained here except the short distillation recoveries).

Steps: the float model; static int8 (per-channel, per-tensor; optionally QAT where per-tensor loses > 1 point);
structured pruning (torch-pruning, channels / residual width and head dims) at each ``--ratios`` value, with and
without a short distillation recovery from the unpruned model. For each step and format: parameters, non-zero
parameters, MACs, file size (raw and gzip), p50 latency through the benchmark harness (every artifact of every step
in one interleaved run, one thread, batch 1) and the task's quality figure on the VALIDATION split, measured through
the runtime on the artifact itself.

    EDGECART_THREADS=1 .venv/bin/python scripts/compress_real_models.py --model lite0-teacher \\
        --cache /work/main/out/cache --out benchmarks/results/compression/lite0-teacher

Quality figures: image models, mAP@10 (and R@1) of the validation shop photos searched in the 81 catalog pictures,
both embedded by the model under test (hit = same product); SASRec, validation NDCG@10 (leave-last-out, full
ranking). Latency on a shared machine is comparable only as ratios within one run.
"""

from __future__ import annotations

import argparse
import glob
import json
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("lite0-teacher", "grocery-student", "sasrec-teacher")
RECOVER_LR = [1e-3]  # --recover-lr (image models)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Subject:
    """One model under test and everything the report needs to judge it."""

    name: str
    model: Any                                   # the float model (what pruning and recovery act on)
    exportable: Callable[[Any], Any]             # model -> the nn.Module that is exported
    example: tuple[Any, ...]                     # example inputs of the exported module
    quality_torch: Callable[[Any], dict[str, float]]
    quality_session: Callable[[Any, Any], dict[str, float]]  # (session, model) -> figures through the runtime
    recover: Callable[[Any, Any, int], Any]       # (pruned, teacher, epochs) -> recovered
    calibration: list[tuple[Any, ...]]
    golden: list[tuple[Any, ...]]
    key: str                                     # the quality figure the targets are judged on
    heads: dict[str, int] = field(default_factory=dict)
    after_prune: Callable[[Any, Any], None] | None = None  # (pruned, original) -> fix-ups (e.g. config dims)
    prune_ignore: tuple[str, ...] = ()          # modules whose output channels are kept
    describe: str = ""


# --- the image models ---------------------------------------------------------------------------------------------

def _grocery(which: str, cache: Path) -> Subject:
    import torch
    from edgecart.cache import Cache
    from edgecart.compress import Cosine, DistillConfig, DistillData, distill
    from edgecart.models.vision import LiteTeacher, MobileStudent
    from edgecart.runtime.preprocess import normalise, to_model_uint8
    from edgecart.vision.config import config_hash
    from edgecart.vision.demo import DEMO_CONFIG, grocery_search_data
    from edgecart.vision.metrics import full_ranking, means, per_query
    from edgecart.vision.pipeline import fingerprint

    cfg = DEMO_CONFIG
    data = grocery_search_data(cfg)
    vc = Cache(cache, "vision")
    tkey = config_hash({"teacher": cfg.to_dict()["teacher"], "v": 2,
                        "data": fingerprint(data.train, data.val, data.catalog)})
    hit = vc.load_state("teacher", tkey)
    if hit is None:
        raise SystemExit(f"no cached teacher {tkey} under {cache}/vision: run `edgecart demo --task image-search` "
                         "first (it fine-tunes and caches the teacher)")
    tc, n_classes = cfg.teacher, len(data.train.classes)
    teacher = LiteTeacher(tc.dim, n_classes, tc.size, pretrained=False)
    teacher.load_state_dict(hit[0])
    teacher.eval()
    if which == "teacher":
        model, pre = teacher, cfg.teacher_preprocessing
        desc = f"EfficientNet-Lite0 + {tc.dim}-d head fine-tuned at {tc.size}x{tc.size} (cache key {tkey})"
    else:
        sc = cfg.student
        st_cfg = {k: v for k, v in cfg.to_dict()["student"].items() if k != "baseline"}
        skey = config_hash({"student": st_cfg, "teacher": tkey, "kind": "distilled", "seed": sc.seed, "v": 1})
        shit = vc.load_state("student-distilled", skey)
        if shit is None:
            raise SystemExit(f"no cached distilled student {skey} under {cache}/vision: run the image-search demo")
        pre = cfg.student_preprocessing
        model = MobileStudent(tc.dim, n_classes, size=sc.size, in_channels=pre.channels, width=sc.width)
        model.load_state_dict(shit[0])
        model.eval()
        desc = (f"MobileStudent(width={sc.width}) at {sc.size}x{sc.size}, distilled into the teacher's space "
                f"(cache key {skey})")
    to_x = lambda imgs: normalise(to_model_uint8(imgs, pre), pre)  # noqa: E731
    x_val, x_cat = to_x(data.val.images), to_x(data.catalog.images)
    x_train = torch.from_numpy(to_x(data.train.images))

    def score(q: np.ndarray, g: np.ndarray) -> dict[str, float]:
        m = means(per_query(full_ranking(q, g), data.val.labels, data.catalog.labels))
        return {"map@10": float(m["map@10"]), "recall@1": float(m["recall@1"])}

    def embed_torch(model: Any, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([model.eval()(torch.from_numpy(x[i:i + 128])) for i in range(0, len(x), 128)]).numpy()

    def quality_torch(model: Any) -> dict[str, float]:
        return score(embed_torch(model, x_val), embed_torch(model, x_cat))

    def quality_session(session: Any, _model: Any) -> dict[str, float]:
        def emb(x: np.ndarray) -> np.ndarray:
            return np.concatenate([next(iter(session.run(np.ascontiguousarray(x[i:i + 1])).values()))
                                   for i in range(len(x))])
        return score(emb(x_val), emb(x_cat))

    def recover(pruned: Any, unpruned: Any, epochs: int) -> Any:
        with torch.no_grad():
            t_emb = torch.cat([unpruned.eval()(x_train[i:i + 256]) for i in range(0, len(x_train), 256)])
        dc = DistillConfig(losses=(Cosine(),), epochs=epochs, batch_size=64, lr=RECOVER_LR[0])
        distill(pruned, None, DistillData(inputs=x_train, teacher_outputs=t_emb), dc, progress=False)
        return pruned.eval()

    rng = np.random.default_rng(0)
    calib_idx = rng.permutation(len(x_train))[:64]
    # EfficientNet: prune the expanded (inner) channels of each inverted-residual block and the head conv, keep the
    # residual stream (stem and projection convs) whole — the stream carries every block's features
    ignore = tuple(n for n, _m in model.named_modules() if n.endswith("_project_conv")) + (
        "backbone._conv_stem",) if which == "teacher" else ()
    return Subject(
        name=f"grocery-{which}", model=model, exportable=lambda m: m.eval(),
        example=(torch.from_numpy(x_val[:1].copy()),), quality_torch=quality_torch, quality_session=quality_session,
        recover=recover, calibration=[(x_train[i:i + 1].clone(),) for i in calib_idx],
        golden=[(torch.from_numpy(x_val[i:i + 1].copy()),) for i in range(4)], key="map@10", prune_ignore=ignore,
        describe=f"{desc}; validation: {len(data.val)} shop photos searched in {len(data.catalog)} catalog pictures")


# --- the recommendations teacher ----------------------------------------------------------------------------------

def _sasrec(cache: Path) -> Subject:
    import dataclasses

    import torch
    from edgecart.data.movielens import load_movielens_100k
    from edgecart.data.sequences import leave_last_out, pad_batch, training_windows
    from edgecart.models.sasrec import SASRec, SASRecUserVector
    from edgecart.recs.config import DistillConfig, RecsConfig, TrainConfig
    from edgecart.recs.metrics import evaluate_scores
    from edgecart.recs.teacher import fingerprint, model_config
    from edgecart.recs.train import eager_scores, teacher_soft_targets, train

    cfg = RecsConfig()
    data = load_movielens_100k(min_item_count=cfg.min_item_count)
    split = leave_last_out(data)
    mcfg = model_config(data, cfg, "teacher")
    key = fingerprint(data, mcfg, cfg.teacher_train)
    path = Path(cache) / "recs" / f"{data.name}-teacher-{key}.pt"
    if not path.exists():
        found = sorted(glob.glob(str(Path(cache) / "recs" / f"{data.name}-teacher-*.pt")))
        if not found:
            raise SystemExit(f"no cached {data.name} teacher under {cache}/recs: run `edgecart demo --task recs`")
        path = Path(found[0])
        mcfg = dataclasses.replace(mcfg, **{k: v for k, v in json.loads(path.with_suffix(".json").read_text())
                                            ["config"].items() if k in ("dim", "heads", "layers", "ffn_mult")})
    teacher = SASRec(mcfg)
    teacher.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    teacher.eval()
    hist = pad_batch(split.valid_history, mcfg.max_len)

    def quality_torch(model: Any) -> dict[str, float]:
        m = evaluate_scores(eager_scores(model, split.valid_history), split.valid_target)
        return {"ndcg@10": float(m["ndcg@10"]), "recall@10": float(m["recall@10"])}

    def rows_table(model: Any) -> np.ndarray:
        """The item table as the runtime gathers from it: row 0 (padding) is a zero row — the tied scoring layer
        trains row 0 away from zero, and the exported transformer finds padding by its zero rows."""
        t = model.items.weight.detach().numpy().copy()
        t[0] = 0
        return t

    def quality_session(session: Any, model: Any) -> dict[str, float]:
        table = model.items.weight.detach().numpy()
        rows = rows_table(model)
        uv = np.concatenate([next(iter(session.run(np.ascontiguousarray(rows[hist[i:i + 1]])).values()))
                             for i in range(len(hist))])
        m = evaluate_scores(uv @ table.T, split.valid_target)
        return {"ndcg@10": float(m["ndcg@10"]), "recall@10": float(m["recall@10"])}

    windows, _ = training_windows(split.train, mcfg.max_len)
    dcfg = DistillConfig()
    soft = teacher_soft_targets(teacher, windows, dcfg)

    def recover(pruned: Any, _unpruned: Any, epochs: int) -> Any:
        tcfg = TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, patience=3)
        train(pruned, split, tcfg, soft=soft, distill=dcfg, desc="recovery", progress=None)
        return pruned.eval()

    def after_prune(pruned: Any, original: Any) -> None:
        new = pruned.items.weight.shape[1]
        old = original.cfg.dim
        for b in pruned.blocks:
            b.head_dim = b.qkv.out_features // 3 // b.heads
        # the encoder scales item rows by sqrt(dim): keep the scale the weights were trained with
        with torch.no_grad():
            pruned.items.weight.mul_((old / new) ** 0.5)
        pruned.cfg = dataclasses.replace(original.cfg, dim=new)

    def example_of(model: Any) -> tuple[Any, ...]:
        return (torch.from_numpy(rows_table(model)[hist[:1]]),)

    calib = [(torch.from_numpy(rows_table(teacher)[hist[i:i + 1]]),) for i in range(0, 640, 10)]
    subj = Subject(
        name="movielens-sasrec-teacher", model=teacher, exportable=lambda m: SASRecUserVector(m).eval(),
        example=example_of(teacher), quality_torch=quality_torch, quality_session=quality_session, recover=recover,
        calibration=calib, golden=[example_of(teacher)], key="ndcg@10",
        heads={f"blocks.{i}.qkv": mcfg.heads for i in range(mcfg.layers)}, after_prune=after_prune,
        describe=f"SASRec dim {mcfg.dim}, {mcfg.layers} layers, {mcfg.heads} heads (cached {path.name}); the "
                 "exported module is the transformer (item rows in, user vector out), scored against the item table; "
                 f"validation: leave-last-out, {len(hist)} users, full ranking")
    subj.example_of = example_of  # type: ignore[attr-defined]
    return subj


# --- steps --------------------------------------------------------------------------------------------------------

def structured(subject: Subject, model: Any, ratio: float) -> Any:
    from edgecart.compress import StructuredPruning, prune

    cfg = StructuredPruning(ratio=ratio, heads=tuple(subject.heads.items()), protect_outputs=not subject.heads,
                            ignore=subject.prune_ignore)
    pruned = prune(model, cfg, _prune_inputs(subject, model))
    if subject.after_prune is not None:
        subject.after_prune(pruned, model)
    return pruned


def _prune_inputs(subject: Subject, model: Any) -> tuple[Any, ...]:
    if subject.heads:  # SASRec: prune the whole model (table, positions, blocks) on an item-id history
        import torch

        return (torch.randint(1, model.cfg.num_items, (1, model.cfg.max_len)),)
    return subject.example


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=MODELS)
    ap.add_argument("--cache", default="out/cache", help="the demo's cache (vision/, recs/)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ratios", default="0.3,0.5", help="structured pruning ratios")
    ap.add_argument("--recover-epochs", type=int, default=3)
    ap.add_argument("--recover-lr", type=float, default=1e-3, help="distillation recovery lr (image models)")
    ap.add_argument("--no-raw-pruned", action="store_true", help="skip the pruned-without-recovery steps")
    ap.add_argument("--int8", default="per-channel,per-tensor", help="int8 recipes on the float model")
    ap.add_argument("--int8-pruned", action="store_true", help="static int8 per-channel on each recovered model")
    ap.add_argument("--qat-steps", type=int, default=0, help="QAT per-tensor (PT2E formats) when > 0")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--formats", default="executorch,onnx,tflite")
    ap.add_argument("--keep-bundles", action="store_true")
    args = ap.parse_args(argv)

    import torch
    from edgecart.compress import QAT, QuantizeStage, Recipe, StaticInt8, export_compressed
    from edgecart.compress.report import BACKEND_OF, StepRow, artifact_sizes, harness_p50, model_stats, write_report
    from edgecart.runtime import load
    from edgecart.threads import set_torch_threads

    set_torch_threads(1)
    torch.manual_seed(0)
    RECOVER_LR[0] = args.recover_lr
    cache = Path(args.cache)
    out = Path(args.out)
    work = out / "bundles"
    formats = tuple(f for f in args.formats.split(",") if f)
    t_start = time.time()
    subject = _sasrec(cache) if args.model == "sasrec-teacher" else _grocery(args.model.split("-")[1], cache)
    say(f"{subject.name}: {subject.describe}")
    base_q = subject.quality_torch(subject.model)
    say(f"float quality (validation): {base_q}")

    # (fp32 row name or None, model, notes, int8 recipes tried, int8 row name or None): one bundle per entry
    steps: list[tuple[str | None, Any, str, tuple[Any, ...], str | None]] = []
    int8_recipes = {"per-channel": StaticInt8(), "per-tensor": StaticInt8(per_channel=False)}
    int8_names = [n for n in args.int8.split(",") if n]
    int8_note = "static int8 {} (PT2E / ONNX Runtime QDQ), 64 calibration inputs, no gate: the figures show its cost"
    first = int8_names[0] if int8_names else None
    steps.append(("float", subject.model, "the demo's cached model", (int8_recipes[first],) if first else (),
                  f"int8-{first}" if first else None))
    for name in int8_names[1:]:
        steps.append((None, subject.model, int8_note.format(name), (int8_recipes[name],), f"int8-{name}"))
    if args.qat_steps:
        steps.append((None, subject.model, f"QAT per-tensor (prepare_qat_pt2e, {args.qat_steps} steps matching the "
                      "float outputs on the calibration inputs)", (QAT(per_channel=False, steps=args.qat_steps),),
                      "int8-per-tensor-qat"))
    for ratio in (float(r) for r in args.ratios.split(",") if r):
        t0 = time.time()
        pruned = structured(subject, subject.model, ratio)
        say(f"structured {ratio}: {model_stats(pruned, _prune_inputs(subject, pruned))['params']:,} params, "
            f"quality {subject.quality_torch(pruned)} ({time.time() - t0:.0f} s)")
        if not args.no_raw_pruned:
            steps.append((f"structured-{ratio}", pruned, "channel pruning, no recovery", (), None))
        t0 = time.time()
        rec = subject.recover(structured(subject, subject.model, ratio), subject.model, args.recover_epochs)
        secs = time.time() - t0
        say(f"structured {ratio} + recovery: quality {subject.quality_torch(rec)} ({secs:.0f} s)")
        steps.append((f"structured-{ratio}+distill", rec, f"channel pruning + {args.recover_epochs} epoch(s) of "
                      f"distillation from the unpruned model ({secs:.0f} s, 1 thread)",
                      (StaticInt8(),) if args.int8_pruned else (),
                      f"structured-{ratio}+distill+int8" if args.int8_pruned else None))

    from edgecart.runtime import open_bundle

    rows, bundles = [], {}
    for step, model, notes, recipes, int8_step in steps:
        label = step or int8_step
        say(f"exporting {label}")
        m = subject.exportable(model)
        example = subject.example_of(model) if hasattr(subject, "example_of") else subject.example
        q = subject.quality_torch(model)
        recipe = Recipe(name=label, quantize=QuantizeStage(recipes=recipes, gate_metric=subject.key, max_drop=1.0,
                                                           rescue=False, calibration=64)) if recipes else None
        fmts = formats
        if recipes and isinstance(recipes[0], QAT):
            fmts = tuple(f for f in formats if f != "onnx")
        bundle = work / label
        t0 = time.time()
        try:
            export_compressed(m, example, out=bundle, formats=fmts, recipe=recipe, calibration=subject.calibration,
                              golden_inputs=subject.golden if not hasattr(subject, "example_of")
                              else [example], name=subject.name, overwrite=True, progress=say,
                              evaluate=lambda s, _m=model: subject.quality_session(s, _m), reference=q)
        except Exception as exc:  # a toolchain failure on one step is a finding, not the end of the report
            say(f"{label}: export failed: {type(exc).__name__}: {str(exc)[:300]}")
            rows.append(StepRow(subject.name, label, 0, 0, 0, q, {}, f"export failed: {type(exc).__name__}: "
                                f"{str(exc)[:200]}"))
            continue
        secs = time.time() - t0
        stats = model_stats(m, example)
        sizes = artifact_sizes(bundle)
        manifest = open_bundle(bundle).manifest
        by_prec: dict[str, dict[str, Any]] = {"fp32": {}, "int8": {}}
        for a in manifest.artifacts:
            art = sizes[a.name]
            art["quality"] = dict(a.quality) if a.quality else None
            if not a.quality:
                s = load(bundle, BACKEND_OF[a.format], artifact=a.name, threads=1)
                art["quality"] = subject.quality_session(s, model)
            by_prec.setdefault(a.precision, {})[a.name] = art
        for row_name, prec in ((step, "fp32"), (int8_step, "int8")):
            if row_name is None:
                continue
            extra = ""
            if prec == "int8":
                rej = manifest.quality.get("int8_rejected") or {}
                if rej:
                    extra = "; no int8 artifact for " + ", ".join(
                        f"{k}: {v['attempts'][-1]['reason']}" for k, v in rej.items())
            rows.append(StepRow(subject.name, row_name, stats["params"], stats["nonzero_params"], stats["macs"], q,
                                by_prec[prec], (notes if prec == "fp32" or step is None else int8_note.format(first))
                                + f"; bundle export {secs:.0f} s" + extra))
            bundles[row_name] = bundle
    say(f"interleaved latency through the harness: {args.rounds} rounds x {args.per_round} calls")
    runs = [(str(bundles[r.step]), name) for r in rows if r.step in bundles for name in r.artifacts]
    p50 = harness_p50(runs, rounds=args.rounds, per_round=args.per_round)
    for r in rows:
        for name in r.artifacts:
            got = p50.get((str(bundles.get(r.step)), name), {})
            r.artifacts[name]["p50_ms"] = got.get("p50_ms")
            if "error" in got:
                r.artifacts[name]["latency_error"] = got["error"]
    speed = _speedups(rows)
    ctx = {"model": subject.describe, "float_quality_validation": base_q,
           "quality": f"{subject.key} on the validation split, measured through the runtime per artifact",
           "latency": f"p50 over {args.rounds} interleaved rounds x {args.per_round} calls, every artifact of every "
                      "step in its own harness worker, 1 thread, batch 1; measured on a shared, loaded 2-core "
                      "machine: compare only as ratios within this run",
           "speed-up over the float model, same format (p50 ratio)": speed,
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "command": "EDGECART_THREADS=1 .venv/bin/python scripts/compress_real_models.py "
                      + " ".join(sys.argv[1:] if argv is None else argv),
           "total_s": round(time.time() - t_start)}
    paths = write_report(rows, out, title=f"Compression steps: {subject.name}", quality_key=subject.key,
                         context=ctx)
    if not args.keep_bundles:
        shutil.rmtree(work, ignore_errors=True)
    say(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _speedups(rows: list[Any]) -> dict[str, dict[str, float]]:
    base = {a["format"]: a.get("p50_ms") for r in rows if r.step == "float" for a in r.artifacts.values()}
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.step == "float":
            continue
        for a in r.artifacts.values():
            b, p = base.get(a["format"]), a.get("p50_ms")
            if b and p:
                out.setdefault(f"{r.step} {a['precision']}", {})[a["format"]] = round(b / p, 3)
    return out


if __name__ == "__main__":
    sys.exit(main())
