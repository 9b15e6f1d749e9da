"""Training for search-by-image: teacher fine-tuning, embedding, student distillation and the label-only student.

Every picture goes through the runtime's own preprocessing (:mod:`edgecart.runtime.preprocess`), so a model is
trained on exactly the inputs an app will feed it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from edgecart.data.fashion_mnist import ImageSet
from edgecart.models.vision import LiteTeacher, MobileStudent
from edgecart.runtime.manifest import ImagePreprocessing
from edgecart.runtime.preprocess import normalise, to_model_uint8
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .config import StudentConfig, TeacherConfig

Progress = Callable[[str], None]


def model_inputs(images: np.ndarray, pre: ImagePreprocessing) -> torch.Tensor:
    """uint8 pictures -> the model's float input (channels-last memory, which CPU convolutions run fastest on)."""
    x = torch.from_numpy(normalise(to_model_uint8(images, pre), pre))
    return x.contiguous(memory_format=torch.channels_last)


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each (H, W[, C]) picture by up to ``max_shift`` pixels in each direction, zero-filled."""
    if max_shift <= 0:
        return images
    s = max_shift
    n, h, w = images.shape[:3]
    pad = [(0, 0), (s, s), (s, s)] + [(0, 0)] * (images.ndim - 3)
    padded = np.pad(images, pad)
    dy, dx = rng.integers(0, 2 * s + 1, n), rng.integers(0, 2 * s + 1, n)
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _schedule(opt: torch.optim.Optimizer, steps: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    warm = max(1, int(steps * warmup))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, steps - warm))))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def _step(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, loss: torch.Tensor, bar) -> None:
    """One optimiser step on ``loss``, the schedule advanced, the loss shown on the progress bar."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)


def _batches(n: int, batch: int, steps: int, rng: np.random.Generator):
    order = rng.permutation(n)
    pos = 0
    for _ in range(steps):
        if pos + batch > n:
            order, pos = rng.permutation(n), 0
        yield order[pos:pos + batch]
        pos += batch


def train_teacher(train: ImageSet, cfg: TeacherConfig, pre: ImagePreprocessing, *,
                  weights: str | None = None) -> LiteTeacher:
    """Fine-tune ImageNet EfficientNet-Lite0 + embedding head with normalised-softmax cross-entropy.

    The loss is cross-entropy on scaled cosine similarities between the L2-normalised embedding and learned class
    prototypes (NormSoftmax; Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019).
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = LiteTeacher(cfg.dim, len(train.classes), cfg.size, pretrained=cfg.pretrained, weights=weights)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1  # adapt ImageNet statistics to the new pictures within a short fine-tune
    frozen = [model.backbone._conv_stem, model.backbone._bn0, *model.backbone._blocks[:cfg.freeze_blocks]]
    for mod in frozen:
        for p in mod.parameters():
            p.requires_grad_(False)
    model = model.to(memory_format=torch.channels_last).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(train)
    steps = max(1, math.ceil(cfg.epochs * n / cfg.batch_size))
    sched = _schedule(opt, steps, cfg.warmup)
    labels = torch.from_numpy(train.labels)
    bar = tqdm(_batches(n, min(cfg.batch_size, n), steps, rng), total=steps, desc="teacher fine-tune", unit="step",
               leave=False, disable=None)
    for idx in bar:
        x = model_inputs(random_shift(train.images[idx], cfg.shift, rng), pre)
        logits = model.classifier(model(x))
        loss = F.cross_entropy(logits, labels[idx], label_smoothing=cfg.label_smoothing)
        _step(opt, sched, loss, bar)
    return model.eval()


@torch.no_grad()
def embed(model: nn.Module, images: np.ndarray, pre: ImagePreprocessing, *, batch: int = 256,
          desc: str = "embed") -> np.ndarray:
    """(N, D) float32 embeddings of uint8 pictures with the eager model (moved to channels-last memory in place:
    depthwise convolutions run several times faster that way on a CPU)."""
    model = model.eval().to(memory_format=torch.channels_last)
    out = []
    for i in tqdm(range(0, len(images), batch), desc=desc, unit="batch", leave=False, disable=None):
        out.append(model(model_inputs(images[i:i + batch], pre)).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, getattr(model, "dim", 0)), np.float32)


def relational_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """MSE between the batch's pairwise cosine-similarity matrices of student and teacher embeddings."""
    return F.mse_loss(s @ s.T, t @ t.T)


def train_student(data: ImageSet, cfg: StudentConfig, pre: ImagePreprocessing, *, dim: int,
                  teacher_emb: np.ndarray | None = None, prototypes: np.ndarray | None = None,
                  proto_scale: float = 16.0, labelled: np.ndarray | None = None, epochs: float | None = None,
                  desc: str = "student") -> MobileStudent:
    """Train a :class:`MobileStudent`.

    With ``teacher_emb`` (one teacher embedding per picture) the student is distilled into the teacher's space:
    ``w_cosine * (1 - cos(s, t)) + w_relational * relational + w_label * CE`` (+ ``w_soft`` * KL of soft labels);
    the CE and soft labels use the teacher's frozen class prototypes (``prototypes``), so the label loss pulls
    toward the same directions the teacher's catalog uses. Without it the student learns from labels alone with
    its own prototypes. ``labelled`` (booleans) marks which pictures' labels may be used; with no teacher only
    those pictures are trained on.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    distil = teacher_emb is not None
    mask = np.ones(len(data), bool) if labelled is None else np.asarray(labelled, bool)
    pool = np.arange(len(data)) if distil else np.nonzero(mask)[0]
    if len(pool) == 0:
        raise ValueError("no training pictures: the labelled mask is empty")
    model = MobileStudent(dim, len(data.classes), size=pre.size[0], in_channels=pre.channels, width=cfg.width)
    if distil and prototypes is not None:
        model.classifier.weight.data.copy_(torch.from_numpy(prototypes))
        model.classifier.weight.requires_grad_(False)
        model.classifier.scale = proto_scale
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    steps = max(1, math.ceil((epochs or cfg.epochs) * len(pool) / cfg.batch_size))
    sched = _schedule(opt, steps, 0.03)
    labels = torch.from_numpy(data.labels)
    t_all = torch.from_numpy(teacher_emb.astype(np.float32)) if distil else None
    mask_t = torch.from_numpy(mask)
    bar = tqdm(_batches(len(pool), min(cfg.batch_size, len(pool)), steps, rng), total=steps, desc=desc,
               unit="step", leave=False, disable=None)
    for b in bar:
        idx = pool[b]
        s = model(model_inputs(data.images[idx], pre))
        y, m = labels[idx], mask_t[idx]
        loss = s.new_zeros(())
        if distil:
            t = t_all[idx]
            loss = loss + cfg.w_cosine * (1 - (s * t).sum(1)).mean() + cfg.w_relational * relational_loss(s, t)
            if cfg.w_soft > 0 and prototypes is not None:
                t_logits = model.classifier(t)
                loss = loss + cfg.w_soft * cfg.temperature ** 2 * F.kl_div(
                    F.log_softmax(model.classifier(s) / cfg.temperature, 1),
                    F.softmax(t_logits / cfg.temperature, 1), reduction="batchmean")
            if cfg.w_label > 0 and bool(m.any()):
                loss = loss + cfg.w_label * F.cross_entropy(model.classifier(s[m]), y[m])
        else:
            loss = F.cross_entropy(model.classifier(s), y)
        _step(opt, sched, loss, bar)
    return model.eval()
