"""Round 4 of the recommendations studies: a teacher that mixes the SASRec seed ensemble with item-to-item
co-occurrence, and students distilled from it (issues 10 and 12).

    EDGECART_THREADS=1 .venv/bin/python scripts/recs_round4.py mix --teacher T32-s0+T32-s1+T32-s2
    EDGECART_THREADS=1 .venv/bin/python scripts/recs_round4.py fit --tag S16-mix-s0 --seed 0 --weight 0.5 ...
    EDGECART_THREADS=1 .venv/bin/python scripts/recs_round4.py blend --student S16-label-s0 --weight 0.7

``mix`` scores the mixture ``w * p_sasrec + (1 - w) * p_cooc`` on validation for a grid of ``w`` (the choice) and
reports test. ``fit`` trains a 16-d student on labels plus the mixture's top-K soft targets through the build's
trainer and writes its scores under ``--scores`` in the format of ``recs_round3.py`` (so ``recs_round3.py compare``
reads them), and one JSON line to ``benchmarks/results/recs/round4/fits.jsonl``. ``blend`` scores a saved fit
blended with the pruned item-to-item table exactly as the runtime does, with paired intervals.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from recs_round3 import (  # noqa: E402
    STUDENT,
    _log_softmax,
    add_data_options,
    add_options,
    load_fits,
    record_fit,
    scores_of,
)

OUT = Path("benchmarks/results/recs/round4")


def _command() -> str:
    return "EDGECART_THREADS=1 .venv/bin/python " + " ".join(["scripts/recs_round4.py", *sys.argv[1:]])


def _split(dataset: str):
    from edgecart.data.sequences import leave_last_out
    from edgecart.recs.pipeline import _load

    data = _load(dataset, 5)
    return data, leave_last_out(data)


def mix(args: argparse.Namespace) -> int:
    from edgecart.recs.baselines import CoOccurrence
    from edgecart.recs.metrics import paired_bootstrap, target_ranks, user_ndcg

    data, split = _split(args.dataset)
    co = CoOccurrence(split.train, data.num_items)
    rows = []
    for which, hist, tgt in (("valid", split.valid_history, split.valid_target),
                             ("test", split.test_history, split.test_target)):
        lt = _log_softmax(scores_of(args.teacher, which, args.scores))
        lc = _cooc_logp(co.scores(hist), args.eps)
        for w in args.weights:
            m = _mix(lt, lc, w)
            rows.append({"which": which, "w": w, "ndcg": float(user_ndcg(target_ranks(m, tgt)).mean()),
                         "ndcg_unseen": float(user_ndcg(target_ranks(m, tgt, exclude=hist)).mean())})
            print(json.dumps(rows[-1]), flush=True)
    if args.against:
        lt = _log_softmax(scores_of(args.teacher, "test", args.scores))
        m = _mix(lt, _cooc_logp(co.scores(split.test_history), args.eps), args.pick)
        for b in args.against.split(","):
            sb = scores_of(b, "test", args.scores)
            for excl in (None, split.test_history):
                d = paired_bootstrap(user_ndcg(target_ranks(m, split.test_target, exclude=excl)),
                                     user_ndcg(target_ranks(sb, split.test_target, exclude=excl)))
                print(f"mix w={args.pick} - {b} ({'excl. seen' if excl else 'all'}): {json.dumps(d)}")
    return 0


def blend(args: argparse.Namespace) -> int:
    """A saved fit blended with the item-to-item table as the runtime does (``ItemToItem.blend_scores``): test
    NDCG@10 with and without seen items, paired intervals against co-occurrence and popularity, and against other
    saved fits (``--against``) blended with the same table at their own weight."""
    from edgecart.recs.baselines import CoOccurrence, Popularity
    from edgecart.recs.metrics import paired_bootstrap, target_ranks, user_ndcg

    data, split = _split(args.dataset)
    co = CoOccurrence(split.train, data.num_items)
    i2i = co.item_to_item(args.weight or 1.0, args.neighbours)
    h, t = split.test_history, split.test_target
    b = _blended(args.student, i2i, split, args)
    others = {"co-occurrence": co.scores(h), "popularity": Popularity(split.train, data.num_items).scores(h)}
    others.update({f"{tag} + item-to-item": _blended(tag, i2i, split, args) for tag in args.against})
    for excl, what in ((None, "all items"), (h, "excl. seen")):
        ub = user_ndcg(target_ranks(b, t, exclude=excl))
        for name, sc in others.items():
            d = paired_bootstrap(ub, user_ndcg(target_ranks(sc, t, exclude=excl)))
            print(f"{args.student} + item-to-item ({i2i.items.size} neighbours), {what}: "
                  f"{ub.mean():.4f}; - {name} {d['diff']:+.4f} [{d['diff_lo']:+.4f}, {d['diff_hi']:+.4f}]")
    return 0


def _blended(tag: str, i2i, split, args: argparse.Namespace) -> np.ndarray:
    """Test scores of a saved fit blended with ``i2i``, at ``--weight`` or (0) the weight the build would choose on
    validation (``edgecart.recs.pipeline._best_blend`` over the default ``blend_grid``)."""
    from edgecart.recs.config import RecsConfig
    from edgecart.recs.metrics import evaluate_scores
    from edgecart.recs.pipeline import _best_blend

    if not args.weight:
        sv = scores_of(tag, "valid", args.scores)
        i2i, v = _best_blend(sv, i2i, RecsConfig(), split)
        alone = evaluate_scores(sv, split.valid_target)["ndcg@10"]
        print(f"{tag}: blend {i2i.blend} chosen on validation (NDCG@10 {v:.4f}; alone {alone:.4f})")
    return i2i.blend_scores(scores_of(tag, "test", args.scores), split.test_history)


def _cooc_logp(scores: np.ndarray, eps: float) -> np.ndarray:
    s = np.maximum(np.nan_to_num(scores.astype(np.float64), neginf=0.0), 0.0) + eps
    s[..., 0] = 0.0
    p = s / s[..., 1:].sum(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.log(p)


def _mix(lt: np.ndarray, lc: np.ndarray, w: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        m = np.log(w * np.exp(lt) + (1 - w) * np.exp(lc))
    m[..., 0] = -np.inf
    return m


def mixture_soft_targets(teacher, split, num_items: int, max_len: int, w: float, top_k: int, temperature: float,
                         eps: float, leave_user_out: bool, window: int = 3, recent: int = 5, decay: float = 0.7):
    import torch
    from edgecart.data.sequences import training_windows
    from edgecart.recs.train import SoftTargets

    inputs, _ = training_windows(split.train, max_len)
    v = num_items + 1
    dense = np.zeros((v, v), np.float32)
    users = []
    for u, s in enumerate(split.train):
        s = np.asarray(s, np.int64)
        for d in range(1, min(window, len(s) - 1) + 1):
            np.add.at(dense, (s[:-d], s[d:]), 1.0)
        end = len(s)
        while end >= 2:
            users.append(u)
            end -= max_len
    users = np.asarray(users)
    pop = np.zeros(v, np.float64)
    for s in split.train:
        np.add.at(pop, np.asarray(s, np.int64), 1.0)
    pop[0] = 0
    tie = (pop / (pop.max() + 1.0) * 1e-3).astype(np.float32)
    idx, wts = [], []
    teacher.eval()
    for i in range(0, len(inputs), 128):
        x = inputs[i:i + 128]
        b, n = x.shape
        sc = np.zeros((b, n, v), np.float32)
        for a in range(recent):
            rows = np.zeros_like(x)
            rows[:, a:] = x[:, :n - a]
            sc += decay ** a * dense[rows]  # row 0 (padding) is all zeros
        if leave_user_out:
            for j in range(b):
                s = np.asarray(split.train[users[i + j]], np.int64)
                items, local = np.unique(s, return_inverse=True)
                m = np.zeros((len(items), len(items)), np.float32)
                for d in range(1, min(window, len(s) - 1) + 1):
                    np.add.at(m, (local[:-d], local[d:]), 1.0)
                pos = {int(it): k for k, it in enumerate(items)}
                for a in range(recent):
                    rows = np.zeros(n, np.int64)
                    rows[a:] = x[j, :n - a]
                    for t in range(n):
                        if rows[t]:
                            sc[j, t, items] -= decay ** a * m[pos[int(rows[t])]]
        sc += tie
        lc = _cooc_logp(sc, eps)
        with torch.no_grad():
            xt = torch.from_numpy(x)
            lt = teacher.log_probs(xt) if hasattr(teacher, "log_probs") else torch.log_softmax(
                teacher.score(teacher.encode(xt)), -1)
            lt[..., 0] = -torch.inf
            lt = torch.log_softmax(lt, -1).numpy()
        m = torch.from_numpy(_mix(lt, lc, w).astype(np.float32))
        top, ix = torch.topk(m, top_k, dim=-1)
        idx.append(ix.numpy())
        wts.append(torch.softmax(top / temperature, -1).numpy().astype(np.float32))
    return SoftTargets(np.concatenate(idx), np.concatenate(wts))


def fit(args: argparse.Namespace) -> int:
    import dataclasses

    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig, SASRecEnsemble
    from edgecart.recs.config import DistillConfig, TrainConfig
    from edgecart.recs.train import train
    from edgecart.threads import set_torch_threads

    set_torch_threads(1)
    data, split = _split(args.dataset)
    teachers = load_fits(args.teacher, args.scores)
    teacher = SASRecEnsemble(teachers)
    c0 = time.process_time()
    soft = mixture_soft_targets(teacher, split, data.num_items, args.max_len, args.weight, args.top_k,
                                args.temperature, args.eps, args.leave_user_out)
    soft_cpu = time.process_time() - c0
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, seed=args.seed, schedule="cosine")
    mcfg = SASRecConfig(data.num_items, args.max_len, args.dim, 1, 1, 2, args.dropout)
    torch.manual_seed(args.seed)
    model = SASRec(mcfg)
    distill = DistillConfig(top_k=args.top_k, temperature=args.temperature, alpha=args.alpha)
    c0 = time.process_time()
    log = train(model, split, tcfg, soft=soft, distill=distill, desc=f"{args.dataset} {args.tag}", progress=print)
    record_fit(args, model, mcfg, tcfg, split, OUT, _command(), {
        "teacher": args.teacher, "weight": args.weight, "leave_user_out": args.leave_user_out,
        "distill": dataclasses.asdict(distill), "best_epoch": log.best_epoch, "epochs_run": len(log.losses),
        "valid_curve": list(log.valid_ndcg), "soft_cpu_s": soft_cpu, "cpu_s": time.process_time() - c0})
    return 0


def fitkl(args: argparse.Namespace) -> int:
    """A 16-d student trained on labels plus the full-catalogue KL divergence to a saved (ensemble) teacher, computed
    on the fly at every labelled position (Hinton et al. 2015 soft targets, no top-K cut); scores and one JSON line
    as ``fit``."""

    import torch
    from edgecart.compress.distill import DistillConfig as SharedConfig
    from edgecart.compress.distill import DistillData, distill
    from edgecart.compress.losses import KLDivergence, SequenceLabelCE
    from edgecart.data.sequences import training_windows
    from edgecart.models.sasrec import SASRec, SASRecConfig, SASRecEnsemble
    from edgecart.recs.config import TrainConfig
    from edgecart.recs.train import _Positions, evaluate_model
    from edgecart.threads import set_torch_threads

    set_torch_threads(1)
    data, split = _split(args.dataset)
    members = load_fits(args.teacher, args.scores)
    ens = SASRecEnsemble(members).eval()

    class _TeacherPositions(torch.nn.Module):
        def forward(self, history: torch.Tensor) -> dict[str, torch.Tensor]:
            lp = ens.log_probs(history)[history != 0]
            return {"logits": lp.masked_fill(torch.isinf(lp), -1.0e4)}

    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, seed=args.seed, schedule="cosine")
    mcfg = SASRecConfig(data.num_items, args.max_len, args.dim, 1, 1, 2, args.dropout)
    torch.manual_seed(args.seed)
    model = SASRec(mcfg)
    inputs, targets = training_windows(split.train, args.max_len)
    terms = (SequenceLabelCE(weight=1.0 - args.alpha, student="logits"),
             KLDivergence(weight=args.alpha, temperature=args.temperature, student="logits", teacher="logits"))
    config = SharedConfig(terms, epochs=tcfg.epochs, batch_size=tcfg.batch_size, lr=tcfg.lr, schedule="cosine",
                          seed=tcfg.seed)
    c0 = time.process_time()
    res = distill(_Positions(model), _TeacherPositions(), DistillData(torch.from_numpy(inputs),
                                                                      torch.from_numpy(targets)), config,
                  validate=lambda _m: evaluate_model(model, split.valid_history, split.valid_target)["ndcg@10"],
                  desc=f"{args.dataset} {args.tag}")
    record_fit(args, model, mcfg, tcfg, split, OUT, _command(), {
        "teacher": args.teacher, "kd": "full-catalogue KL", "alpha": args.alpha, "temperature": args.temperature,
        "best_epoch": res.best_epoch, "epochs_run": res.epochs_run, "valid_curve": list(res.scores),
        "cpu_s": time.process_time() - c0})
    return 0


def _student_arguments(p: argparse.ArgumentParser, dataset: str, teacher: str) -> None:
    """The options ``fit`` and ``fitkl`` share: the fit's tag and data, the teacher, the student and its training."""
    add_data_options(p, dataset)
    p.add_argument("--teacher", default=teacher, help="'+'-joined tags of saved fits (an ensemble)")
    add_options(p, STUDENT + (("--temperature", float, 2.0), ("--alpha", float, 0.5)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mix")
    m.add_argument("--teacher", default="T32-s0+T32-s1+T32-s2")
    m.add_argument("--dataset", default="movielens-100k")
    m.add_argument("--scores", type=Path, default=Path("/tmp/recs3"))
    m.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0])
    m.add_argument("--eps", type=float, default=0.01)
    m.add_argument("--pick", type=float, default=0.5)
    m.add_argument("--against", default="")
    m.set_defaults(fn=mix)
    b = sub.add_parser("blend")
    b.add_argument("--student", default="S16-label-s0")
    b.add_argument("--weight", type=float, default=0.7, help="0: chosen on validation from 0.1 ... 1.0")
    b.add_argument("--neighbours", type=int, default=50)
    b.add_argument("--dataset", default="movielens-100k")
    b.add_argument("--scores", type=Path, default=Path("/tmp/recs3"))
    b.add_argument("--against", nargs="*", default=[], help="saved fits to compare with, each blended the same way")
    b.set_defaults(fn=blend)
    s = sub.add_parser("fit")
    _student_arguments(s, "movielens-100k", "T32-s0+T32-s1+T32-s2")
    s.add_argument("--weight", type=float, default=0.5)
    s.add_argument("--eps", type=float, default=0.01)
    s.add_argument("--leave-user-out", action="store_true")
    s.add_argument("--top-k", type=int, default=100)
    s.set_defaults(fn=fit)
    k = sub.add_parser("fitkl")
    _student_arguments(k, "instacart", "I-T32-s0+I-T32-s1+I-T32-s2")
    k.set_defaults(fn=fitkl)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
