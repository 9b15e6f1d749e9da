"""Bounded JSON decoding and typed parsing of the bundle manifest.

:func:`parse_json` refuses what no manifest holds (oversized text, deep nesting, long numbers, NaN, duplicate keys)
before ``json`` builds anything; :func:`parse_dataclass` turns the decoded data into the manifest's dataclasses,
driven by their type hints, so every field must have exactly the JSON type it declares.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from typing import Any

import numpy as np

from .errors import ManifestError, UnsafePathError
from .manifest_checks import MANIFEST_NAME, MAX_DEPTH, MAX_FLOAT_CHARS, MAX_INT_DIGITS, MAX_MANIFEST_BYTES, _short

# --- bounded JSON decoding ------------------------------------------------------------------------------------------

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_LONG_INT = re.compile(r"-?\d{" + str(MAX_INT_DIGITS + 1) + ",}")


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line} column {col}"


def _blank_strings(text: str) -> str:
    """``text`` with every JSON string's content blanked (same length, so positions still hold)."""
    return _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', text)


def _too_deep(bare: str) -> int | None:
    """Index where nesting first exceeds MAX_DEPTH (strings blanked), else None. Linear, no recursion."""
    b = np.frombuffer(bare.encode("ascii", "replace"), np.uint8)
    level, chunk = 0, 1 << 20
    for start in range(0, len(b), chunk):
        c = b[start:start + chunk]
        d = ((c == 0x5B) | (c == 0x7B)).astype(np.int32) - ((c == 0x5D) | (c == 0x7D))
        if not d.any():
            continue
        cs = np.cumsum(d) + level
        over = np.flatnonzero(cs > MAX_DEPTH)
        if over.size:
            return start + int(over[0])
        level = int(cs[-1])
    return None


class _NumberRefused(Exception):
    pass


def _parse_int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_INT_DIGITS:
        raise _NumberRefused(f"an integer of {len(s.lstrip('-'))} digits (at most {MAX_INT_DIGITS} allowed)")
    return int(s)


def _parse_float(s: str) -> float:
    if len(s) > MAX_FLOAT_CHARS:
        raise _NumberRefused(f"a number written with {len(s)} characters (at most {MAX_FLOAT_CHARS} allowed)")
    v = float(s)
    if not math.isfinite(v):
        raise _NumberRefused(f"the number {s} overflows to {v}")
    return v


def _refuse_constant(s: str) -> float:
    raise _NumberRefused(f"{s} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ManifestError(f"key {_short(dup)} appears twice in one object; a manifest must be unambiguous")
    return d


def parse_json(text: str | bytes, what: str = MANIFEST_NAME) -> Any:
    """Decode JSON with bounds: size, nesting depth, number length, no NaN/Infinity, no duplicate keys.

    Every failure is a :class:`ManifestError` that says where.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        if len(text) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{what}: larger than {MAX_MANIFEST_BYTES} bytes; refusing to parse it")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{what}: not UTF-8 text ({exc.reason} at byte {exc.start}); the bundle is corrupt, "
                                "re-export it") from None
    if not isinstance(text, str):
        raise ManifestError(f"{what}: expected JSON text, got {type(text).__name__}")
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{what}: larger than {MAX_MANIFEST_BYTES} bytes; refusing to parse it")
    bare = _blank_strings(text)
    deep = _too_deep(bare)
    if deep is not None:
        raise ManifestError(f"{what}: nested more than {MAX_DEPTH} levels deep at {_position(text, deep)}; "
                            "a manifest is flat data — the file is corrupt or hostile")
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant,
                          object_pairs_hook=_unique_keys)
    except _NumberRefused as exc:
        m = _LONG_INT.search(bare)
        where = f" at {_position(text, m.start())}" if m else ""
        raise ManifestError(f"{what}: {exc}{where}; the file is corrupt or hostile") from None
    except (json.JSONDecodeError, RecursionError, ValueError, TypeError) as exc:
        raise ManifestError(f"{what}: not valid JSON ({exc}); the bundle is corrupt, re-export it") from None


# --- typed parsing driven by the dataclasses' type hints -----------------------------------------------------------

@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _parse(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            if len(args) < len(typing.get_args(hint)):
                return None
            raise ManifestError(f"{where}: must not be null")
        if len(args) == 1:
            return _parse(args[0], value, where)
        if all(dataclasses.is_dataclass(a) for a in args):
            kinds = {f.default: a for a in args for f in dataclasses.fields(a) if f.name == "kind"}
            kind = value.get("kind") if isinstance(value, dict) else None
            if not isinstance(kind, str) or kind not in kinds:
                raise ManifestError(f"{_join(where, 'kind')}: {_short(kind)} is not one of {sorted(kinds)}")
            return _parse(kinds[kind], value, where)
        raise ManifestError(f"{where}: unsupported union {hint}")  # a programming error, reported typed
    if hint in (str, int, float, bool):
        ok = type(value) is hint or (hint is float and type(value) is int)
        if not ok:
            raise ManifestError(f"{where}: expected {_TYPE_NAMES[hint]}, got {_json_type(value)} {_short(value)}")
        return float(value) if hint is float else value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise ManifestError(f"{where}: expected a list, got {_json_type(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(args[0], v, _join(where, i)) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ManifestError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_parse(a, v, _join(where, i)) for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        _k, vt = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ManifestError(f"{where}: expected an object, got {_json_type(value)}")
        return {k: _parse(vt, v, _join(where, k)) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return parse_dataclass(hint, value, where)
    raise ManifestError(f"{where}: cannot parse a field of type {hint}")


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def parse_dataclass(cls: type, data: Any, where: str) -> Any:
    label = where or "manifest"
    if not isinstance(data, dict):
        raise ManifestError(f"{label}: expected an object, got {_json_type(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ManifestError(f"{label}: unknown keys {[_short(u) for u in unknown]}; the manifest was written by "
                            "another edgecart version, or edited")
    missing = [n for n, f in fields.items()
               if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ManifestError(f"{label}: missing keys {missing}")
    hints = _hints(cls)
    kwargs = {k: _parse(hints[k], v, _join(where, k)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ManifestError as exc:
        msg = str(exc)
        raise ManifestError(msg if not where or msg.startswith(where) else f"{where}: {msg}") from None
    except UnsafePathError as exc:
        raise UnsafePathError(f"{label}: {exc}") from None
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise ManifestError(f"{label}: {exc}") from None


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value
