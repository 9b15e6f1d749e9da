"""Train SASRec models: full-softmax cross-entropy (teacher, plain student) and ranking distillation (student).

Model selection: after every epoch the model is scored on the validation targets (full ranking) and the best
epoch's weights are kept — the test targets are never looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from edgecart.data.sequences import Split, pad_batch, training_windows
from edgecart.models.sasrec import SASRec
from edgecart.progress import progress_iter
from torch.nn import functional as F  # noqa: N812

from .config import DistillConfig, TrainConfig
from .metrics import evaluate_scores


@dataclass(frozen=True)
class SoftTargets:
    """The teacher's top-K items per (window, position) and their weights (softmax over the K, rows sum to 1);
    ``hidden``: the teacher's hidden states (float16 [W, N, teacher dim]) when a hint loss needs them."""

    index: np.ndarray  # int64 [W, N, K]
    weight: np.ndarray  # float32 [W, N, K]
    hidden: np.ndarray | None = None


@dataclass(frozen=True)
class TrainLog:
    losses: tuple[float, ...]
    valid_ndcg: tuple[float, ...]
    best_epoch: int
    seconds: float


@torch.no_grad()
def eager_scores(model: SASRec, histories: tuple[np.ndarray, ...] | list[np.ndarray], batch: int = 256) -> np.ndarray:
    """Scores [U, num_items + 1] of the eager model for each history (last max_len items, left-padded)."""
    model.eval()
    x = pad_batch(histories, model.cfg.max_len)
    out = [model(torch.from_numpy(x[i:i + batch])).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.cfg.num_items + 1), np.float32)


def evaluate_model(model: SASRec, histories: tuple[np.ndarray, ...], targets: np.ndarray,
                   k: int = 10) -> dict[str, float]:
    return evaluate_scores(eager_scores(model, histories), targets, k)


@torch.no_grad()
def teacher_soft_targets(teacher: SASRec, inputs: np.ndarray, cfg: DistillConfig, batch: int = 256) -> SoftTargets:
    """Run the teacher once over the training windows and keep its top-K (padding excluded) per position, and its
    hidden states when ``cfg.hint`` asks for a hint loss."""
    teacher.eval()
    idx, wts, hid = [], [], []
    k = min(cfg.top_k, teacher.cfg.num_items)
    for i in range(0, len(inputs), batch):
        h = teacher.encode(torch.from_numpy(inputs[i:i + batch]))
        logits = teacher.score(h)
        logits[..., 0] = -torch.inf
        top, ix = torch.topk(logits, k, dim=-1)
        idx.append(ix.numpy())
        wts.append(torch.softmax(top / cfg.temperature, dim=-1).numpy().astype(np.float32))
        if cfg.hint > 0:
            hid.append(h.numpy().astype(np.float16))
    if not idx:
        raise ValueError("no training windows to distil on")
    return SoftTargets(np.concatenate(idx), np.concatenate(wts), np.concatenate(hid) if hid else None)


@torch.no_grad()
def pca_init(student: SASRec, teacher: SASRec) -> None:
    """Set the student's item table to the teacher's projected on its top ``student dim`` principal directions
    (uncentred SVD, so dot products between items are kept as well as a rank-d table can), rescaled to the spread
    of the student's own random initialisation; the padding row stays zero."""
    t = teacher.items.weight.detach().double()
    ds = student.cfg.dim
    if ds > t.shape[1]:
        raise ValueError(f"PCA init needs student dim {ds} <= teacher dim {t.shape[1]}")
    _, _, vh = torch.linalg.svd(t[1:], full_matrices=False)
    proj = t @ vh[:ds].T
    proj = proj / proj[1:].std().clamp_min(1e-12) * 0.02
    student.items.weight.copy_(proj.float())
    student.items.weight[0].zero_()


def train(model: SASRec, split: Split, cfg: TrainConfig, *, soft: SoftTargets | None = None,
          distill: DistillConfig | None = None, desc: str = "train",
          progress: Callable[[str], None] | None = None) -> TrainLog:
    """Train ``model`` on ``split.train``; with ``soft`` and ``distill``, add the ranking-distillation term."""
    import time

    if (soft is None) != (distill is None):
        raise ValueError("pass both soft targets and a DistillConfig for distillation, or neither")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    inputs, targets = training_windows(split.train, model.cfg.max_len)
    if soft is not None and soft.index.shape[:2] != inputs.shape:
        raise ValueError("soft targets were made for other training windows")
    hint = None
    if distill is not None and distill.hint > 0:
        if soft is None or soft.hidden is None:
            raise ValueError("a hint loss needs the teacher's hidden states: make the soft targets with hint > 0")
        hint = torch.nn.Linear(model.cfg.dim, soft.hidden.shape[-1])
    params = list(model.parameters()) + (list(hint.parameters()) if hint is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses, valid = [], []
    best, best_state, best_epoch = -1.0, None, 0
    bar = progress_iter(range(cfg.epochs), desc=desc, unit="epoch")
    for epoch in bar:
        model.train()
        order = rng.permutation(len(inputs))
        total, batches = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            b = order[i:i + cfg.batch_size]
            x, y = torch.from_numpy(inputs[b]), torch.from_numpy(targets[b])
            mask = y != 0
            hidden = model.encode(x)[mask]  # [M, dim]
            logits = model.score(hidden)  # [M, num_items + 1]
            loss = F.cross_entropy(logits, y[mask])
            if soft is not None and distill is not None and distill.alpha > 0:
                si = torch.from_numpy(soft.index[b])[mask]
                sw = torch.from_numpy(soft.weight[b])[mask]
                logp = F.log_softmax(logits / distill.temperature, dim=-1)
                kd = -(logp.gather(1, si) * sw).sum(1).mean() * distill.temperature ** 2
                loss = (1.0 - distill.alpha) * loss + distill.alpha * kd
            if hint is not None and soft is not None and soft.hidden is not None and distill is not None:
                th = torch.from_numpy(soft.hidden[b].astype(np.float32))[mask]
                loss = loss + distill.hint * F.mse_loss(hint(hidden), th)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            batches += 1
        losses.append(total / max(batches, 1))
        ndcg = evaluate_model(model, split.valid_history, split.valid_target)["ndcg@10"]
        valid.append(ndcg)
        if ndcg > best:
            best, best_epoch = ndcg, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        bar.set_postfix(loss=f"{losses[-1]:.3f}", val_ndcg=f"{ndcg:.4f}")
        if cfg.patience is not None and epoch + 1 - best_epoch >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    log = TrainLog(tuple(losses), tuple(valid), best_epoch, time.perf_counter() - t0)
    if progress:
        progress(f"{desc}: {len(losses)} of {cfg.epochs} epochs in {log.seconds:.0f} s, best validation NDCG@10 "
                 f"{best:.4f} (epoch {best_epoch})")
    return log
