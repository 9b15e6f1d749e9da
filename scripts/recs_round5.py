"""Round 5 of the recommendations studies (issue 12): cross-fitted soft targets.

    EDGECART_THREADS=1 .venv/bin/python scripts/recs_round5.py crossfit --dataset instacart --folds 3 \\
        --tag I-S16-cf3-s0 --seed 0 --dim 16 --teacher-dim 32 --teacher-seeds 0
    EDGECART_THREADS=1 .venv/bin/python scripts/recs_round5.py trainfit --dataset instacart I-T32-s0+I-T32-s1+I-T32-s2

Why try it: a teacher's soft targets on its own training windows may be partly memorised. On Instacart (593 users)
the old 3 x 32-d teacher (15 epochs) put the training label in its top 10 at 30% of training positions against
18-20% on validation, while on MovieLens-1M, where distillation paid, both are 22%. Result: the idea is refuted.
Cross-fitting hurts on both data sets tried, and the 30-epoch Instacart teacher of round 5 fits its training windows
even more closely (37%) yet is the first whose distillation pays there (benchmarks/results/recs/README.md, "Round
5"). The old teacher was simply undertrained. ``crossfit`` splits the users into ``--folds`` folds, trains one copy
of the teacher recipe per fold on the other folds' users (cached under ``--scores`` for the next student), and gives
each user's training windows the soft targets of the copy that never saw that user. The student then trains on every
user through the build's trainer and is recorded like ``recs_round3.py fit`` (its scores and one JSON line in
``benchmarks/results/recs/round5/fits.jsonl``), so ``recs_round3.py compare`` reads it.
``trainfit`` prints how often a saved teacher puts the training label in its top 10 over the training windows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from recs_round3 import STUDENT, add_data_options, add_options, load_fits, record_fit  # noqa: E402

OUT = Path("benchmarks/results/recs/round5")


def _command() -> str:
    return "EDGECART_THREADS=1 .venv/bin/python " + " ".join(["scripts/recs_round5.py", *sys.argv[1:]])


def _folds(num_users: int, k: int) -> np.ndarray:
    """Fold of each user: a fixed shuffle (seed 0) cut into ``k`` near-equal parts."""
    fold = np.empty(num_users, np.int64)
    fold[np.random.default_rng(0).permutation(num_users)] = np.arange(num_users) % k
    return fold


def _users_split(split, keep: np.ndarray):
    """``split`` restricted to the users in ``keep`` (their validation targets pick the fold teacher's epoch)."""
    pick = lambda seqs: tuple(seqs[u] for u in keep)  # noqa: E731
    return dataclasses.replace(split, train=pick(split.train), valid_history=pick(split.valid_history),
                               valid_target=split.valid_target[keep], test_history=pick(split.test_history),
                               test_target=split.test_target[keep])


def _fold_teacher(args: argparse.Namespace, split, fold: np.ndarray, f: int, seed: int):
    """The teacher recipe trained on every user outside fold ``f`` (cached by recipe, fold and seed)."""
    import torch
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.config import TrainConfig
    from edgecart.recs.train import train

    name = (f"{args.dataset}-cf{args.folds}-f{f}-d{args.teacher_dim}-dr{args.teacher_dropout}"
            f"-e{args.teacher_epochs}-s{seed}")
    mcfg = SASRecConfig(split.num_items, args.max_len, args.teacher_dim, 1, 1, 2, args.teacher_dropout)
    torch.manual_seed(seed)
    model = SASRec(mcfg)
    path = args.scores / f"{name}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path))
        return model.eval()
    tcfg = TrainConfig(epochs=args.teacher_epochs, batch_size=args.batch, lr=args.lr, seed=seed, schedule="cosine")
    log = train(model, _users_split(split, np.flatnonzero(fold != f)), tcfg, desc=name, progress=print)
    args.scores.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    print(json.dumps({"fold_teacher": name, "best_epoch": log.best_epoch, "valid_ndcg": max(log.valid_ndcg)}))
    return model.eval()


def crossfit_soft_targets(args: argparse.Namespace, split, distill):
    """Soft targets for every training window, each user's from the fold teacher that did not train on them."""
    from edgecart.data.sequences import training_windows
    from edgecart.models.sasrec import as_teacher
    from edgecart.recs.train import SoftTargets, teacher_soft_targets

    fold = _folds(split.num_users, args.folds)
    inputs, _ = training_windows(split.train, args.max_len)
    owner = np.concatenate([np.full(len(training_windows((s,), args.max_len)[0]), u)
                            for u, s in enumerate(split.train)])
    if len(owner) != len(inputs):
        raise AssertionError("window owners do not line up with the training windows")
    k = min(distill.top_k, split.num_items)
    index = np.zeros((*inputs.shape, k), np.int64)
    weight = np.zeros((*inputs.shape, k), np.float32)
    for f in range(args.folds):
        teacher = as_teacher([_fold_teacher(args, split, fold, f, s) for s in args.teacher_seeds])
        rows = np.flatnonzero(fold[owner] == f)
        soft = teacher_soft_targets(teacher, inputs[rows], distill)
        index[rows], weight[rows] = soft.index, soft.weight
    return SoftTargets(index, weight, None)


def crossfit(args: argparse.Namespace) -> int:
    import torch
    from edgecart.data.sequences import leave_last_out
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.config import DistillConfig, TrainConfig
    from edgecart.recs.pipeline import _load
    from edgecart.recs.train import train
    from edgecart.threads import set_torch_threads

    set_torch_threads(1)
    data = _load(args.dataset, 5)
    split = leave_last_out(data)
    distill = DistillConfig(top_k=args.top_k, temperature=args.temperature, alpha=args.alpha)
    c0 = time.process_time()
    soft = crossfit_soft_targets(args, split, distill)
    teacher_cpu = time.process_time() - c0
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, seed=args.seed, schedule="cosine")
    mcfg = SASRecConfig(data.num_items, args.max_len, args.dim, 1, 1, 2, args.dropout)
    torch.manual_seed(args.seed)
    model = SASRec(mcfg)
    c1 = time.process_time()
    log = train(model, split, tcfg, soft=soft, distill=distill, desc=f"{args.dataset} {args.tag}", progress=print)
    record_fit(args, model, mcfg, tcfg, split, OUT, _command(), {
        "teacher": f"cross-fitted: {args.folds} folds, {args.teacher_dim}-d dropout {args.teacher_dropout}, "
                   f"{args.teacher_epochs} epochs, seeds {args.teacher_seeds}",
        "distill": dataclasses.asdict(distill), "best_epoch": log.best_epoch, "epochs_run": len(log.losses),
        "valid_curve": list(log.valid_ndcg), "cpu_s": time.process_time() - c1, "teacher_cpu_s": teacher_cpu,
        "wall_s": log.seconds})
    return 0


def trainfit(args: argparse.Namespace) -> int:
    """How often a saved (ensemble) teacher's top-10 soft targets on its own training windows hold the label, over
    every labelled position: its recall@10 on the data it trained on."""
    from edgecart.data.sequences import leave_last_out, training_windows
    from edgecart.models.sasrec import as_teacher
    from edgecart.recs.config import DistillConfig
    from edgecart.recs.pipeline import _load
    from edgecart.recs.train import teacher_soft_targets
    from edgecart.threads import set_torch_threads

    set_torch_threads(1)
    split = leave_last_out(_load(args.dataset, 5))
    members = load_fits(args.teacher, args.scores)
    inputs, targets = training_windows(split.train, members[0].cfg.max_len)
    soft = teacher_soft_targets(as_teacher(members), inputs, DistillConfig(top_k=10))
    hit = (soft.index == targets[..., None]).any(-1)[targets > 0]
    print(f"{args.teacher} on {args.dataset}: training-window recall@10 {hit.mean():.3f} ({hit.size} positions)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("crossfit")
    add_data_options(c, "instacart")
    c.add_argument("--folds", type=int, default=3)
    c.add_argument("--teacher-dim", type=int, default=32)
    c.add_argument("--teacher-dropout", type=float, default=0.2)
    c.add_argument("--teacher-epochs", type=int, default=30)
    c.add_argument("--teacher-seeds", type=int, nargs="+", default=[0], help="one fold teacher per seed: an ensemble")
    add_options(c, STUDENT + (("--top-k", int, 10), ("--temperature", float, 1.0), ("--alpha", float, 0.5)))
    c.set_defaults(fn=crossfit)
    t = sub.add_parser("trainfit")
    t.add_argument("teacher", help="'+'-joined tags of saved fits")
    add_data_options(t, "instacart", tag=False)
    t.set_defaults(fn=trainfit)
    args = p.parse_args(argv)
    if args.cmd == "crossfit" and args.folds < 2:
        p.error("--folds must be >= 2")
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
