"""Frozen, validated configurations of the recommendations pipeline, with JSON round trips through an allowlist."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("executorch", "onnx", "tflite")


@dataclass(frozen=True)
class TrainConfig:
    """Adam (decoupled weight decay, AdamW) on full-softmax cross-entropy over all items at every position of each
    training window. After each epoch validation NDCG@10 is measured and the best epoch kept; with ``patience``,
    training stops after that many epochs without a gain (early stopping). ``schedule``: the learning rate stays
    constant or follows a cosine from ``lr`` down to 0 over ``epochs``. ``label_smoothing``: of the label
    cross-entropy (0 = none). ``exclude_seen``: rank only what the user has not seen, as the runtime does by
    default — at each position the items earlier in the window (never the position's own target) are left out of
    the softmax, and validation NDCG@10 leaves the user's seen items out; for logs where items are not repeated
    (ratings, views of unique items), not for re-orders. ``augment_copies``: train on this many altered copies of
    each training history as well (each item dropped with probability ``augment_drop``, order kept; the copies'
    next items are their labels, and a distilled student gets the teacher's soft targets on them too); 0 = none.
    Each copy adds one pass over the log to every epoch."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    patience: int | None = None
    schedule: str = "constant"
    label_smoothing: float = 0.0
    exclude_seen: bool = False
    augment_copies: int = 0
    augment_drop: float = 0.2

    def __post_init__(self) -> None:
        if self.augment_copies < 0:
            raise ValueError(f"augment_copies (altered copies of each training history) must be >= 0, got "
                             f"{self.augment_copies}")
        if not 0.0 < self.augment_drop < 1.0:
            raise ValueError(f"augment_drop (the chance that a copy drops an item) must lie in (0, 1), got "
                             f"{self.augment_drop}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}; known: constant, cosine (decay to 0 over epochs)")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0 and weight_decay >= 0")
        if self.patience is not None and self.patience < 1:
            raise ValueError("patience (epochs without a validation gain before stopping) must be >= 1 or None")


@dataclass(frozen=True)
class DistillConfig:
    """Ranking distillation, each piece an option (the ablation table switches them one by one):

    * soft targets: the teacher's top ``top_k`` items at each position are soft positives weighted by the teacher's
      softmax over them at ``temperature``; the loss is ``(1 - alpha) * CE(ground truth) + alpha * T² *
      CE_T(soft positives)``, both over the student's full softmax (``alpha = 0`` switches it off);
    * ``hint``: weight of a hint loss, the mean squared error between the teacher's hidden state and the student's
      passed through a small learned projection (student dim -> teacher dim), at every trained position;
    * ``pca_init``: start the student's item table from the teacher's projected on its top principal directions
      (uncentred SVD), rescaled to the student's initial spread, instead of random.
    """

    top_k: int = 20
    temperature: float = 1.0
    alpha: float = 0.5
    hint: float = 0.0
    pca_init: bool = False

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must lie in [0, 1]")
        if self.hint < 0:
            raise ValueError("hint (the hidden-state loss weight) must be >= 0")


@dataclass(frozen=True)
class ModelSize:
    dim: int
    layers: int
    heads: int
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if min(self.dim, self.layers, self.heads) < 1 or self.dim % self.heads:
            raise ValueError(f"model size {self}: dim, layers, heads >= 1 and dim divisible by heads")


@dataclass(frozen=True)
class RecsConfig:
    """Everything one data set's run needs: sizes, training, distillation, export and the int8 gate.

    ``teacher_seeds``: the teacher is an ensemble of that many models of the teacher's size, trained from seeds
    ``teacher_train.seed``, ``+ 1``, ...; its scores are their mean log-probabilities (1: a single model); the
    student's parameter limit ``max_student_ratio`` is against the whole ensemble (the classic case of distilling
    several models into one small one).

    ``teacher_dims``: widths to try for the teacher's members; the first member is trained at each and the width
    with the best validation NDCG@10 is kept (ties: the narrower), then the other members are trained at it.
    Empty: ``teacher.dim`` only. The student's parameter limit is checked against the chosen teacher.

    ``item_to_item``: the bundle may carry each item's ``item_to_item`` most frequent followers (co-occurrence
    within ``cooc_window``) and blend them with the student's scores (:mod:`edgecart.runtime.item_to_item`); the
    weight is chosen on validation from ``blend_grid`` (1.0 = the student alone, then no table is shipped); 0 turns
    the blend off.

    ``buy_again_weights`` / ``buy_again_decays``: the bundle may carry a "buy it again" prior
    (:mod:`edgecart.runtime.buy_again`: the shopper's own items by decayed count, added in log space at a weight);
    weight and decay are chosen on validation, after the student and its item-to-item blend; weight 0 (the student
    alone) ships no prior. ``(0.0,)`` turns it off."""

    max_len: int = 50
    teacher: ModelSize = field(default_factory=lambda: ModelSize(128, 2, 2, 0.2))
    student: ModelSize = field(default_factory=lambda: ModelSize(32, 1, 1, 0.1))
    teacher_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20))
    student_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20))
    distill: DistillConfig = field(default_factory=DistillConfig)
    min_item_count: int = 5
    max_student_ratio: float = 0.25
    formats: tuple[str, ...] = FORMATS
    int8: bool = True
    gate_metric: str = "ndcg@10"
    gate_max_drop: float = 0.01
    gate_users: int = 1000
    calibration_samples: int = 64
    golden_samples: int = 4
    cooc_window: int = 3
    threads: int | None = None
    teacher_seeds: int = 1
    teacher_dims: tuple[int, ...] = ()
    item_to_item: int = 50
    blend_grid: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    buy_again_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    buy_again_decays: tuple[float, ...] = (1.0, 0.97, 0.9)

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "teacher_dims", tuple(self.teacher_dims))
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 or d % self.teacher.heads
               for d in self.teacher_dims) or len(set(self.teacher_dims)) != len(self.teacher_dims):
            raise ValueError(f"teacher_dims: distinct whole widths >= 1, each divisible by the teacher's heads "
                             f"({self.teacher.heads}), got {self.teacher_dims}")
        for name in ("blend_grid", "buy_again_weights", "buy_again_decays"):
            object.__setattr__(self, name, tuple(float(w) for w in getattr(self, name)))
        if not self.buy_again_weights or any(not 0.0 <= w < float("inf") for w in self.buy_again_weights):
            raise ValueError(f"buy_again_weights: weights >= 0 of the buy-again prior (0: none), got "
                             f"{self.buy_again_weights}")
        if not self.buy_again_decays or any(not 0.0 < d <= 1.0 for d in self.buy_again_decays):
            raise ValueError(f"buy_again_decays: decays in (0, 1] of the buy-again counts, got {self.buy_again_decays}")
        if self.item_to_item < 0:
            raise ValueError("item_to_item (neighbours kept per item for the blend; 0 = no blend) must be >= 0")
        if not self.blend_grid or any(not 0.0 < w <= 1.0 for w in self.blend_grid):
            raise ValueError(f"blend_grid: weights of the student's scores in (0, 1], got {self.blend_grid}")
        if self.max_len < 1 or self.min_item_count < 1:
            raise ValueError("max_len and min_item_count must be >= 1")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {self.formats}")
        if not 0 < self.max_student_ratio <= 1:
            raise ValueError("max_student_ratio must lie in (0, 1]")
        if self.gate_max_drop < 0 or self.gate_users < 1 or self.calibration_samples < 1 or self.golden_samples < 1:
            raise ValueError("gate_max_drop >= 0; gate_users, calibration_samples, golden_samples >= 1")
        if self.gate_metric not in ("ndcg@10", "recall@10"):
            raise ValueError("gate_metric must be 'ndcg@10' or 'recall@10'")
        if self.cooc_window < 1:
            raise ValueError("cooc_window must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1")
        if self.teacher_seeds < 1:
            raise ValueError("teacher_seeds (teachers trained from seeds seed, seed + 1, ..., averaged) must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecsConfig:
        """Through the allowlist of :func:`edgecart.config.from_dict` (nested sizes and training configs included)."""
        from edgecart.config import from_dict

        return from_dict(cls, data)


#: Small and quick, for tests and smoke runs: short histories, tiny models, a couple of epochs, few gate users.
FAST = RecsConfig(max_len=10, teacher=ModelSize(16, 1, 2, 0.1), student=ModelSize(4, 1, 1, 0.0),
                  teacher_train=TrainConfig(epochs=3, batch_size=64, lr=3e-3),
                  student_train=TrainConfig(epochs=3, batch_size=64, lr=3e-3),
                  distill=DistillConfig(top_k=5), gate_users=48, calibration_samples=8, golden_samples=2)
