"""Embedding, distillation and linear probes for the text task (torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from edgecart.compress.distill import DistillConfig, DistillData, distill
from edgecart.compress.losses import Cosine, LossTerm, MaskedLabelCE, Relational
from edgecart.models.text import EncoderConfig, TextEncoder
from edgecart.progress import progress_iter
from edgecart.runtime.text import TextTokenizer
from torch.nn import functional as F  # noqa: N812

from .config import StudentSize, StudentTrain


def tokenize(tokenizer: TextTokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    return tokenizer.encode_batch(list(texts))


def embed(model: TextEncoder, ids: np.ndarray, mask: np.ndarray, batch: int = 64, desc: str = "embed") -> np.ndarray:
    """(N, D) embeddings; batches of similar length, trimmed to their longest text (same result, less work)."""
    n = len(ids)
    out = np.zeros((n, model.cfg.embedding_dim), np.float32)
    if n == 0:
        return out
    lengths = mask.sum(axis=1)
    order = np.argsort(-lengths, kind="stable")
    starts = range(0, n, batch)
    model.eval()
    with torch.no_grad():
        for s in progress_iter(starts, desc=desc, unit="batch", total=len(starts)):
            idx = order[s:s + batch]
            width = max(1, int(lengths[idx].max()))
            x = torch.from_numpy(ids[idx, :width])
            m = torch.from_numpy(mask[idx, :width])
            out[idx] = model(x, m).numpy()
    return out


def make_student(size: StudentSize, vocab_size: int, max_len: int, out_dim: int, teacher: TextEncoder | None = None,
                 old_ids: np.ndarray | None = None, seed: int = 0) -> TextEncoder:
    """A small encoder whose output lives in the teacher's ``out_dim``-d space. With ``teacher`` and ``old_ids``
    (student id -> teacher id), its token and position tables start as the teacher's, projected on their top
    ``hidden`` principal directions."""
    torch.manual_seed(seed)
    cfg = EncoderConfig(vocab_size=vocab_size, hidden=size.hidden, layers=size.layers, heads=size.heads,
                        intermediate=size.intermediate, max_positions=max_len, type_vocab=1, out_dim=out_dim,
                        layer_norm_eps=1e-12, dropout=0.1)
    student = TextEncoder(cfg, max_len)
    if teacher is not None and old_ids is not None:
        with torch.no_grad():
            w = teacher.word.weight[torch.as_tensor(old_ids)]
            mean = w.mean(0, keepdim=True)
            _, _, v = torch.linalg.svd(w - mean, full_matrices=False)
            basis = v[:size.hidden].T  # (teacher hidden, student hidden)
            scale = 1.0 / float(((w - mean) @ basis).std())
            student.word.weight.copy_(((w - mean) @ basis) * scale)
            student.position.weight.copy_((teacher.position.weight[:max_len] @ basis) * scale)
            student.token_type.weight.copy_((teacher.token_type.weight[:1] @ basis) * scale)
    return student


#: Names the training procedure; with the trainer's code (:func:`trainer_key`) part of the students' cache keys.
TRAINER = "edgecart.compress.distill/v1"


@dataclass(frozen=True)
class TrainLog:
    seconds: float
    losses: tuple[float, ...]


class _WithHeads(torch.nn.Module):
    """The encoder plus temporary label heads: ``{"embedding": e, "head0": logits, ...}``."""

    def __init__(self, encoder: TextEncoder, heads: torch.nn.ModuleList) -> None:
        super().__init__()
        self.encoder, self.heads = encoder, heads

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.encoder(ids, mask)
        return {"embedding": e, **{f"head{i}": h(e) for i, h in enumerate(self.heads)}}


def student_losses(cfg: StudentTrain, num_heads: int, distil: bool) -> tuple[LossTerm, ...]:
    """Distilled: ``cosine + relational × relational-KD + label × Σ CE``; labels only: ``Σ CE`` (one masked CE per
    label set, rows without a label skipped)."""
    ce_weight = cfg.label if distil else 1.0
    ce = tuple(MaskedLabelCE(weight=ce_weight, student=f"head{i}", column=i, logit_scale=10.0)
               for i in range(num_heads))
    if not distil:
        return ce
    return (Cosine(student="embedding"), Relational(weight=cfg.relational, student="embedding"), *ce)


def train_student(student: TextEncoder, ids: np.ndarray, mask: np.ndarray, labels: Sequence[np.ndarray],
                  num_classes: Sequence[int], cfg: StudentTrain, teacher_emb: np.ndarray | None = None,
                  desc: str = "student") -> TrainLog:
    """Train in place through :func:`edgecart.compress.distill` (AdamW, warm-up + cosine, gradient clipping). With
    ``teacher_emb`` (one row per text): distillation (see :func:`student_losses`); without: labels only. A label
    below 0 marks a row without that label. The label heads are temporary (routing heads are fitted afterwards as
    linear probes)."""
    torch.manual_seed(cfg.seed)
    dim = student.cfg.embedding_dim
    heads = torch.nn.ModuleList(torch.nn.Linear(dim, c) for c in num_classes)
    lengths = mask.sum(axis=1)

    def batch(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:  # trimmed to the batch's longest text
        width = max(1, int(lengths[rows].max()))
        return torch.from_numpy(ids[rows, :width]), torch.from_numpy(mask[rows, :width])

    y = torch.as_tensor(np.stack([np.asarray(v, np.int64) for v in labels], axis=1))
    data = DistillData(batch, labels=y, size=len(ids),
                       teacher_outputs=torch.from_numpy(teacher_emb) if teacher_emb is not None else None)
    config = DistillConfig(student_losses(cfg, len(num_classes), teacher_emb is not None), epochs=cfg.epochs,
                           batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=0.01, schedule="cosine", warmup=0.1,
                           grad_clip=1.0, seed=cfg.seed)
    result = distill(_WithHeads(student, heads), None, data, config, desc=desc)
    student.eval()
    return TrainLog(result.seconds, result.losses)


def trainer_key() -> str:
    """What the students' cache keys know of the trainer: :data:`TRAINER` and a hash of the code that trains them
    (this module's training functions, ``edgecart.compress.distill`` and ``edgecart.compress.losses``), so an edit
    to any of them retrains the students instead of loading weights trained by other code."""
    import hashlib
    import importlib
    import inspect

    h = hashlib.sha256(TRAINER.encode())
    parts = (importlib.import_module("edgecart.compress.distill"), importlib.import_module("edgecart.compress.losses"),
             _WithHeads, student_losses, train_student)
    for part in parts:
        try:
            h.update(inspect.getsource(part).encode("utf-8"))
        except (OSError, TypeError):  # no source shipped: the version tag alone
            h.update(getattr(part, "__name__", "?").encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Probe:
    """A softmax-regression head: ``probs = softmax(x @ weights + bias)``; ``weight_decay`` chosen on validation."""

    weights: np.ndarray
    bias: np.ndarray
    weight_decay: float
    valid_accuracy: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(np.asarray(x, np.float32) @ self.weights + self.bias, axis=1)


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray, num_classes: int,
              decays: Sequence[float] = (1e-4, 1e-3, 1e-2), steps: int = 100) -> Probe:
    """Multinomial logistic regression (full-batch L-BFGS) for each weight decay; keeps the best on validation."""
    if not decays:
        raise ValueError("fit_probe needs at least one weight decay to try")
    xt, yt = torch.from_numpy(np.asarray(x_train, np.float32)), torch.as_tensor(y_train, dtype=torch.long)
    xv = np.asarray(x_valid, np.float32)
    best: Probe | None = None
    for wd in decays:
        torch.manual_seed(0)
        lin = torch.nn.Linear(xt.shape[1], num_classes)
        opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure(lin: torch.nn.Linear = lin, opt: torch.optim.LBFGS = opt, wd: float = wd) -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(lin(xt), yt) + wd * (lin.weight ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        w = lin.weight.detach().numpy().T.copy()
        b = lin.bias.detach().numpy().copy()
        acc = float(np.mean(np.argmax(xv @ w + b, axis=1) == np.asarray(y_valid)))
        if best is None or acc > best.valid_accuracy:
            best = Probe(w.astype(np.float32), b.astype(np.float32), wd, acc)
    return best  # type: ignore[return-value]


__all__ = ["TRAINER", "Probe", "TrainLog", "embed", "fit_probe", "make_student", "student_losses", "tokenize",
           "train_student", "trainer_key"]
