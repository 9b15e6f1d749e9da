"""The bundle manifest: frozen dataclasses, strict JSON (de)serialisation through an allowlist.

Parsing is typed and bounded: every field must have exactly the JSON type its dataclass field declares (``true`` is
not an integer, ``1.7`` is not a dimension, ``123`` is not a name), nesting is at most :data:`MAX_DEPTH` levels,
integers at most :data:`MAX_INT_DIGITS` digits, and every failure is a :class:`ManifestError` naming the field.
The parser is driven by the dataclasses' type hints, so a new field is parsed (and type-checked) as soon as it is
declared; the JSON Schema in ``manifest.schema.json`` (next to this file) describes the same document for app
developers, and tests validate every kind of bundle edgecart writes against it.

The module is split in three: this one holds the dataclasses (the document), :mod:`.manifest_checks` the value
checks, enumerations and parser bounds, :mod:`.manifest_json` the bounded JSON decoding and the typed parser; every
public name stays importable from here.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ManifestError
from .manifest_checks import (
    DTYPES,
    FILE_ROLES,
    FORMATS,
    MANIFEST_NAME,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_DIM,
    MAX_FLOAT_CHARS,
    MAX_INT_DIGITS,
    MAX_MANIFEST_BYTES,
    PRECISIONS,
    SCHEMA_VERSION,
    SIGNATURE_ALGORITHMS,
    TASKS,
    _choice,
    _floats,
    _int,
    _json_safe,
    _name,
    _obj,
    _real,
    _short,
    _str_map,
    check_relative_path,
)
from .manifest_json import parse_dataclass, parse_json, to_jsonable

#: Files a catalog section refers to, per ``catalog.kind``: key paths ("*" = every key of that object). A runtime
#: opens these, so they must be plain paths the manifest's ``files`` list. A new task's catalog: one line here.
CATALOG_FILE_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "image_embeddings": (("items_file",), ("embeddings", "*", "path"), ("embeddings", "*", "scale_path")),
    "item_table": (("items",), ("popularity",), ("item_embeddings", "path"), ("item_embeddings", "scale")),
    "text_embeddings": (("items_file",), ("embeddings", "*", "path"), ("embeddings", "*", "scale_path"),
                        ("routing", "*", "weights"), ("routing", "*", "bias")),
}
#: The catalog kind (and preprocessing class name) a task's bundles must carry. A new task: one line here.
TASK_SECTIONS: dict[str, tuple[str, str | None]] = {
    "image_search": ("image_embeddings", None),
    "recommendations": ("item_table", "SequencePreprocessing"),
    "text_search": ("text_embeddings", "TextPreprocessing"),
}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, element type, static shape, optional layout."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    layout: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        _name(self.name, "tensor name")
        w = f"tensor {self.name!r}"
        _choice(self.dtype, DTYPES, f"{w}: dtype")
        if isinstance(self.shape, (str, bytes, dict)) or not hasattr(self.shape, "__iter__"):
            raise ManifestError(f"{w}: shape must be a list of integers, got {_short(self.shape)}")
        shape = tuple(_int(d, f"{w}: shape[{i}]", 1, MAX_DIM) for i, d in enumerate(self.shape))
        object.__setattr__(self, "shape", shape)
        if not shape:
            raise ManifestError(f"{w}: shape must have at least one axis (the batch)")
        if self.layout is not None:
            if not isinstance(self.layout, str) or len(self.layout) != len(shape):
                raise ManifestError(f"{w}: layout {_short(self.layout)} does not match rank {len(shape)}")
        if not isinstance(self.description, str):
            raise ManifestError(f"{w}: description must be a string")


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
        if isinstance(self.size, (str, bytes, dict)) or not hasattr(self.size, "__iter__"):
            raise ManifestError(f"preprocessing.size: expected [height, width], got {_short(self.size)}")
        size = tuple(_int(s, f"preprocessing.size[{i}]", 1, MAX_DIM) for i, s in enumerate(self.size))
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "scale", _real(self.scale, "preprocessing.scale"))
        object.__setattr__(self, "mean", _floats(self.mean, "preprocessing.mean"))
        object.__setattr__(self, "std", _floats(self.std, "preprocessing.std"))
        channels = {"rgb": 3, "grayscale": 1}
        if self.kind != "image":
            raise ManifestError(f"preprocessing.kind: image preprocessing kind must be 'image', got {self.kind!r}")
        if len(size) != 2:
            raise ManifestError(f"preprocessing.size: image size {size} must be (height, width), both positive")
        _choice(self.color, tuple(channels), "preprocessing.color")
        n = channels[self.color]
        if len(self.mean) != n or len(self.std) != n or any(s <= 0 for s in self.std):
            raise ManifestError(f"preprocessing.mean/std: image mean/std need {n} values (std > 0) for color "
                                f"{self.color!r}")
        _choice(self.layout, ("NCHW", "NHWC"), "preprocessing.layout")
        _choice(self.resize, ("bilinear", "nearest"), "preprocessing.resize")

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
            raise ManifestError(f"preprocessing.kind: sequence preprocessing kind must be 'sequence', got "
                                f"{self.kind!r}")
        object.__setattr__(self, "max_len", _int(self.max_len, "preprocessing.max_len", 1, MAX_DIM))
        object.__setattr__(self, "pad_index", _int(self.pad_index, "preprocessing.pad_index", 0, MAX_DIM))
        _choice(self.padding, ("left", "right"), "preprocessing.padding")


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
            raise ManifestError(f"preprocessing.kind: text preprocessing kind must be 'text', got {self.kind!r}")
        check_relative_path(self.tokenizer, "preprocessing.tokenizer")
        object.__setattr__(self, "max_len", _int(self.max_len, "preprocessing.max_len", 1, MAX_DIM))
        _choice(self.padding, ("left", "right"), "preprocessing.padding")
        _choice(self.truncation, ("left", "right"), "preprocessing.truncation")
        for f in ("pad_token", "input_ids", "attention_mask"):
            _name(getattr(self, f), f"preprocessing.{f}")
        if self.input_ids == self.attention_mask:
            raise ManifestError("preprocessing: input_ids and attention_mask must be two distinct names")


#: Every preprocessing dataclass; the parser picks one by its ``kind``. A new kind: add its class here.
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
            raise ManifestError("files: manifest.json must not list itself")
        if not isinstance(self.sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ManifestError(f"files[{self.path}].sha256: must be 64 lowercase hex digits, got "
                                f"{_short(self.sha256)}")
        _int(self.bytes, f"files[{self.path}].bytes", 0)
        _choice(self.role, FILE_ROLES, f"files[{self.path}].role")


@dataclass(frozen=True)
class Parity:
    """How closely an artifact reproduces the reference (eager float) model on the golden inputs."""

    max_abs_diff: float
    cosine: float
    max_abs_tolerance: float | None
    min_cosine: float | None
    samples: int
    reference: str = "eager-fp32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_abs_diff", _real(self.max_abs_diff, "parity.max_abs_diff", 0.0))
        object.__setattr__(self, "cosine", _real(self.cosine, "parity.cosine"))
        if self.max_abs_tolerance is not None:
            object.__setattr__(self, "max_abs_tolerance",
                               _real(self.max_abs_tolerance, "parity.max_abs_tolerance", 0.0))
        if self.min_cosine is not None:
            object.__setattr__(self, "min_cosine", _real(self.min_cosine, "parity.min_cosine"))
        object.__setattr__(self, "samples", _int(self.samples, "parity.samples", 0))
        if not isinstance(self.reference, str):
            raise ManifestError("parity.reference: must be a string")

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
        _name(self.name, "artifact name")
        w = f"artifact {self.name!r}"
        _choice(self.format, FORMATS, f"{w}: format")
        _choice(self.precision, PRECISIONS, f"{w}: precision")
        check_relative_path(self.path)
        if self.delegate is not None and not isinstance(self.delegate, str):
            raise ManifestError(f"{w}: delegate must be a string or null, got {_short(self.delegate)}")
        if isinstance(self.side_files, (str, bytes, dict)) or not hasattr(self.side_files, "__iter__"):
            raise ManifestError(f"{w}: side_files must be a list of paths")
        object.__setattr__(self, "side_files", tuple(check_relative_path(p, f"{w}: side_files[{i}]")
                                                     for i, p in enumerate(self.side_files)))
        _obj(self.quantization, f"{w}: quantization", optional=True)
        _obj(self.quality, f"{w}: quality")
        if self.parity is not None and not isinstance(self.parity, Parity):
            raise ManifestError(f"{w}: parity must be a Parity record or null")


@dataclass(frozen=True)
class Golden:
    """Reference inputs and the float model's outputs, one .npy per tensor name."""

    inputs: dict[str, str]
    outputs: dict[str, str]

    def __post_init__(self) -> None:
        _str_map(self.inputs, "golden.inputs")
        _str_map(self.outputs, "golden.outputs")
        for group, paths in (("inputs", self.inputs), ("outputs", self.outputs)):
            for k, p in paths.items():
                check_relative_path(p, f"golden.{group}.{k}")


@dataclass(frozen=True)
class Signature:
    """An Ed25519 signature over the manifest's canonical digest (see :mod:`edgecart.runtime.signing`)."""

    algorithm: str
    key_id: str
    value: str

    def __post_init__(self) -> None:
        _choice(self.algorithm, SIGNATURE_ALGORITHMS, "signature.algorithm")
        if not isinstance(self.key_id, str) or not re.fullmatch(r"[0-9a-f]{64}", self.key_id):
            raise ManifestError("signature.key_id: must be the public key's sha256, 64 lowercase hex digits")
        if not isinstance(self.value, str) or len(self.value) != 88:
            raise ManifestError("signature.value: must be 88 base64 characters (a 64-byte Ed25519 signature)")
        try:
            raw = base64.b64decode(self.value, validate=True)
        except (binascii.Error, ValueError):
            raise ManifestError("signature.value: is not valid base64") from None
        if len(raw) != 64:
            raise ManifestError("signature.value: must decode to 64 bytes")

    def raw(self) -> bytes:
        return base64.b64decode(self.value)


def _catalog_paths(catalog: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(where, path) of every file the catalog section refers to (see :data:`CATALOG_FILE_KEYS`), and the files of
    its approximate index: every ``*_path`` key of a ``catalog.index`` object (:mod:`edgecart.runtime.index`:
    ``centroids_path``, ``order_path``, ``offsets_path``), whatever the catalog's kind."""
    if not catalog:
        return []
    kind = catalog.get("kind")
    found: list[tuple[str, str]] = []

    def walk(node: Any, keys: tuple[str, ...], where: str) -> None:
        if not keys:
            if not isinstance(node, str):
                raise ManifestError(f"{where}: expected a file path string, got {_short(node)}")
            found.append((where, check_relative_path(node)))
            return
        if not isinstance(node, dict):
            return
        head, rest = keys[0], keys[1:]
        if head == "*":
            for k, v in node.items():
                if isinstance(v, dict):
                    walk(v, rest, f"{where}.{k}")
        elif head in node:
            walk(node[head], rest, f"{where}.{head}")

    for keys in CATALOG_FILE_KEYS.get(kind, ()) if isinstance(kind, str) else ():
        walk(catalog, keys, "catalog")
    index = catalog.get("index")
    if isinstance(index, dict):  # (a recommendations catalog's "index" is a sentence, not an index: not walked)
        for key in sorted(k for k in index if isinstance(k, str) and k.endswith("_path")):
            walk(index[key], (), f"catalog.index.{key}")
    return found


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
    signature: Signature | None = None
    schema_version: str = SCHEMA_VERSION
    backend_preference: dict[str, Any] | None = None  # per platform, fastest backend first (runtime/preference.py)

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ManifestError(
                f"schema_version: {_short(self.schema_version)} is not supported (this edgecart reads "
                f"{SCHEMA_VERSION!r}); re-export the bundle or upgrade edgecart"
            )
        _name(self.name, "name")
        _name(self.version, "version")
        if not isinstance(self.created_at, str):
            raise ManifestError("created_at: must be a string (ISO 8601 time)")
        _choice(self.task, TASKS, "task")
        _str_map(self.toolchain, "toolchain")
        for group, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            if not all(isinstance(s, TensorSpec) for s in specs):
                raise ManifestError(f"{group}: must hold TensorSpec records")
            names = [s.name for s in specs]
            if not names or len(set(names)) != len(names):
                raise ManifestError(f"{group}: names must be present and unique, got {names}")
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ManifestError("files: lists a path twice")
        listed = set(paths)
        names = [a.name for a in self.artifacts]
        if len(set(names)) != len(names):
            raise ManifestError(f"artifacts: names must be unique, got {names}")
        for a in self.artifacts:
            for p in (a.path, *a.side_files):
                if p not in listed:
                    raise ManifestError(f"artifacts: artifact {a.name!r} refers to {p!r}, which files does not list")
        if self.golden is not None:
            for p in [*self.golden.inputs.values(), *self.golden.outputs.values()]:
                if p not in listed:
                    raise ManifestError(f"golden: file {p!r} is not listed in files")
            if set(self.golden.inputs) != {s.name for s in self.inputs}:
                raise ManifestError("golden.inputs: must name exactly the model inputs")
            if set(self.golden.outputs) != {s.name for s in self.outputs}:
                raise ManifestError("golden.outputs: must name exactly the model outputs")
        _obj(self.catalog, "catalog", optional=True)
        _obj(self.quality, "quality")
        want = TASK_SECTIONS.get(self.task)
        if want is not None:
            kind, pre = want
            if not self.catalog or self.catalog.get("kind") != kind:
                raise ManifestError(f"catalog: a {self.task!r} bundle needs a catalog of kind {kind!r}, got "
                                    f"{_short((self.catalog or {}).get('kind'))}; re-export it with the {self.task} "
                                    "pipeline")
            if pre is not None and type(self.preprocessing).__name__ != pre:
                raise ManifestError(f"preprocessing: a {self.task!r} bundle needs {pre}, got "
                                    f"{type(self.preprocessing).__name__}")
        check_preprocessing(self.preprocessing, self.inputs)
        for where, p in _catalog_paths(self.catalog):
            if p not in listed:
                raise ManifestError(f"{where}: refers to {p!r}, which files does not list")
        if self.signature is not None and not isinstance(self.signature, Signature):
            raise ManifestError("signature: must be a Signature record or null")
        _obj(self.backend_preference, "backend_preference", optional=True)

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
        return to_jsonable(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(f"manifest must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"schema_version: {_short(version)} is not supported (this edgecart reads {SCHEMA_VERSION!r}); "
                "re-export the bundle with this edgecart version or upgrade edgecart"
            )
        _json_safe(data, "manifest")
        return parse_dataclass(cls, data, "")

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        return cls.from_dict(parse_json(text, MANIFEST_NAME))


def check_preprocessing(pre: Any, inputs: tuple[TensorSpec, ...]) -> None:
    """Refuse image or sequence preprocessing that cannot produce the model's first input: an image's (N, C, H, W)
    or (N, H, W, C) float tensor at ``size`` with 3 (rgb) or 1 (grayscale) channels, a history's (N, max_len)
    integer tensor. A :class:`ManifestError` says what the model takes."""
    if not inputs or not isinstance(pre, (ImagePreprocessing, SequencePreprocessing)):
        return
    x = inputs[0]
    fix = "pass --preprocessing (preprocessing= in Python) that matches the model"
    if isinstance(pre, SequencePreprocessing):  # item indices (N, max_len), or their table rows (N, max_len, dim)
        want = f"(N, {pre.max_len}) item indices or (N, {pre.max_len}, dim) item rows"
        if len(x.shape) not in (2, 3) or x.shape[1] != pre.max_len:
            raise ManifestError(f"preprocessing: a history of max_len {pre.max_len} becomes an input of shape {want}; "
                                f"the model's input {x.name!r} is {x.shape}: {fix}")
        kind = ("int", "uint") if len(x.shape) == 2 else ("float",)
        if not x.dtype.startswith(kind):
            what = "integer item indices" if len(x.shape) == 2 else "float item rows"
            raise ManifestError(f"preprocessing: a history becomes {what}; the model's input {x.name!r} is "
                                f"{x.dtype}: {fix}")
        return
    c = 3 if pre.color == "rgb" else 1
    h, w = pre.size
    want = f"(N, {c}, {h}, {w})" if pre.layout == "NCHW" else f"(N, {h}, {w}, {c})"
    if len(x.shape) != 4:
        raise ManifestError(f"preprocessing: a picture becomes a rank-4 input {want} ({pre.layout} layout); the "
                            f"model's input {x.name!r} is {x.shape}, of rank {len(x.shape)}: {fix}")
    if tuple(x.shape[1:]) != ((c, h, w) if pre.layout == "NCHW" else (h, w, c)):
        other = "NHWC" if pre.layout == "NCHW" else "NCHW"
        hint = (f" (it reads as {other}: set layout = {other!r})"
                if tuple(x.shape[1:]) == ((h, w, c) if other == "NHWC" else (c, h, w)) else "")
        raise ManifestError(f"preprocessing: size {[h, w]}, color {pre.color!r} and layout {pre.layout!r} give an "
                            f"input of shape {want}; the model's input {x.name!r} is {x.shape}{hint}: {fix}")
    if not x.dtype.startswith("float"):
        raise ManifestError(f"preprocessing: a picture becomes a float tensor; the model's input {x.name!r} is "
                            f"{x.dtype}: {fix}")


__all__ = ["CATALOG_FILE_KEYS", "DTYPES", "FILE_ROLES", "FORMATS", "MANIFEST_NAME", "MAX_BYTES", "MAX_DEPTH", "MAX_DIM",
           "MAX_FLOAT_CHARS", "MAX_INT_DIGITS", "MAX_MANIFEST_BYTES", "PRECISIONS", "SCHEMA_VERSION",
           "SIGNATURE_ALGORITHMS", "TASKS", "TASK_SECTIONS", "Artifact", "FileEntry", "Golden", "IOSpec",
           "ImagePreprocessing", "Manifest", "Parity", "Preprocessing", "SequencePreprocessing", "Signature",
           "TensorSpec", "TextPreprocessing", "check_preprocessing", "check_relative_path", "parse_json"]
