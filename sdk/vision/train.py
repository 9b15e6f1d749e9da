"""Training for search-by-image: teacher fine-tuning, embedding, student distillation and the label-only student.

Every picture goes through the runtime's own preprocessing (:mod:`edgecart.runtime.preprocess`), so a model is
trained on exactly the inputs an app will feed it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from edgecart.data.image_folder import ImageSet
from edgecart.models.vision import LiteTeacher, MobileStudent
from edgecart.progress import progress_iter
from edgecart.runtime.manifest import ImagePreprocessing
from edgecart.runtime.preprocess import normalise, to_model_uint8
from torch import nn
from torch.nn import functional as F

from .config import StudentConfig, TeacherConfig

Progress = Callable[[str], None]


def model_inputs(images: np.ndarray, pre: ImagePreprocessing) -> torch.Tensor:
    """uint8 pictures -> the model's float input (channels-last memory, which CPU convolutions run fastest on)."""
    x = torch.from_numpy(normalise(to_model_uint8(images, pre), pre))
    return x.contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Shopper-style variation of a batch of normalised pictures (N, C, H, W in [-1, 1]): a random zoom-in crop
    (to 70% of the side at ``strength`` 1), a shift, a horizontal flip, and brightness / contrast / saturation
    jitter of up to +-20%. ``strength`` 0 returns the batch unchanged."""
    if strength <= 0:
        return x
    n = x.shape[0]

    def u(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen) * 2 - 1

    scale = 1 - 0.3 * strength * torch.rand(n, generator=gen)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, 0, 2], theta[:, 1, 2] = u(n) * (1 - scale), u(n) * (1 - scale)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    j = 0.2 * strength
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (1 + j * u(n, 1, 1, 1)) + mean + j * u(n, 1, 1, 1)
    if x.shape[1] == 3:
        gray = x.mean(dim=1, keepdim=True)
        x = gray + (x - gray) * (1 + j * u(n, 1, 1, 1))
    return x.clamp(-1, 1).contiguous(memory_format=torch.channels_last)


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
    bar.set_postfix(loss=f"{loss.item():.3f}")


def _batches(n: int, batch: int, steps: int, rng: np.random.Generator):
    order = rng.permutation(n)
    pos = 0
    for _ in range(steps):
        if pos + batch > n:
            order, pos = rng.permutation(n), 0
        yield order[pos:pos + batch]
        pos += batch


def train_teacher(train: ImageSet, cfg: TeacherConfig, pre: ImagePreprocessing, *,
                  validate: Callable[[nn.Module], float] | None = None, progress: Progress | None = None,
                  weights: str | None = None) -> tuple[LiteTeacher, list[dict[str, float]]]:
    """Fine-tune ImageNet EfficientNet-Lite0 + embedding head with normalised-softmax cross-entropy.

    The loss is cross-entropy on scaled cosine similarities between the L2-normalised embedding and learned class
    prototypes (NormSoftmax; Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019).
    With ``validate`` (model -> validation score, higher is better) the model is scored after every epoch, the best
    epoch's weights are kept and training stops after ``cfg.patience`` epochs without improvement. Returns the model
    and the per-epoch history.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = LiteTeacher(cfg.dim, len(train.classes), cfg.size, pretrained=cfg.pretrained, weights=weights,
                        in_channels=pre.channels)
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
    batch = min(cfg.batch_size, n)
    per_epoch = max(1, math.ceil(n / batch))
    sched = _schedule(opt, per_epoch * cfg.epochs, cfg.warmup)
    labels = torch.from_numpy(train.labels)
    history: list[dict[str, float]] = []
    best, best_state, since = -1.0, None, 0
    for epoch in range(cfg.epochs):
        model.train()
        bar = progress_iter(_batches(n, batch, per_epoch, rng), total=per_epoch, unit="step",
                            desc=f"teacher fine-tune epoch {epoch + 1}/{cfg.epochs}")
        for idx in bar:
            x = augment(model_inputs(train.images[idx], pre), cfg.augment, gen)
            logits = model.classifier(model(x))
            loss = F.cross_entropy(logits, labels[idx], label_smoothing=cfg.label_smoothing)
            _step(opt, sched, loss, bar)
        rec = {"epoch": epoch + 1, "loss": float(loss.item())}
        if validate is not None:
            rec["val"] = float(validate(model.eval()))
            if rec["val"] > best:
                best, since = rec["val"], 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since += 1
        history.append(rec)
        if progress:
            progress(f"teacher epoch {epoch + 1}: loss {rec['loss']:.3f}" + (f", val {rec['val']:.4f}" if "val" in rec
                                                                             else ""))
        if validate is not None and since >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history


@torch.no_grad()
def embed(model: nn.Module, images: np.ndarray, pre: ImagePreprocessing, *, batch: int = 256,
          desc: str = "embed") -> np.ndarray:
    """(N, D) float32 embeddings of uint8 pictures with the eager model (moved to channels-last memory in place:
    depthwise convolutions run several times faster that way on a CPU)."""
    model = model.eval().to(memory_format=torch.channels_last)
    out = []
    for i in progress_iter(range(0, len(images), batch), desc=desc, unit="batch"):
        out.append(model(model_inputs(images[i:i + batch], pre)).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, getattr(model, "dim", 0)), np.float32)


def relational_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """MSE between the batch's pairwise cosine-similarity matrices of student and teacher embeddings."""
    return F.mse_loss(s @ s.T, t @ t.T)


class _Outputs(nn.Module):
    """The student as the shared trainer sees it: ``{"embedding": e, "logits": classifier(e)}``, so that loss terms
    pick the output they compare (the exported model returns the embedding only)."""

    def __init__(self, net: MobileStudent) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.net(x)
        return {"embedding": e, "logits": self.net.classifier(e)}


class _ConsistentTeacher(nn.Module):
    """The teacher as the shared trainer runs it on each batch: it embeds the student's own augmented view
    (downsampled to the teacher's ``size`` when the student's input is larger) and scores it with the student's
    frozen prototype ``classifier`` (the soft labels), so both models see the same picture at every step."""

    def __init__(self, teacher: nn.Module, size: int, classifier: nn.Module) -> None:
        super().__init__()
        self.teacher, self.size = teacher, size
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
            x = x.contiguous(memory_format=torch.channels_last)
        e = self.teacher(x)
        return {"embedding": e, "logits": self.classifier(e)}


def student_losses(cfg: StudentConfig, *, distil: bool, soft: bool, partial_labels: bool = False) -> tuple:
    """The loss terms (:mod:`edgecart.compress.losses`) of a student: with a teacher ``w_cosine`` x cosine +
    ``w_relational`` x relational on the embeddings, ``w_label`` x cross-entropy of the logits on the teacher's frozen
    prototypes, (``soft``) ``w_soft`` x soft-label KL at ``temperature`` and ``w_contrastive`` x InfoNCE against the
    batch's teacher embeddings; without one, label cross-entropy alone.
    ``partial_labels``: some rows are unlabelled (label -1) and the label term skips them."""
    from edgecart.compress.losses import Cosine, InfoNCE, KLDivergence, LabelCE, MaskedLabelCE, Relational

    label = MaskedLabelCE if partial_labels else LabelCE
    if not distil:
        return (label(1.0, student="logits"),)
    terms = [Cosine(cfg.w_cosine, student="embedding", teacher="embedding"),
             Relational(cfg.w_relational, student="embedding", teacher="embedding"),
             label(cfg.w_label, student="logits")]
    if soft:
        terms.append(KLDivergence(cfg.w_soft, student="logits", teacher="logits", temperature=cfg.temperature))
    if cfg.w_contrastive > 0:
        terms.append(InfoNCE(cfg.w_contrastive, student="embedding", teacher="embedding",
                             temperature=cfg.contrastive_temperature))
    return tuple(terms)


def train_student(data: ImageSet, cfg: StudentConfig, pre: ImagePreprocessing, *, dim: int,
                  teacher_emb: np.ndarray | None = None, prototypes: np.ndarray | None = None,
                  proto_scale: float = 16.0, labelled: np.ndarray | None = None, epochs: float | None = None,
                  seed: int | None = None, desc: str = "student", teacher: nn.Module | None = None,
                  teacher_size: int | None = None) -> MobileStudent:
    """Train a :class:`MobileStudent` with the shared distillation trainer (:func:`edgecart.compress.distill`).

    With ``teacher_emb`` (one teacher embedding per picture) the student is distilled into the teacher's space:
    ``w_cosine * (1 - cos(s, t)) + w_relational * relational + w_label * CE`` (+ ``w_soft`` * KL of soft labels);
    the CE and soft labels use the teacher's frozen class prototypes (``prototypes``), so the label loss pulls
    toward the same directions the teacher's catalog uses. Without it the student learns from labels alone with its
    own prototypes. ``labelled`` (booleans) marks which pictures' labels may be used; with no teacher only those
    pictures are trained on. The student sees pictures augmented at ``cfg.augment`` (the teacher's targets are its
    embeddings of the plain pictures; with ``cfg.consistent_teacher`` the ``teacher`` module, whose input is
    ``teacher_size`` pixels, embeds the same augmented batch instead and ``teacher_emb`` only checks the rows).
    ``seed`` overrides ``cfg.seed``. ``epochs`` (default ``cfg.epochs``) may be fractional: the trainer then makes
    one pass over that many rows drawn cyclically from the pool. AdamW with a cosine learning-rate schedule stepped
    per batch after a 3% warm-up.
    """
    from edgecart.compress.distill import DistillConfig, DistillData, distill

    seed = cfg.seed if seed is None else seed
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    distil = teacher_emb is not None
    mask = np.ones(len(data), bool) if labelled is None else np.asarray(labelled, bool)
    if mask.shape != (len(data),):
        raise ValueError(f"labelled must hold one boolean per picture ({len(data)}), got shape {mask.shape}")
    pool = np.arange(len(data)) if distil else np.nonzero(mask)[0]
    if len(pool) == 0:
        raise ValueError("no training pictures: the labelled mask is empty")
    if distil and len(teacher_emb) != len(data):
        raise ValueError(f"teacher_emb must hold one row per picture ({len(data)}), got {len(teacher_emb)}")
    model = MobileStudent(dim, len(data.classes), size=pre.size[0], in_channels=pre.channels, width=cfg.width)
    if distil and prototypes is not None:
        model.classifier.weight.data.copy_(torch.from_numpy(prototypes))
        model.classifier.weight.requires_grad_(False)
        model.classifier.scale = proto_scale
    model = model.to(memory_format=torch.channels_last).train()
    e = float(cfg.epochs if epochs is None else epochs)
    if not e > 0:
        raise ValueError(f"epochs must be > 0, got {epochs!r}")
    whole = e.is_integer()
    rows = pool if whole else pool[np.arange(max(1, round(e * len(pool)))) % len(pool)]
    images = data.images

    def inputs(r: np.ndarray) -> torch.Tensor:
        return augment(model_inputs(images[rows[r]], pre), cfg.augment, gen)

    labels = torch.from_numpy(np.where(mask, data.labels, -1)[rows].astype(np.int64))
    outputs = None
    soft = distil and prototypes is not None and cfg.w_soft > 0
    live = None
    if distil and cfg.consistent_teacher:
        if teacher is None or prototypes is None:
            raise ValueError("student.consistent_teacher needs the teacher module and its prototypes")
        live = _ConsistentTeacher(teacher.eval().to(memory_format=torch.channels_last),
                                  teacher_size or pre.size[0], model.classifier)
    elif distil:
        t = torch.from_numpy(np.asarray(teacher_emb, np.float32)[rows])
        outputs = {"embedding": t}
        if soft:
            with torch.no_grad():
                outputs["logits"] = model.classifier(t)
    config = DistillConfig(losses=student_losses(cfg, distil=distil, soft=soft, partial_labels=not mask.all()),
                           epochs=int(e) if whole else 1, batch_size=min(cfg.batch_size, len(rows)), lr=cfg.lr,
                           weight_decay=cfg.weight_decay, schedule="cosine", warmup=0.03, seed=seed)
    distill(_Outputs(model), live, DistillData(inputs, labels=labels, teacher_outputs=outputs, size=len(rows)),
            config, desc=desc)
    return model.eval()
