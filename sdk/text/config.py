"""Frozen, validated configuration of the text pipeline, with a JSON round trip through an allowlist."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("executorch", "onnx", "tflite")
GATE_METRICS = ("recall@10", "map@10", "department_acc", "class_acc")


@dataclass(frozen=True)
class StudentSize:
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 512
    min_token_count: int = 2

    def __post_init__(self) -> None:
        if min(self.hidden, self.layers, self.heads, self.intermediate, self.min_token_count) < 1:
            raise ValueError(f"student size {self}: every field must be >= 1")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} must be divisible by heads {self.heads}")


@dataclass(frozen=True)
class StudentTrain:
    """Trained through ``edgecart.compress.distill`` (AdamW, 10% warm-up then cosine); the distilled loss is
    ``cosine + relational * MSE(similarity matrices) + label * CE``; the labels-only student uses the CE term alone.
    CE is the sum over both label levels (department, class)."""

    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    relational: float = 1.0
    label: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs >= 1 and batch_size >= 2")
        if self.lr <= 0 or self.relational < 0 or self.label < 0:
            raise ValueError("lr > 0; relational and label weights >= 0")


@dataclass(frozen=True)
class TextConfig:
    """Everything one run needs: sizes of the splits, the student, training, export and the int8 gate."""

    max_len: int = 64
    train: int = 4000
    valid: int = 1000
    test: int = 1000
    split_seed: int = 0
    student: StudentSize = field(default_factory=StudentSize)
    student_train: StudentTrain = field(default_factory=StudentTrain)
    max_student_ratio: float = 0.1
    formats: tuple[str, ...] = FORMATS
    int8: bool = True
    gate_metric: str = "class_acc"
    gate_max_drop: float = 0.01
    gate_queries: int = 1000
    calibration_samples: int = 64
    golden_samples: int = 4
    catalog_grocery: bool = True
    teacher_batch: int = 64
    threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))
        if not 8 <= self.max_len <= 512:
            raise ValueError("max_len must lie in [8, 512]")
        if min(self.train, self.valid, self.test) < 1:
            raise ValueError("train, valid and test sizes must be >= 1")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {self.formats}")
        if not 0 < self.max_student_ratio <= 1:
            raise ValueError("max_student_ratio must lie in (0, 1]")
        if self.gate_metric not in GATE_METRICS:
            raise ValueError(f"gate_metric must be one of {GATE_METRICS}")
        if self.gate_max_drop < 0 or min(self.gate_queries, self.calibration_samples, self.golden_samples) < 1:
            raise ValueError("gate_max_drop >= 0; gate_queries, calibration_samples, golden_samples >= 1")
        if self.teacher_batch < 1 or (self.threads is not None and self.threads < 1):
            raise ValueError("teacher_batch >= 1 and threads >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextConfig:
        """Through the allowlist of :func:`edgecart.config.from_dict` (nested student / student_train included)."""
        from edgecart.config import from_dict

        return from_dict(cls, data)


#: Tiny and quick, for tests: a few dozen texts, a 1-layer 32-wide student, one epoch, ONNX only.
FAST = TextConfig(max_len=16, train=60, valid=30, test=30, student=StudentSize(32, 1, 2, 64, 1),
                  student_train=StudentTrain(epochs=1, batch_size=16), formats=("onnx",), gate_queries=30,
                  calibration_samples=4, golden_samples=2, max_student_ratio=1.0)
