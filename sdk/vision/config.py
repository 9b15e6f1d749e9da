"""Frozen, validated configuration of the search-by-image pipeline, serialisable to JSON and hashable for caches."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from edgecart.runtime.manifest import ImagePreprocessing


def _positive(obj: object, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if v is None or v <= 0:
            raise ValueError(f"{type(obj).__name__}.{n} must be positive, got {v!r}")


@dataclass(frozen=True)
class DataConfig:
    """Which images: Fashion-MNIST splits (fixed seed). ``train_size`` / ``gallery`` subsample for quick runs."""

    root: str | None = None
    queries: int = 1000
    gallery: int | None = None
    train_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _positive(self, "queries")
        for n in ("gallery", "train_size"):
            if getattr(self, n) is not None:
                _positive(self, n)


@dataclass(frozen=True)
class TeacherConfig:
    """EfficientNet-Lite0 fine-tuning at ``size`` x ``size``: the gray 28x28 picture is resized with the runtime's
    bilinear resize. 48 (the default) costs about half of 64 per step on a CPU, which buys two full passes over the
    60,000 training pictures within the demo's budget (one pass left the teacher no better than the label-only
    student).

    ``freeze_blocks``: the stem and the first N MBConv blocks keep their ImageNet weights (low-level filters, and the
    high-resolution layers whose backward pass costs most on a CPU).
    """

    size: int = 48
    dim: int = 128
    epochs: float = 2.0
    train_size: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    freeze_blocks: int = 3
    shift: int = 2
    label_smoothing: float = 0.1
    pretrained: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _positive(self, "size", "dim", "epochs", "batch_size", "lr")
        if self.size < 32:
            raise ValueError("TeacherConfig.size must be >= 32 (EfficientNet-Lite0 downsamples 32x)")
        if not 0 <= self.freeze_blocks <= 16:
            raise ValueError("TeacherConfig.freeze_blocks must lie in [0, 16]")
        if not 0 <= self.warmup < 1 or not 0 <= self.label_smoothing < 1 or self.shift < 0:
            raise ValueError("TeacherConfig: warmup and label_smoothing lie in [0, 1), shift >= 0")


@dataclass(frozen=True)
class StudentConfig:
    """The mobile student and its training. Loss weights: embedding cosine, relational (pairwise cosine matrix MSE),
    label cross-entropy on the teacher's class prototypes, and optional soft-label KL at ``temperature``."""

    width: int = 32
    epochs: float = 3.0
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    w_cosine: float = 1.0
    w_relational: float = 1.0
    w_label: float = 0.5
    w_soft: float = 0.0
    temperature: float = 2.0
    label_fraction_epochs: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        _positive(self, "width", "epochs", "batch_size", "lr", "temperature", "label_fraction_epochs")
        if min(self.w_cosine, self.w_relational, self.w_label, self.w_soft) < 0:
            raise ValueError("StudentConfig loss weights must be >= 0")


@dataclass(frozen=True)
class ExportConfig:
    """What goes into the bundles. ``catalog_model``: 'teacher' (asymmetric search) or 'student'."""

    formats: tuple[str, ...] = ("executorch", "onnx", "tflite")
    int8: bool = True
    calibration: int = 128
    gate_metric: str = "recall@10"
    gate_max_drop: float = 0.01
    catalog_model: str = "teacher"
    catalog_fp32: bool = True
    golden: int = 4
    export_teacher: bool = True
    latency_runs: int = 200
    latency_threads: int = 1
    artifact_symmetric_eval: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))
        if not self.formats:
            raise ValueError("ExportConfig.formats must name at least one format")
        if self.catalog_model not in ("teacher", "student"):
            raise ValueError("ExportConfig.catalog_model must be 'teacher' or 'student'")
        _positive(self, "calibration", "golden", "latency_runs", "latency_threads")
        if self.gate_max_drop < 0:
            raise ValueError("ExportConfig.gate_max_drop must be >= 0")


@dataclass(frozen=True)
class SearchPipelineConfig:
    """The whole search-by-image job. ``label_fraction``: the scarce-label experiment (0 to skip it)."""

    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    label_fraction: float = 0.1
    threads: int = 2
    name: str = "fashion-search"
    version: str = "0.1.0"

    def __post_init__(self) -> None:
        if not 0 <= self.label_fraction < 1:
            raise ValueError("label_fraction must lie in [0, 1)")
        _positive(self, "threads")

    @property
    def student_preprocessing(self) -> ImagePreprocessing:
        return ImagePreprocessing((28, 28), "grayscale", mean=(0.5,), std=(0.5,))

    @property
    def teacher_preprocessing(self) -> ImagePreprocessing:
        s = self.teacher.size
        return ImagePreprocessing((s, s), "grayscale", mean=(0.5,), std=(0.5,))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchPipelineConfig:
        subs = {"data": DataConfig, "teacher": TeacherConfig, "student": StudentConfig, "export": ExportConfig}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(known)}")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k in subs:
                sub_known = {f.name for f in dataclasses.fields(subs[k])}
                bad = sorted(set(v) - sub_known)
                if bad:
                    raise ValueError(f"unknown {k} config keys {bad}; known: {sorted(sub_known)}")
                kw[k] = subs[k](**v)
            else:
                kw[k] = v
        return cls(**kw)

    def teacher_key(self) -> str:
        """Cache key of the fine-tuned teacher: its config and the data it was trained on."""
        return _hash({"teacher": dataclasses.asdict(self.teacher), "data": dataclasses.asdict(self.data), "v": 1})

    def embeddings_key(self) -> str:
        """Cache key of the teacher's embeddings of every split image."""
        return _hash({"teacher": self.teacher_key(), "embeddings": 1})


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def fast_config(**changes: Any) -> SearchPipelineConfig:
    """A tiny configuration for tests: a few hundred images, one short pass, a small catalog."""
    cfg = SearchPipelineConfig(
        data=DataConfig(queries=40, gallery=200, train_size=400),
        teacher=TeacherConfig(size=32, epochs=1.0, batch_size=32, freeze_blocks=8),
        student=StudentConfig(width=8, epochs=1.0, batch_size=64, label_fraction_epochs=2.0),
        export=ExportConfig(calibration=8, golden=2, latency_runs=5, export_teacher=False,
                            artifact_symmetric_eval=False),
    )
    return dataclasses.replace(cfg, **changes)
