"""Round 3 of the recommendations studies: the SASRec recipe on validation, seed ensembles as teachers, and
distilled vs label-only students over seeds (issues 10 and 12).

    EDGECART_THREADS=1 .venv/bin/python scripts/recs_round3.py fit --tag T1 --dim 64 --max-len 200 ...
    EDGECART_THREADS=1 .venv/bin/python scripts/recs_round3.py table

``fit`` trains one SASRec through ``edgecart.recs.train.train`` (the build's trainer), appends one JSON line to
``benchmarks/results/recs/round3/fits.jsonl`` (validation NDCG@10 — the choice —, test NDCG@10 with and without
seen items, CPU seconds of this process) and keeps its validation and test scores under ``--scores`` so that seed
ensembles can be scored without retraining. ``table`` writes the sweep table (Markdown) from the JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path("benchmarks/results/recs/round3")


#: The options of a 16-d one-block student's training that the round 4 and 5 fits share, with their defaults.
STUDENT = (("--dim", int, 16), ("--dropout", float, 0.1), ("--max-len", int, 50), ("--epochs", int, 30),
           ("--batch", int, 64), ("--lr", float, 3e-3), ("--seed", int, 0))


def add_data_options(p: argparse.ArgumentParser, dataset: str, *, tag: bool = True) -> None:
    """The fit's tag (when it makes one), its data set and where saved fits live."""
    if tag:
        p.add_argument("--tag", required=True)
    p.add_argument("--dataset", default=dataset, choices=("movielens-100k", "instacart", "movielens-1m"))
    p.add_argument("--scores", type=Path, default=Path("/tmp/recs3"))


def add_options(p: argparse.ArgumentParser, options: tuple[tuple[str, type, object], ...]) -> None:
    """Typed options with defaults, one ``(name, type, default)`` each."""
    for name, kind, default in options:
        p.add_argument(name, type=kind, default=default)


def _command() -> str:
    return "EDGECART_THREADS=1 .venv/bin/python " + " ".join(["scripts/recs_round3.py", *sys.argv[1:]])


def _metrics(scores: np.ndarray, split, which: str) -> dict[str, float]:
    from edgecart.recs.metrics import rank_metrics, target_ranks

    hist = split.valid_history if which == "valid" else split.test_history
    tgt = split.valid_target if which == "valid" else split.test_target
    r = target_ranks(scores, tgt)
    ru = target_ranks(scores, tgt, exclude=hist)
    a, b = rank_metrics(r), rank_metrics(ru)
    return {f"{which}_ndcg": a["ndcg@10"], f"{which}_recall": a["recall@10"], f"{which}_ndcg_unseen": b["ndcg@10"]}


def fit(args: argparse.Namespace) -> int:
    import torch
    from edgecart.data.sequences import leave_last_out, training_windows
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.config import DistillConfig, TrainConfig
    from edgecart.recs.pipeline import _load
    from edgecart.recs.train import train
    from edgecart.threads import set_torch_threads

    set_torch_threads(1)
    data = _load(args.dataset, 5)
    split = leave_last_out(data)
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, weight_decay=args.wd, seed=args.seed,
                       patience=args.patience or None, schedule=args.schedule,
                       label_smoothing=args.label_smoothing, exclude_seen=args.exclude_seen,
                       augment_copies=args.augment_copies, augment_drop=args.augment_drop)
    recorded_tcfg, extra_note = tcfg, {}
    if args.extra_1m or args.only_1m:
        split, tcfg, extra_note = _with_movielens_1m(data, split, tcfg, only=args.only_1m)
    mcfg = SASRecConfig(data.num_items, args.max_len, args.dim, args.heads, args.layers, 2, args.dropout)
    torch.manual_seed(args.seed)
    model = SASRec(mcfg)
    if args.init:  # fine-tune a saved fit of the same shape (round 21: pre-trained on MovieLens-1M)
        model.load_state_dict(torch.load(args.scores / f"{args.init}.pt"))
        extra_note["init"] = args.init
    kw = {}
    if args.teacher:
        # soft targets of a (possibly ensembled) teacher: averaged log-probabilities of the saved teacher models
        teachers = load_fits(args.teacher, args.scores)
        distill = DistillConfig(top_k=args.top_k, temperature=args.temperature, alpha=args.alpha, hint=args.hint,
                                pca_init=args.pca_init != "none")
        from edgecart.models.sasrec import as_teacher
        from edgecart.recs.train import teacher_soft_targets, training_split

        windows, _ = training_windows(training_split(split, tcfg).train, args.max_len)

        kw = {"soft": teacher_soft_targets(as_teacher(teachers), windows, distill,
                                           exclude_seen=args.exclude_seen or args.soft_exclude_seen),
              "distill": distill}
        if args.pca_init != "none":
            _pca_init(model, teachers, args.pca_init)
    if args.future > 1:
        if args.teacher:
            raise SystemExit("--future and --teacher: not combined in this study")
        from edgecart.data.sequences import future_targets
        from edgecart.recs.train import SoftTargets

        fi, fw = future_targets(split.train, args.max_len, args.future, args.future_decay)
        kw = {"soft": SoftTargets(fi, fw), "distill": DistillConfig(top_k=args.future, temperature=1.0,
                                                                    alpha=args.future_weight)}
    c0 = time.process_time()
    log = train(model, split, tcfg, desc=f"{args.dataset} {args.tag}", progress=print, **kw)
    cpu = time.process_time() - c0
    import dataclasses

    record_fit(args, model, mcfg, recorded_tcfg, split, OUT, _command(), {**extra_note,
        "teacher": args.teacher or None, "distill": dataclasses.asdict(kw["distill"]) if kw else None,
        "best_epoch": log.best_epoch, "epochs_run": len(log.losses), "valid_curve": list(log.valid_ndcg),
        "cpu_s": cpu, "wall_s": log.seconds})
    return 0


def _with_movielens_1m(data, split, tcfg, *, only: bool = False):
    """Round 21: MovieLens-100K's training histories (with their item-dropped copies, made as the trainer makes
    them) followed by MovieLens-1M's users' sequences in MovieLens-100K's items (matched by title;
    :func:`edgecart.data.movielens.movielens_1m_on`), no copies of those; ``only``: MovieLens-1M's alone (a
    pre-training). Validation and test stay MovieLens-100K's. Returns the split to train on, the TrainConfig with
    its copies already made, and a note for the fit's line."""
    import dataclasses

    from edgecart.data.movielens import load_movielens_1m, movielens_1m_on, movielens_100k_titles
    from edgecart.recs.train import training_split

    if data.name != "movielens-100k":
        raise SystemExit("--extra-1m adds MovieLens-1M's users to MovieLens-100K only")
    extra = movielens_1m_on(data, movielens_100k_titles(), load_movielens_1m())
    own = () if only else training_split(split, tcfg).train
    note = {"extra_train": {"source": "movielens-1m", "only": only, "sequences": len(extra),
                            "interactions": int(sum(len(s) for s in extra))}}
    return dataclasses.replace(split, train=tuple(own) + extra), dataclasses.replace(tcfg, augment_copies=0), note


def _pca_init(model, teachers: list, how: str) -> None:
    """The student's item table from the teacher's: ``first`` member's table (``edgecart.recs.train.pca_init``), or
    ``concat``: every member's table side by side (whose dot products are the sum of the members'), projected on its
    top principal directions the same way."""
    import torch
    from edgecart.recs.train import pca_init, pca_init_from_table

    if how == "first":
        pca_init(model, teachers[0])
    else:
        pca_init_from_table(model, torch.cat([t.items.weight for t in teachers], dim=1))


def load_fits(tags: str, where: Path) -> list:
    """The saved SASRecs of '+'-joined fit tags (weights and config under ``where``), in eval mode."""
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig

    models = []
    for tag in tags.split("+"):
        m = SASRec(SASRecConfig(**json.loads((where / f"{tag}.json").read_text())["model"]))
        m.load_state_dict(torch.load(where / f"{tag}.pt"))
        models.append(m.eval())
    return models


def record_fit(args: argparse.Namespace, model, mcfg, tcfg, split, out: Path, command: str,
               extra: dict) -> dict:
    """Keep a trained fit under ``args.scores`` (validation and test scores, weights, config) and append its JSON
    line (validation and test NDCG@10 with and without seen items, ``extra``, the command) to ``out/fits.jsonl``."""
    import dataclasses

    import torch
    from edgecart.models.sasrec import num_params
    from edgecart.recs.train import eager_scores

    model.eval()
    sv, st = eager_scores(model, split.valid_history), eager_scores(model, split.test_history)
    args.scores.mkdir(parents=True, exist_ok=True)
    np.save(args.scores / f"{args.tag}-valid.npy", sv.astype(np.float32))
    np.save(args.scores / f"{args.tag}-test.npy", st.astype(np.float32))
    torch.save(model.state_dict(), args.scores / f"{args.tag}.pt")
    (args.scores / f"{args.tag}.json").write_text(json.dumps({"model": dataclasses.asdict(mcfg)}))
    row = {"tag": args.tag, "dataset": args.dataset, "params": num_params(model), "model": dataclasses.asdict(mcfg),
           "train": dataclasses.asdict(tcfg), **extra, **_metrics(sv, split, "valid"), **_metrics(st, split, "test"),
           "command": command}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "fits.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: row.get(k) for k in ("tag", "valid_ndcg", "test_ndcg", "test_ndcg_unseen", "best_epoch",
                                              "epochs_run", "cpu_s")}))
    return row


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64).copy()
    x[:, 0] = -np.inf
    m = x[:, 1:].max(1, keepdims=True)
    return x - m - np.log(np.exp(x[:, 1:] - m).sum(1, keepdims=True))


def scores_of(tags: str, which: str, where: Path) -> np.ndarray:
    """Saved scores of one fit, or the mean log-probabilities of several ('+'-joined tags): a seed ensemble."""
    parts = tags.split("+")
    if len(parts) == 1:
        return np.load(where / f"{parts[0]}-{which}.npy")
    return np.mean([_log_softmax(np.load(where / f"{t}-{which}.npy")) for t in parts], axis=0)


def _seed_mean_ndcg(side: str, where: Path, target: np.ndarray, exclude, which: str = "test") -> np.ndarray:
    """Per-user NDCG@10 of one side of a comparison: a fit, an ensemble ('+'-joined), or the mean per user over
    several of those (','-joined: e.g. three seeds of one recipe, so the interval is over users, not seeds)."""
    from edgecart.recs.metrics import target_ranks, user_ndcg

    return np.mean([user_ndcg(target_ranks(scores_of(tags, which, where), target, exclude=exclude))
                    for tags in side.split(",")], axis=0)


def compare(args: argparse.Namespace) -> int:
    """NDCG@10 of fits / ensembles (A) against others (B) on the test split (or, with --split valid, the validation
    split alone: for a choice, no test figure is computed): paired 95% bootstrap intervals, with and without seen
    items; on test, validation NDCG@10 alongside. Appends to round3/compare.jsonl."""
    from edgecart.data.sequences import leave_last_out
    from edgecart.recs.metrics import paired_bootstrap
    from edgecart.recs.pipeline import _load

    split = leave_last_out(_load(args.dataset, 5))
    on = args.split
    target, history = ((split.test_target, split.test_history) if on == "test"
                       else (split.valid_target, split.valid_history))
    rows = []
    for pair in args.pairs:
        a, b = pair.split(":")
        row = {"a": a, "b": b, "dataset": args.dataset, "split": on, "command": _command()}
        for excl, suffix in ((None, ""), (history, "_unseen")):
            ua, ub = (_seed_mean_ndcg(side, args.scores, target, excl, on) for side in (a, b))
            row[f"{on}_a{suffix}"], row[f"{on}_b{suffix}"] = float(ua.mean()), float(ub.mean())
            row[f"diff{suffix}"] = paired_bootstrap(ua, ub)
        if on == "test":
            for name, side in (("a", a), ("b", b)):
                for excl, suffix in ((None, ""), (split.valid_history, "_unseen")):
                    row[f"valid_{name}{suffix}"] = float(_seed_mean_ndcg(side, args.scores, split.valid_target,
                                                                         excl, "valid").mean())
        rows.append(row)
        d, du = row["diff"], row["diff_unseen"]
        also = (f"valid {row['valid_a']:.4f}/{row['valid_b']:.4f} (unseen {row['valid_a_unseen']:.4f}/"
                f"{row['valid_b_unseen']:.4f}); " if on == "test" else "")
        print(f"{a} vs {b}: {also}{on} {row[f'{on}_a']:.4f}/{row[f'{on}_b']:.4f} diff {d['diff']:+.4f} "
              f"[{d['diff_lo']:+.4f}, {d['diff_hi']:+.4f}] ratio {d['ratio']:.3f} [{d['ratio_lo']:.3f}, "
              f"{d['ratio_hi']:.3f}]; unseen {row[f'{on}_a_unseen']:.4f}/{row[f'{on}_b_unseen']:.4f} diff "
              f"{du['diff']:+.4f} [{du['diff_lo']:+.4f}, {du['diff_hi']:+.4f}] ratio {du['ratio']:.3f} "
              f"[{du['ratio_lo']:.3f}, {du['ratio_hi']:.3f}]", flush=True)
    if args.record:
        OUT.mkdir(parents=True, exist_ok=True)
        with open(OUT / "compare.jsonl", "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return 0


def table(args: argparse.Namespace) -> int:
    """round3/fits.md: every fit of fits.jsonl (validation = the choice; test only reported)."""
    rows = [json.loads(line) for line in (OUT / "fits.jsonl").read_text().splitlines() if line.strip()]
    head = ("| fit | params | max_len | dim×layers | dropout | lr, batch, epochs, schedule | other | teacher | "
            "valid NDCG@10 | valid excl. seen | best epoch | CPU s | test NDCG@10 | test excl. seen |")
    lines = [head, "|" + "---|" * 3 + "---|" * 5 + "---:|" * 6]
    for r in rows:
        m, t = r["model"], r["train"]
        other = []
        if t.get("exclude_seen"):
            other.append("exclude_seen")
        if t.get("label_smoothing"):
            other.append(f"label smoothing {t['label_smoothing']}")
        if "--future" in r["command"]:
            other.append("next-" + r["command"].split("--future ")[1].split()[0] + " targets")
        if r.get("distill"):
            d = r["distill"]
            other.append(f"top-{d['top_k']} T={d['temperature']:g} alpha {d['alpha']:g}")
        teacher = "-" if not r.get("teacher") else f"{len(r['teacher'].split('+'))} model(s)"
        lines.append(f"| {r['tag']} | {r['params'] / 1e3:.1f}k | {m['max_len']} | {m['dim']}×{m['layers']} | "
                     f"{m['dropout']} | {t['lr']:g}, {t['batch_size']}, {t['epochs']}, {t['schedule']} | "
                     f"{', '.join(other) or '-'} | {teacher} | {r['valid_ndcg']:.4f} | {r['valid_ndcg_unseen']:.4f} | "
                     f"{r['best_epoch']}/{r['epochs_run']} | {r['cpu_s']:.0f} | {r['test_ndcg']:.4f} | "
                     f"{r['test_ndcg_unseen']:.4f} |")
    (OUT / "fits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("fit")
    add_data_options(s, "movielens-100k")
    add_options(s, (("--dim", int, 64), ("--layers", int, 2), ("--heads", int, 2), ("--dropout", float, 0.2),
                    ("--max-len", int, 50), ("--epochs", int, 40), ("--batch", int, 128), ("--lr", float, 1e-3),
                    ("--wd", float, 0.0)))
    s.add_argument("--schedule", default="constant", choices=("constant", "cosine"))
    s.add_argument("--patience", type=int, default=0, help="0: no early stopping (the best epoch is still kept)")
    s.add_argument("--label-smoothing", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--exclude-seen", action="store_true", help="TrainConfig.exclude_seen")
    s.add_argument("--soft-exclude-seen", action="store_true",
                   help="soft targets skip items earlier in the window (the student's training is unchanged)")
    s.add_argument("--teacher", default="", help="'+'-joined tags of saved fits: distil from their mean log-probs")
    s.add_argument("--top-k", type=int, default=100)
    s.add_argument("--temperature", type=float, default=2.0)
    s.add_argument("--alpha", type=float, default=0.5)
    s.add_argument("--hint", type=float, default=0.0, help="DistillConfig.hint (the first member's hidden states)")
    s.add_argument("--pca-init", default="none", choices=("none", "first", "concat"),
                   help="the student's item table from the teacher's: the first member's, or all members' side by side")
    s.add_argument("--augment-copies", type=int, default=0,
                   help="TrainConfig.augment_copies: item-dropped copies of each training history (rounds 16-17)")
    s.add_argument("--augment-drop", type=float, default=0.2, help="TrainConfig.augment_drop")
    s.add_argument("--extra-1m", action="store_true",
                   help="also train on MovieLens-1M's users, matched to MovieLens-100K's items by title (round 21)")
    s.add_argument("--only-1m", action="store_true",
                   help="train on MovieLens-1M's users alone (matched as --extra-1m): a pre-training for --init; "
                   "--augment-copies has no effect then (the fit's line still records it)")
    s.add_argument("--init", default="", help="start from this saved fit's weights (same shape): a fine-tuning")
    s.add_argument("--future", type=int, default=1, help="train each position on its next N items (label term)")
    s.add_argument("--future-decay", type=float, default=1.0)
    s.add_argument("--future-weight", type=float, default=0.5, help="weight of the next-N term (1 - it: next item)")
    s.set_defaults(fn=fit)
    c = sub.add_parser("compare")
    c.add_argument("pairs", nargs="+", help="A:B, each side a tag, '+'-joined tags (an ensemble), or ','-joined "
                   "tags or ensembles (per-user NDCG averaged over them, e.g. over seeds)")
    c.add_argument("--dataset", default="movielens-100k")
    c.add_argument("--split", default="test", choices=("test", "valid"),
                   help="valid: the validation split only (for a choice; no test figure is computed)")
    c.add_argument("--scores", type=Path, default=Path("/tmp/recs3"))
    c.add_argument("--record", action="store_true", help="append to round3/compare.jsonl")
    c.set_defaults(fn=compare)
    sub.add_parser("table").set_defaults(fn=table)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
