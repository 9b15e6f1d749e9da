"""Train SASRec models: full-softmax cross-entropy (teacher, plain student) and ranking distillation (student), both
through the shared distillation trainer (:mod:`edgecart.compress.distill`) with loss terms from
:mod:`edgecart.compress.losses`.

Model selection: after every epoch the model is scored on the validation targets (full ranking) and the best
epoch's weights are kept — the test targets are never looked at.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from edgecart.compress.distill import DistillConfig as SharedConfig
from edgecart.compress.distill import DistillData
from edgecart.compress.distill import distill as distill_
from edgecart.compress.losses import LossTerm, MaskedHint, MaskedLabelRankingKD, MaskedRankingKD, SequenceLabelCE
from edgecart.data.sequences import Split, drop_copies, pad_batch, training_windows
from edgecart.models.sasrec import SASRec, SASRecEnsemble

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
                   k: int = 10, exclude_seen: bool = False) -> dict[str, float]:
    return evaluate_scores(eager_scores(model, histories), targets, k, exclude=histories if exclude_seen else None)


def seen_mask(history: torch.Tensor, num_columns: int) -> torch.Tensor:
    """Bool [B, N, num_columns]: at each position, the items of ``history`` [B, N] up to and including it (column 0,
    padding, never)."""
    onehot = torch.zeros(*history.shape, num_columns, dtype=torch.int16)
    onehot.scatter_(2, history.unsqueeze(-1), 1)
    seen = onehot.cumsum(dim=1) > 0
    seen[..., 0] = False
    return seen


@torch.no_grad()
def teacher_soft_targets(teacher: SASRec | SASRecEnsemble, inputs: np.ndarray, cfg: DistillConfig,
                         batch: int = 256, exclude_seen: bool = False) -> SoftTargets:
    """Run the teacher once over the training windows and keep its top-K (padding excluded) per position, and its
    hidden states when ``cfg.hint`` asks for a hint loss. An ensemble teacher ranks by its members' mean
    log-probabilities (the weights are the softmax of those at the temperature). ``exclude_seen``: items earlier in
    the window are never soft positives (for students trained with ``TrainConfig.exclude_seen``)."""
    teacher.eval()
    idx, wts, hid = [], [], []
    k = min(cfg.top_k, teacher.cfg.num_items)
    for i in range(0, len(inputs), batch):
        x = torch.from_numpy(inputs[i:i + batch])
        ensemble = isinstance(teacher, SASRecEnsemble)
        h = teacher.encode(x) if cfg.hint > 0 or not ensemble else None  # an ensemble's ranks need no encode
        if ensemble:
            logits = teacher.log_probs(x)
        else:
            logits = teacher.score(h)
            logits[..., 0] = -torch.inf
        if exclude_seen:
            logits = logits.masked_fill(seen_mask(x, logits.shape[-1]), -torch.inf)
        top, ix = torch.topk(logits, k, dim=-1)
        idx.append(ix.numpy())
        wts.append(torch.softmax(top / cfg.temperature, dim=-1).numpy().astype(np.float32))
        if cfg.hint > 0:
            hid.append(h.numpy().astype(np.float16))
    if not idx:
        raise ValueError("no training windows to distil on")
    return SoftTargets(np.concatenate(idx), np.concatenate(wts), np.concatenate(hid) if hid else None)


def training_split(split: Split, cfg: TrainConfig) -> Split:
    """What :func:`train` learns from: ``split`` with ``cfg.augment_copies`` item-dropped copies of each training
    history after the originals (:func:`edgecart.data.sequences.drop_copies`, seeded by ``cfg.seed``); validation
    and test untouched; ``split`` itself without copies. Soft targets for a distilled student are made on its
    windows, so the student matches the teacher on histories the log never held (matching a teacher on altered
    inputs: Beyer et al., "Knowledge distillation: a good teacher is patient and consistent", CVPR 2022)."""
    if not cfg.augment_copies:
        return split
    extra = drop_copies(split.train, cfg.augment_copies, cfg.augment_drop, cfg.seed)
    return dataclasses.replace(split, train=tuple(split.train) + extra)


def pca_init(student: SASRec, teacher: SASRec | SASRecEnsemble) -> None:
    """Set the student's item table to the teacher's projected on its top ``student dim`` principal directions
    (uncentred SVD, so dot products between items are kept as well as a rank-d table can), rescaled to the spread
    of the student's own random initialisation; the padding row stays zero. An ensemble gives its first member's
    table."""
    pca_init_from_table(student, teacher.items.weight)


@torch.no_grad()
def pca_init_from_table(student: SASRec, table: torch.Tensor) -> None:
    """:func:`pca_init` from any item table [num_items + 1, d] (row 0 padding), e.g. several members' side by side."""
    t = table.detach().double()
    ds = student.cfg.dim
    if ds > t.shape[1]:
        raise ValueError(f"PCA init needs student dim {ds} <= teacher dim {t.shape[1]}")
    _, _, vh = torch.linalg.svd(t[1:], full_matrices=False)
    proj = t @ vh[:ds].T
    proj = proj / proj[1:].std().clamp_min(1e-12) * 0.02
    student.items.weight.copy_(proj.float())
    student.items.weight[0].zero_()


_EXCLUDED = -1.0e4  # finite: a masked column gets no probability and no NaN gradient


class _Positions(torch.nn.Module):
    """The SASRec seen by the shared trainer: scores of every item and hidden states [M, ...] at the M non-padding
    positions of the batch, row-major — the labelled ones, as training windows pad inputs and targets at the same
    places (the masked loss terms take outputs in this form; padded positions are never scored)."""

    def __init__(self, model: SASRec, exclude_seen: bool = False) -> None:
        super().__init__()
        self.model = model
        self.exclude_seen = exclude_seen

    def forward(self, history: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        keep = history != 0
        hidden = self.model.encode(history)[keep]
        logits = self.model.score(hidden)
        if self.exclude_seen:
            seen = seen_mask(history, logits.shape[-1])
            if targets is not None:  # a re-seen target stays a class of its own position
                seen.scatter_(2, targets.unsqueeze(-1), False)
            logits = logits.masked_fill(seen[keep], _EXCLUDED)
        return {"logits": logits, "hidden": hidden}


def loss_terms(distill: DistillConfig | None, label_smoothing: float = 0.0) -> tuple[LossTerm, ...]:
    """The shared trainer's loss terms for a recommendations run: masked label cross-entropy over the full catalogue
    (weight ``1 - alpha`` when distilling), ranking KD over the teacher's top-K at ``temperature`` (weight
    ``alpha``), a hint on the hidden states through a projection (weight ``hint``); terms of weight 0 are left out;
    ``label_smoothing`` smooths the label term. At temperature 1 without label smoothing the label and ranking
    terms are one :class:`~edgecart.compress.losses.MaskedLabelRankingKD` (the same loss over one full softmax
    instead of two: a distilled step costs 1.00–1.06 label-only ones instead of 1.63–1.69, measured by
    ``edgecart.benchmarks.distill_step``)."""
    if distill is None:
        return (SequenceLabelCE(student="logits", label_smoothing=label_smoothing),)
    terms: list[LossTerm] = []
    if 0 < distill.alpha < 1 and distill.temperature == 1 and not label_smoothing:
        terms.append(MaskedLabelRankingKD(alpha=distill.alpha, top_k=distill.top_k, student="logits"))
    else:
        if distill.alpha < 1:
            terms.append(SequenceLabelCE(weight=1.0 - distill.alpha, student="logits",
                                         label_smoothing=label_smoothing))
        if distill.alpha > 0:
            terms.append(MaskedRankingKD(weight=distill.alpha, top_k=distill.top_k,
                                         temperature=distill.temperature, student="logits"))
    if distill.hint > 0:
        terms.append(MaskedHint(weight=distill.hint, student="hidden", teacher="hidden"))
    return tuple(terms)


def train(model: SASRec, split: Split, cfg: TrainConfig, *, soft: SoftTargets | None = None,
          distill: DistillConfig | None = None, desc: str = "train",
          progress: Callable[[str], None] | None = None) -> TrainLog:
    """Train ``model`` on ``split.train`` through the shared trainer (:func:`edgecart.compress.distill`); with
    ``soft`` and ``distill``, add the ranking-distillation and hint terms (:func:`loss_terms`). The best epoch on
    validation NDCG@10 is kept; ``cfg.patience`` stops early."""
    if (soft is None) != (distill is None):
        raise ValueError("pass both soft targets and a DistillConfig for distillation, or neither")
    inputs, targets = training_windows(training_split(split, cfg).train, model.cfg.max_len)
    if len(inputs) == 0:
        raise ValueError("no training windows: every training sequence is shorter than 2 items")
    if not np.array_equal(inputs == 0, targets == 0):
        raise ValueError("training windows must pad inputs and targets at the same positions")
    if soft is not None and soft.index.shape[:2] != inputs.shape:
        raise ValueError("soft targets were made for other training windows (make them on the windows of "
                         "training_split(split, cfg).train)")
    terms = loss_terms(distill, cfg.label_smoothing)
    cached = None
    if soft is not None and distill is not None:
        if distill.hint > 0 and soft.hidden is None:
            raise ValueError("a hint loss needs the teacher's hidden states: make the soft targets with hint > 0")
        cached = {"index": torch.from_numpy(soft.index), "weight": torch.from_numpy(soft.weight)}
        if distill.hint > 0 and soft.hidden is not None:
            cached["hidden"] = torch.from_numpy(soft.hidden)
    x, y = torch.from_numpy(inputs), torch.from_numpy(targets)
    data = DistillData((x, y) if cfg.exclude_seen else x, y, cached)
    config = SharedConfig(terms, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                          weight_decay=cfg.weight_decay, schedule=cfg.schedule, patience=cfg.patience, seed=cfg.seed)

    def validate(_m: torch.nn.Module) -> float:
        return evaluate_model(model, split.valid_history, split.valid_target,
                              exclude_seen=cfg.exclude_seen)["ndcg@10"]

    result = distill_(_Positions(model, cfg.exclude_seen), None, data, config, validate=validate, desc=desc)
    model.eval()
    log = TrainLog(result.losses, result.scores, result.best_epoch, result.seconds)
    if progress:
        progress(f"{desc}: {result.epochs_run} of {cfg.epochs} epochs in {log.seconds:.0f} s, best validation "
                 f"NDCG@10 {max(result.scores):.4f} (epoch {result.best_epoch})")
    return log
