"""The image students train through the shared distillation trainer (edgecart.compress.distill): a distilled student
moves toward its teacher's embeddings, a label-only student separates the classes, partly labelled data works."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgecart.data.image_folder import ImageSet
from edgecart.models.vision import MobileStudent
from edgecart.vision.config import BuildConfigError, StudentConfig, tiny_config
from edgecart.vision.train import embed, student_losses, train_student

COLOURS = ((200, 30, 30), (30, 180, 40), (30, 40, 200))
DIM = 16


def _pictures(n_per_class: int = 12, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    for c, rgb in enumerate(COLOURS):
        for _ in range(n_per_class):
            imgs.append(np.clip(np.array(rgb)[None, None] + rng.normal(0, 30, (32, 32, 3)), 0, 255))
            labels.append(c)
    n = len(labels)
    return ImageSet(np.stack(imgs).astype(np.uint8), np.array(labels), ("red", "green", "blue"),
                    tuple(f"p{i}" for i in range(n)))


def _teacher_embeddings(data: ImageSet, seed: int = 1) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    protos = torch.nn.functional.normalize(torch.randn(len(data.classes), DIM, generator=g), dim=1)
    t = protos[torch.from_numpy(data.labels)] + 0.1 * torch.randn(len(data), DIM, generator=g)
    return torch.nn.functional.normalize(t, dim=1).numpy()


def _cfg(**kw) -> StudentConfig:
    base = dict(size=32, width=8, epochs=15, batch_size=12, lr=3e-3, augment=0.0)
    return StudentConfig(**{**base, **kw})


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_distilled_student_ends_closer_to_the_teacher_than_at_init():
    data = _pictures()
    temb = _teacher_embeddings(data)
    pre = tiny_config().student_preprocessing
    cfg = _cfg(w_cosine=1.0, w_relational=0.0, w_label=0.0)
    torch.manual_seed(cfg.seed)  # train_student builds its student right after seeding the same way
    init = MobileStudent(DIM, len(data.classes), size=32, width=cfg.width)
    before = float((embed(init, data.images, pre) * temb).sum(1).mean())
    student = train_student(data, cfg, pre, dim=DIM, teacher_emb=temb)
    after = float((embed(student, data.images, pre) * temb).sum(1).mean())
    assert after > before + 0.3, (before, after)
    assert after > 0.6


def test_label_only_student_separates_the_classes():
    data = _pictures()
    pre = tiny_config().student_preprocessing
    student = train_student(data, _cfg(), pre, dim=DIM)
    emb = embed(student, data.images, pre)
    protos = torch.nn.functional.normalize(student.classifier.weight.detach(), dim=1).numpy()
    assert ((emb @ protos.T).argmax(1) == data.labels).mean() >= 0.9  # chance: 1/3


def test_distilled_student_with_few_labels_and_fractional_epochs():
    """Only one picture in 12 keeps its label: batches without any labelled row must not turn the loss into NaN."""
    data = _pictures()
    temb = _teacher_embeddings(data)
    pre = tiny_config().student_preprocessing
    labelled = np.arange(len(data)) % 12 == 0
    protos = temb[[int(np.nonzero(data.labels == c)[0][0]) for c in range(3)]]
    student = train_student(data, _cfg(epochs=2, batch_size=4), pre, dim=DIM, teacher_emb=temb, prototypes=protos,
                            labelled=labelled, epochs=1.5)
    emb = embed(student, data.images, pre)
    assert np.isfinite(emb).all()
    np.testing.assert_allclose(student.classifier.weight.detach().numpy(), protos, atol=1e-6)  # kept frozen
    with pytest.raises(ValueError, match="labelled mask is empty"):
        train_student(data, _cfg(), pre, dim=DIM, labelled=np.zeros(len(data), bool))


def test_student_loss_terms_follow_the_config():
    cfg = _cfg(w_cosine=1.0, w_relational=2.0, w_label=0.5, w_soft=0.3, temperature=3.0)
    names = [(t.name, t.weight) for t in student_losses(cfg, distil=True, soft=True)]
    assert names == [("cosine", 1.0), ("relational", 2.0), ("label", 0.5), ("kl", 0.3)]
    assert student_losses(cfg, distil=True, soft=True)[-1].temperature == 3.0
    assert [t.name for t in student_losses(cfg, distil=False, soft=False)] == ["label"]
    assert [t.name for t in student_losses(cfg, distil=True, soft=False, partial_labels=True)][-1] == "masked_label"


def test_contrastive_term_prefers_the_matching_teacher_row():
    from edgecart.compress.losses import InfoNCE, loss_from_dict

    g = torch.Generator().manual_seed(0)
    t = torch.nn.functional.normalize(torch.randn(16, DIM, generator=g), dim=1)
    term = InfoNCE(temperature=0.1)
    matched, shuffled = term(t, t).item(), term(t.roll(1, dims=0), t).item()
    assert matched < 0.1 < np.log(16) < shuffled
    assert loss_from_dict(term.to_dict()) == term
    with pytest.raises(ValueError, match="temperature"):
        InfoNCE(temperature=0)
    cfg = _cfg(w_contrastive=0.5, contrastive_temperature=0.2)
    last = student_losses(cfg, distil=True, soft=False)[-1]
    assert (last.name, last.weight, last.temperature) == ("infonce", 0.5, 0.2)
    assert "infonce" not in [x.name for x in student_losses(_cfg(), distil=True, soft=False)]


class _Recorder(torch.nn.Module):
    """A real (tiny, fixed) teacher that remembers the input sizes it was run on."""

    def __init__(self, size: int) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.net = MobileStudent(DIM, 3, size=size, width=8).eval()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return self.net(x)


def test_consistent_teacher_embeds_the_students_augmented_view_at_its_own_size():
    """consistent_teacher: the teacher module runs on every (augmented) batch, downsampled to its 16 px input, and
    the student moves toward that teacher's embeddings; without the module it is refused."""
    data = _pictures()
    pre = tiny_config().student_preprocessing  # 32 px
    teacher = _Recorder(16)
    with torch.no_grad():
        small = torch.nn.functional.interpolate(torch.from_numpy(
            (data.images.astype(np.float32) / 127.5 - 1).transpose(0, 3, 1, 2)), size=(16, 16), mode="bilinear",
            antialias=True, align_corners=False)
        temb = teacher.net(small).numpy()
    teacher.seen.clear()
    protos = temb[[int(np.nonzero(data.labels == c)[0][0]) for c in range(3)]]
    cfg = _cfg(w_cosine=1.0, w_relational=0.0, w_label=0.0, augment=0.5, consistent_teacher=True, epochs=10)
    torch.manual_seed(cfg.seed)
    init = MobileStudent(DIM, len(data.classes), size=32, width=cfg.width)
    before = float((embed(init, data.images, pre) * temb).sum(1).mean())
    student = train_student(data, cfg, pre, dim=DIM, teacher_emb=temb, prototypes=protos, teacher=teacher,
                            teacher_size=16)
    after = float((embed(student, data.images, pre) * temb).sum(1).mean())
    assert len(teacher.seen) == 10 * 3  # 36 pictures in batches of 12, 10 epochs: one teacher pass per batch
    assert {s[1:] for s in teacher.seen} == {(3, 16, 16)}
    assert after > before + 0.2, (before, after)
    with pytest.raises(ValueError, match="consistent_teacher"):
        train_student(data, cfg, pre, dim=DIM, teacher_emb=temb, prototypes=protos)
    with pytest.raises(BuildConfigError, match="consistent_teacher"):
        _cfg(consistent_teacher="yes")
