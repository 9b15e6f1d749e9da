"""Strict value checks of the bundle manifest, and its enumerations and parser bounds.

The manifest's dataclasses call these in ``__post_init__``, so code that builds a manifest is held to the same rules
as a manifest read from disk; every failure is a :class:`ManifestError` (or :class:`UnsafePathError`) naming the field.
"""

from __future__ import annotations

import math
import operator
import posixpath
from typing import Any

import numpy as np

from .errors import ManifestError, UnsafePathError

SCHEMA_VERSION = "1.0"
MANIFEST_NAME = "manifest.json"
FORMATS = ("executorch", "onnx", "tflite")
DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")
TASKS = ("image_search", "recommendations", "text_search", "generic")
PRECISIONS = ("fp32", "fp16", "int8")
FILE_ROLES = ("model", "weights", "catalog", "golden", "metadata")
SIGNATURE_ALGORITHMS = ("ed25519",)

#: Bounds of the parser: a manifest is small, flat data; anything beyond these is refused, never recursed into.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 32
MAX_INT_DIGITS = 19  # int64
MAX_FLOAT_CHARS = 40
MAX_DIM = 2**31 - 1
MAX_BYTES = 2**63 - 1


def check_relative_path(path: str, where: str = "") -> str:
    """Return ``path`` if it is a plain relative POSIX path inside the bundle, else raise UnsafePathError."""
    at = f"{where}: " if where else ""
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"{at}bundle path {_short(path)} must be a non-empty string")
    if "\\" in path or "\x00" in path or path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise UnsafePathError(f"{at}bundle path {_short(path)} must be relative and use '/' separators")
    norm = posixpath.normpath(path)
    if norm != path or norm == "." or norm.split("/")[0] == "..":
        raise UnsafePathError(f"{at}bundle path {_short(path)} is not a normalised path inside the bundle")
    return path


def _short(value: Any, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 5] + "…" + r[-4:]


def _is_surrogate_free(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_safe(value: Any, where: str, depth: int = 0) -> None:
    """Refuse what is not plain, finite, bounded JSON data (free-form sections: quality, catalog, quantization)."""
    if depth > MAX_DEPTH:
        raise ManifestError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if not _is_surrogate_free(value):
            raise ManifestError(f"{where}: text holds an unpaired surrogate; it is not valid Unicode")
        return
    if isinstance(value, int):
        if abs(value) > MAX_BYTES:
            raise ManifestError(f"{where}: integer {_short(value)} is out of the int64 range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ManifestError(f"{where}: {value!r} is not a finite number")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _json_safe(v, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ManifestError(f"{where}: key {_short(k)} must be a string")
            _json_safe(k, f"{where} key", depth + 1)
            _json_safe(v, f"{where}.{k}", depth + 1)
        return
    raise ManifestError(f"{where}: {type(value).__name__} is not JSON data")


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: expected a non-empty string, got {_short(value)}")
    return value


def _int(value: Any, where: str, minimum: int | None = None, maximum: int = MAX_BYTES) -> int:
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (float, np.floating)):
        raise ManifestError(f"{where}: expected an integer, got {_short(value)}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ManifestError(f"{where}: expected an integer, got {_short(value)}") from None
    if (minimum is not None and v < minimum) or v > maximum:
        lo = "" if minimum is None else f" >= {minimum}"
        raise ManifestError(f"{where}: {v} is out of range (expected an integer{lo}, at most {maximum})")
    return int(v)


def _real(value: Any, where: str, minimum: float | None = None) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ManifestError(f"{where}: expected a number, got {_short(value)}")
    v = float(value)
    if not math.isfinite(v):
        raise ManifestError(f"{where}: {v!r} is not a finite number")
    if minimum is not None and v < minimum:
        raise ManifestError(f"{where}: {v} must be >= {minimum}")
    return v


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ManifestError(f"{where}: {_short(value)} is not one of {allowed}")
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: expected an object of strings, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ManifestError(f"{where}: {_short(k)} -> {_short(v)} must map a string to a string")
        _json_safe(v, f"{where}.{k}")
    return value


def _obj(value: Any, where: str, optional: bool = False) -> dict[str, Any] | None:
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        null = " or null" if optional else ""
        raise ManifestError(f"{where}: expected an object{null}, got {type(value).__name__}")
    _json_safe(value, where)
    return value


def _floats(values: Any, where: str) -> tuple[float, ...]:
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise ManifestError(f"{where}: expected a list of numbers, got {_short(values)}")
    return tuple(_real(v, f"{where}[{i}]") for i, v in enumerate(values))
