"""Frozen, validated configuration of an image-search build, readable from a TOML file, serialisable to JSON and
hashable for caches.

A ``build.toml`` holds any of these sections (every key optional; unknown keys are an error that lists the known
ones)::

    name = "my-shop"            # bundle name
    threads = 2                 # torch threads (default: the cores that are free now)
    [data]    val = 0.15, test = 0.15, seed = 0
    [teacher] size = 64, epochs = 6, freeze_blocks = 3, ...
    [student] size = 64, width = 32, epochs = 8, seeds = 1, ...
    [export]  formats = ["executorch", "onnx", "tflite"], int8 = true, gate_max_drop = 0.02, ...
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from edgecart.runtime.errors import EdgecartError
from edgecart.runtime.manifest import ImagePreprocessing


class BuildConfigError(EdgecartError, ValueError):
    """A build configuration (TOML file or dict) names an unknown key or holds an invalid value."""


def _positive(obj: object, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if v is None or v <= 0:
            raise BuildConfigError(f"{type(obj).__name__}.{n} must be positive, got {v!r}")


#: the int8 gate and the recipe/student choices look at these metrics on the validation queries
GATE_METRICS = ("recall@1", "recall@5", "recall@10", "map@10", "precision@10", "map")


@dataclass(frozen=True)
class DataConfig:
    """How a user's pictures are split (seeded, per label) into train / val (choices) / test (reported figures).

    ``limit_per_class``: keep at most N pictures per label and split (quick runs and tests). ``catalog_repeat``:
    how many times catalog pictures are repeated in the training set when they are a separate domain (the grocery
    demo's product pictures), so the few of them weigh in.
    """

    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    limit_per_class: int | None = None
    catalog_repeat: int = 4

    def __post_init__(self) -> None:
        if not (0 < self.val < 1 and 0 < self.test < 1 and self.val + self.test < 1):
            raise BuildConfigError("data.val and data.test must lie in (0, 1) and sum below 1")
        if self.limit_per_class is not None:
            _positive(self, "limit_per_class")
        if self.catalog_repeat < 0:
            raise BuildConfigError("data.catalog_repeat must be >= 0")


@dataclass(frozen=True)
class TeacherConfig:
    """EfficientNet-Lite0 (ImageNet weights) fine-tuned at ``size`` x ``size`` RGB with augmentation.

    ``epochs`` is the most it trains; the epoch kept is the one with the best validation mAP@10 (``patience`` epochs
    without improvement stop it). ``freeze_blocks``: the stem and the first N MBConv blocks keep their ImageNet
    weights (low-level filters, and the high-resolution layers whose backward pass costs most on a CPU).
    """

    size: int = 64
    dim: int = 128
    epochs: int = 6
    patience: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    freeze_blocks: int = 3
    label_smoothing: float = 0.1
    augment: float = 1.0
    pretrained: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _positive(self, "size", "dim", "epochs", "batch_size", "lr", "patience")
        if self.size < 32:
            raise BuildConfigError("teacher.size must be >= 32 (EfficientNet-Lite0 downsamples 32x)")
        if not 0 <= self.freeze_blocks <= 16:
            raise BuildConfigError("teacher.freeze_blocks must lie in [0, 16]")
        if not 0 <= self.warmup < 1 or not 0 <= self.label_smoothing < 1 or self.augment < 0:
            raise BuildConfigError("teacher: warmup and label_smoothing lie in [0, 1), augment >= 0")


@dataclass(frozen=True)
class StudentConfig:
    """The mobile student at ``size`` x ``size`` RGB and its training. Loss weights of the distilled student:
    embedding cosine to the teacher, relational (pairwise cosine matrix MSE), label cross-entropy on the teacher's
    class prototypes, optional soft-label KL at ``temperature``, optional contrastive term (``w_contrastive``:
    InfoNCE of the student's embeddings against the batch's teacher embeddings at ``contrastive_temperature``).
    ``consistent_teacher``: the teacher embeds, on the fly, the same augmented view the student sees (downsampled to
    the teacher's size when the student's is larger) instead of the student matching the teacher's cached embedding
    of the plain picture ("consistent teaching", Beyer et al., "Knowledge distillation: A good teacher is patient
    and consistent", CVPR 2022); it costs one teacher forward pass per batch.
    ``seeds``: how many seeds the distilled and the label-only students are trained with (the comparison is reported
    over them; the first seed's pair is exported when the validation pick says so). ``baseline=false`` skips the
    label-only students (half the student time; the distilled-vs-label-only comparison is then not measured)."""

    size: int = 64
    width: int = 32
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    w_cosine: float = 1.0
    w_relational: float = 1.0
    w_label: float = 0.5
    w_soft: float = 0.0
    temperature: float = 2.0
    w_contrastive: float = 0.0
    contrastive_temperature: float = 0.1
    consistent_teacher: bool = False
    augment: float = 0.5
    seeds: int = 1
    seed: int = 0
    baseline: bool = True

    def __post_init__(self) -> None:
        _positive(self, "size", "width", "epochs", "batch_size", "lr", "temperature", "seeds",
                  "contrastive_temperature")
        if self.size < 16:
            raise BuildConfigError("student.size must be >= 16")
        if min(self.w_cosine, self.w_relational, self.w_label, self.w_soft, self.w_contrastive, self.augment) < 0:
            raise BuildConfigError("student loss weights and augment must be >= 0")
        if not isinstance(self.consistent_teacher, bool):
            raise BuildConfigError(f"student.consistent_teacher is true or false, got {self.consistent_teacher!r}")


@dataclass(frozen=True)
class ExportConfig:
    """What goes into the bundle. int8 artifacts are kept only if none of ``gate_metrics`` drops by more than
    ``gate_max_drop`` (absolute) on the validation queries; the first recipe that passes is kept."""

    formats: tuple[str, ...] = ("executorch", "onnx", "tflite")
    int8: bool = True
    calibration: int = 128
    gate_metrics: tuple[str, ...] = ("recall@1", "map@10")
    gate_max_drop: float = 0.02
    catalog_fp32: bool = True
    golden: int = 4
    latency_runs: int = 100
    latency_threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "gate_metrics", tuple(self.gate_metrics))
        if not self.formats:
            raise BuildConfigError("export.formats must name at least one format")
        from edgecart.runtime.manifest import FORMATS

        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise BuildConfigError(f"export.formats {bad} unknown; known: {list(FORMATS)}")
        bad = [m for m in self.gate_metrics if m not in GATE_METRICS]
        if bad or not self.gate_metrics:
            raise BuildConfigError(f"export.gate_metrics {bad or '[]'}: pick from {list(GATE_METRICS)}")
        _positive(self, "calibration", "golden", "latency_runs", "latency_threads")
        if self.gate_max_drop < 0:
            raise BuildConfigError("export.gate_max_drop must be >= 0")


_SECTIONS = {"data": DataConfig, "teacher": TeacherConfig, "student": StudentConfig, "export": ExportConfig}


@dataclass(frozen=True)
class BuildConfig:
    """The whole image-search build."""

    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    name: str = "image-search"
    version: str = "1.0.0"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None:
            _positive(self, "threads")
        if not self.name or "/" in self.name:
            raise BuildConfigError(f"name {self.name!r} must be a non-empty bundle name without '/'")

    @property
    def student_preprocessing(self) -> ImagePreprocessing:
        s = self.student.size
        return ImagePreprocessing((s, s), "rgb", mean=(0.5,) * 3, std=(0.5,) * 3)

    @property
    def teacher_preprocessing(self) -> ImagePreprocessing:
        s = self.teacher.size
        return ImagePreprocessing((s, s), "rgb", mean=(0.5,) * 3, std=(0.5,) * 3)

    @property
    def storage_preprocessing(self) -> ImagePreprocessing:
        """Pictures are decoded once at the larger of the two model sizes."""
        s = max(self.teacher.size, self.student.size)
        return ImagePreprocessing((s, s), "rgb", mean=(0.5,) * 3, std=(0.5,) * 3)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildConfig:
        """Through the allowlist and the type checks of :func:`edgecart.config.from_dict`: every section must be a
        table, and a value of the wrong type (``epochs = "two"``, ``formats = "onnx"``) fails naming the field, the
        type it takes and the value (``config.teacher.epochs: expected a whole number (an integer), got 'two'
        (str)``)."""
        from edgecart.config import ConfigError, from_dict

        try:
            return from_dict(cls, d, "config")
        except ConfigError as exc:
            raise BuildConfigError(str(exc)) from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> BuildConfig:
        import tomllib

        try:
            with open(path, "rb") as f:
                d = tomllib.load(f)
        except FileNotFoundError:
            raise BuildConfigError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as exc:
            raise BuildConfigError(f"{path}: not valid TOML ({exc})") from None
        return cls.from_dict(d)

    def replace(self, **sections: dict[str, Any]) -> BuildConfig:
        """A copy with some keys of some sections changed: ``cfg.replace(teacher={"epochs": 1})``."""
        changes: dict[str, Any] = {}
        for k, v in sections.items():
            changes[k] = dataclasses.replace(getattr(self, k), **v) if k in _SECTIONS else v
        return dataclasses.replace(self, **changes)


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tiny_config(**sections: dict[str, Any]) -> BuildConfig:
    """A toy configuration for tests: 32x32 pictures, one short teacher pass, a small student, few latency runs."""
    cfg = BuildConfig(
        teacher=TeacherConfig(size=32, epochs=1, batch_size=16, freeze_blocks=10, dim=32),
        student=StudentConfig(size=32, width=8, epochs=2, batch_size=16),
        export=ExportConfig(formats=("onnx",), calibration=8, golden=2, latency_runs=5),
    )
    return cfg.replace(**sections)


__all__ = ["BuildConfig", "BuildConfigError", "DataConfig", "ExportConfig", "GATE_METRICS", "StudentConfig",
           "TeacherConfig", "config_hash", "tiny_config"]
