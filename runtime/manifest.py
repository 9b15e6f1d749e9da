"""The bundle manifest: frozen dataclasses, strict JSON (de)serialisation through an allowlist.

The JSON Schema in ``manifest.schema.json`` (next to this file) describes the same document for app developers;
a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import posixpath
from dataclasses import dataclass, field
from typing import Any

from .errors import ManifestError, UnsafePathError

SCHEMA_VERSION = "1.0"
MANIFEST_NAME = "manifest.json"
FORMATS = ("executorch", "onnx", "tflite")
DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")
TASKS = ("image_search", "recommendations", "text_search", "generic")
PRECISIONS = ("fp32", "fp16", "int8")
FILE_ROLES = ("model", "weights", "catalog", "golden", "metadata")


def check_relative_path(path: str) -> str:
    """Return ``path`` if it is a plain relative POSIX path inside the bundle, else raise UnsafePathError."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"bundle path {path!r} must be a non-empty string")
    if "\\" in path or "\x00" in path or path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise UnsafePathError(f"bundle path {path!r} must be relative and use '/' separators")
    norm = posixpath.normpath(path)
    if norm != path or norm == "." or norm.split("/")[0] == "..":
        raise UnsafePathError(f"bundle path {path!r} is not a normalised path inside the bundle")
    return path


def _json_safe(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, str, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ManifestError(f"{where}: {value!r} is not a finite number")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _json_safe(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ManifestError(f"{where}: key {k!r} must be a string")
            _json_safe(v, f"{where}.{k}")
        return
    raise ManifestError(f"{where}: {type(value).__name__} is not JSON data")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, element type, static shape, optional layout."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    layout: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ManifestError("tensor name must not be empty")
        if self.dtype not in DTYPES:
            raise ManifestError(f"tensor {self.name!r}: dtype {self.dtype!r} is not one of {DTYPES}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d <= 0 for d in self.shape):
            raise ManifestError(f"tensor {self.name!r}: shape {self.shape} must be positive (static shapes only)")
        if self.layout is not None and len(self.layout) != len(self.shape):
            raise ManifestError(f"tensor {self.name!r}: layout {self.layout!r} does not match rank {len(self.shape)}")


@dataclass(frozen=True)
class IOSpec:
    """A model's declared inputs and outputs (static shapes). Models declare it as data (``model.io_spec``) without
    importing the exporters; exporters write it into the manifest; the runtime checks inputs against it."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class ImagePreprocessing:
    """How a picture becomes the model's input: resize, colour, scale, mean/std, layout."""

    size: tuple[int, int]
    color: str = "rgb"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    layout: str = "NCHW"
    resize: str = "bilinear"
    kind: str = "image"

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        channels = {"rgb": 3, "grayscale": 1}
        if self.kind != "image":
            raise ManifestError(f"image preprocessing kind must be 'image', got {self.kind!r}")
        if len(self.size) != 2 or min(self.size) <= 0:
            raise ManifestError(f"image size {self.size} must be (height, width), both positive")
        if self.color not in channels:
            raise ManifestError(f"image color {self.color!r} must be one of {sorted(channels)}")
        n = channels[self.color]
        if len(self.mean) != n or len(self.std) != n or any(s <= 0 for s in self.std):
            raise ManifestError(f"image mean/std need {n} values (std > 0) for color {self.color!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ManifestError(f"image layout {self.layout!r} must be 'NCHW' or 'NHWC'")
        if self.resize not in ("bilinear", "nearest"):
            raise ManifestError(f"image resize {self.resize!r} must be 'bilinear' or 'nearest'")

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1


@dataclass(frozen=True)
class SequencePreprocessing:
    """How an item history becomes the model's input: the last ``max_len`` item indices, left-padded."""

    max_len: int
    pad_index: int = 0
    padding: str = "left"
    kind: str = "sequence"

    def __post_init__(self) -> None:
        if self.kind != "sequence":
            raise ManifestError(f"sequence preprocessing kind must be 'sequence', got {self.kind!r}")
        if self.max_len <= 0:
            raise ManifestError(f"max_len must be positive, got {self.max_len}")
        if self.padding not in ("left", "right"):
            raise ManifestError(f"padding {self.padding!r} must be 'left' or 'right'")


@dataclass(frozen=True)
class TextPreprocessing:
    """How a message becomes the model's input: ``tokenizer`` (a tokenizer.json file of the bundle, read with the
    ``tokenizers`` package) cuts it into word pieces, truncated and padded to exactly ``max_len`` tokens."""

    tokenizer: str
    max_len: int
    padding: str = "right"
    truncation: str = "right"
    pad_token: str = "[PAD]"
    lowercase: bool = True
    input_ids: str = "input_ids"
    attention_mask: str = "attention_mask"
    kind: str = "text"

    def __post_init__(self) -> None:
        if self.kind != "text":
            raise ManifestError(f"text preprocessing kind must be 'text', got {self.kind!r}")
        check_relative_path(self.tokenizer)
        if not isinstance(self.max_len, int) or self.max_len <= 0:
            raise ManifestError(f"max_len must be a positive integer, got {self.max_len!r}")
        if self.padding not in ("left", "right") or self.truncation not in ("left", "right"):
            raise ManifestError(f"padding {self.padding!r} and truncation {self.truncation!r} must be 'left' or "
                                "'right'")
        if not self.pad_token or not self.input_ids or not self.attention_mask or self.input_ids == self.attention_mask:
            raise ManifestError("pad_token, input_ids and attention_mask must be non-empty (two distinct names)")


Preprocessing = ImagePreprocessing | SequencePreprocessing | TextPreprocessing


@dataclass(frozen=True)
class FileEntry:
    """A file of the bundle with its size and sha256."""

    path: str
    sha256: str
    bytes: int
    role: str

    def __post_init__(self) -> None:
        check_relative_path(self.path)
        if self.path == MANIFEST_NAME:
            raise ManifestError("manifest.json must not list itself")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ManifestError(f"{self.path}: sha256 must be 64 lowercase hex digits")
        if self.bytes < 0:
            raise ManifestError(f"{self.path}: bytes must be >= 0")
        if self.role not in FILE_ROLES:
            raise ManifestError(f"{self.path}: role {self.role!r} is not one of {FILE_ROLES}")


@dataclass(frozen=True)
class Parity:
    """How closely an artifact reproduces the reference (eager float) model on the golden inputs."""

    max_abs_diff: float
    cosine: float
    max_abs_tolerance: float | None
    min_cosine: float | None
    samples: int
    reference: str = "eager-fp32"

    def within_tolerance(self) -> bool:
        ok = True
        if self.max_abs_tolerance is not None:
            ok &= self.max_abs_diff <= self.max_abs_tolerance
        if self.min_cosine is not None:
            ok &= self.cosine >= self.min_cosine
        return bool(ok)


@dataclass(frozen=True)
class Artifact:
    """One exported model file and everything an app needs to know about it."""

    name: str
    format: str
    path: str
    precision: str = "fp32"
    delegate: str | None = None
    quantization: dict[str, Any] | None = None
    side_files: tuple[str, ...] = ()
    parity: Parity | None = None
    quality: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ManifestError("artifact name must not be empty")
        if self.format not in FORMATS:
            raise ManifestError(f"artifact {self.name!r}: format {self.format!r} is not one of {FORMATS}")
        if self.precision not in PRECISIONS:
            raise ManifestError(f"artifact {self.name!r}: precision {self.precision!r} is not one of {PRECISIONS}")
        check_relative_path(self.path)
        object.__setattr__(self, "side_files", tuple(check_relative_path(p) for p in self.side_files))
        _json_safe(self.quantization, f"artifact {self.name}.quantization")
        _json_safe(self.quality, f"artifact {self.name}.quality")


@dataclass(frozen=True)
class Golden:
    """Reference inputs and the float model's outputs, one .npy per tensor name."""

    inputs: dict[str, str]
    outputs: dict[str, str]

    def __post_init__(self) -> None:
        for p in [*self.inputs.values(), *self.outputs.values()]:
            check_relative_path(p)


@dataclass(frozen=True)
class Manifest:
    """The single source of truth of a bundle."""

    name: str
    version: str
    task: str
    created_at: str
    toolchain: dict[str, str]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    artifacts: tuple[Artifact, ...]
    files: tuple[FileEntry, ...]
    preprocessing: Preprocessing | None = None
    golden: Golden | None = None
    catalog: dict[str, Any] | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    signature: dict[str, Any] | None = None
    schema_version: str = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema_version {self.schema_version!r} is not supported (this edgecart reads "
                f"{SCHEMA_VERSION!r}); re-export the bundle or upgrade edgecart"
            )
        if self.task not in TASKS:
            raise ManifestError(f"task {self.task!r} is not one of {TASKS}")
        for group, specs in (("input", self.inputs), ("output", self.outputs)):
            names = [s.name for s in specs]
            if not names or len(set(names)) != len(names):
                raise ManifestError(f"{group} names must be present and unique, got {names}")
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ManifestError("files lists a path twice")
        listed = set(paths)
        names = [a.name for a in self.artifacts]
        if len(set(names)) != len(names):
            raise ManifestError(f"artifact names must be unique, got {names}")
        for a in self.artifacts:
            for p in (a.path, *a.side_files):
                if p not in listed:
                    raise ManifestError(f"artifact {a.name!r} refers to {p!r}, which files does not list")
        if self.golden is not None:
            for p in [*self.golden.inputs.values(), *self.golden.outputs.values()]:
                if p not in listed:
                    raise ManifestError(f"golden file {p!r} is not listed in files")
            if set(self.golden.inputs) != {s.name for s in self.inputs}:
                raise ManifestError("golden inputs must name exactly the model inputs")
            if set(self.golden.outputs) != {s.name for s in self.outputs}:
                raise ManifestError("golden outputs must name exactly the model outputs")
        _json_safe(self.toolchain, "toolchain")
        _json_safe(self.catalog, "catalog")
        _json_safe(self.quality, "quality")
        _json_safe(self.signature, "signature")

    def artifact(self, name: str) -> Artifact:
        for a in self.artifacts:
            if a.name == name:
                return a
        from .errors import ArtifactNotFoundError

        known = ", ".join(a.name for a in self.artifacts) or "(none)"
        raise ArtifactNotFoundError(f"no artifact named {name!r} in bundle {self.name!r}; known: {known}")

    def file(self, path: str) -> FileEntry:
        for f in self.files:
            if f.path == path:
                return f
        raise ManifestError(f"{path!r} is not listed in the manifest's files")

    def artifact_bytes(self, artifact: Artifact) -> int:
        """Bytes on disk of ``artifact``: its model file and side files, as the manifest lists them."""
        return sum(self.file(p).bytes for p in (artifact.path, *artifact.side_files))

    def replace(self, **changes: Any) -> Manifest:
        return dataclasses.replace(self, **changes)

    # --- JSON ---------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError("manifest must be a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema_version {version!r} is not supported (this edgecart reads {SCHEMA_VERSION!r}); "
                "re-export the bundle with this edgecart version or upgrade edgecart"
            )
        d = _take(cls, data, "manifest")
        d["inputs"] = tuple(_build(TensorSpec, x, "inputs") for x in _list(d["inputs"], "inputs"))
        d["outputs"] = tuple(_build(TensorSpec, x, "outputs") for x in _list(d["outputs"], "outputs"))
        d["files"] = tuple(_build(FileEntry, x, "files") for x in _list(d["files"], "files"))
        arts = []
        for x in _list(d["artifacts"], "artifacts"):
            a = _take(Artifact, x, "artifacts")
            if a.get("parity") is not None:
                a["parity"] = _build(Parity, a["parity"], "artifact parity")
            a["side_files"] = tuple(_list(a.get("side_files", []), "side_files"))
            arts.append(_construct(Artifact, a, "artifacts"))
        d["artifacts"] = tuple(arts)
        pre = d.get("preprocessing")
        if pre is not None:
            kinds = {"image": ImagePreprocessing, "sequence": SequencePreprocessing, "text": TextPreprocessing}
            if not isinstance(pre, dict) or pre.get("kind") not in kinds:
                raise ManifestError(f"preprocessing.kind must be one of {sorted(kinds)}")
            d["preprocessing"] = _build(kinds[pre["kind"]], pre, "preprocessing")
        if d.get("golden") is not None:
            d["golden"] = _build(Golden, d["golden"], "golden")
        return _construct(cls, d, "manifest")

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest.json is not valid JSON ({exc}); the bundle is corrupt, re-export it") \
                from None
        return cls.from_dict(data)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ManifestError(f"{where} must be a list")
    return value


def _take(cls: type, data: Any, where: str) -> dict[str, Any]:
    """Check ``data``'s keys against ``cls``'s fields (allowlist) and return a shallow copy."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ManifestError(f"{where}: unknown keys {unknown}; the manifest was written by another edgecart version")
    missing = [
        n for n, f in fields.items()
        if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ManifestError(f"{where}: missing keys {missing}")
    return dict(data)


def _construct(cls: type, d: dict[str, Any], where: str) -> Any:
    try:
        return cls(**d)
    except ManifestError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"{where}: {exc}") from None


def _build(cls: type, data: Any, where: str) -> Any:
    d = _take(cls, data, where)
    for k, v in d.items():
        if isinstance(v, list) and k in ("shape", "size", "mean", "std"):
            d[k] = tuple(v)
    return _construct(cls, d, where)


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    return value
