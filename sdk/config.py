"""One allowlist (de)serialiser for every frozen configuration dataclass: ``to_dict`` / ``from_dict``.

``from_dict(cls, data)`` accepts exactly the fields ``cls`` declares (an unknown key raises :class:`ConfigError`
listing the known ones) and checks every value against its field's type hint: a ``bool`` takes only true/false
(``"false"`` is refused, not read as true), an ``int`` a whole number, a ``float`` any number (stored as a float), a
``str`` a string, a ``Literal`` one of its values, a tuple a list (``formats = "onnx"`` is refused, not split into
letters), ``X | None`` None too. A value of the wrong type raises :class:`ConfigError` naming the dotted field, the
type it takes and the value it got, e.g. ``BuildConfig.teacher.epochs: expected a whole number (an integer), got '3'
(str); e.g. epochs = 3``. JSON lists become tuples and nested objects nested dataclasses. Checks of values (ranges,
known names) stay with each class's ``__post_init__``. A field's ``metadata={"expected": "..."}`` words what it
takes when its type alone says too little. Nothing is ever unpickled or evaluated. Stdlib only: it imports without
torch.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import types
import typing
from pathlib import Path, PurePath
from typing import Any, TypeVar

from edgecart.runtime.errors import EdgecartError

T = TypeVar("T")


class ConfigError(EdgecartError, ValueError):
    """A configuration (dict, JSON or TOML file) names an unknown key or holds a value of the wrong shape."""


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (a bad value is a usage error, exit 2, naming the option)."""
    import argparse

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass: tuples become lists, nested dataclasses become dicts."""
    if not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        raise TypeError(f"to_dict expects a dataclass instance, got {type(config).__name__}")
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: Any, where: str | None = None) -> T:
    """Build the dataclass ``cls`` from ``data`` through an allowlist of its field names, checking each value against
    its field's type hint (see :func:`_convert`); ``where`` names ``cls`` in error messages (default: its name)."""
    where = where or cls.__name__
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table/object of keys ({cls.__name__}), got {_show(data)} "
                          f"({type(data).__name__})")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; known: {sorted(fields)}")
    hints = _hints(cls)
    kw = {k: _convert(hints.get(k, Any), v, f"{where}.{k}", fields[k].metadata.get("expected"))
          for k, v in data.items()}
    try:
        return cls(**kw)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


#: what a value of each plain type is called in messages (TOML's words: a TOML integer is a whole number)
_WORDS: dict[Any, tuple[str, str]] = {bool: ("true or false", "true/false values"),
                                      int: ("a whole number (an integer)", "whole numbers"),
                                      float: ("a number", "numbers"), str: ("a string", "strings")}


def _convert(hint: Any, value: Any, where: str, expected: str | None = None) -> Any:
    """``value`` checked against the type hint ``hint`` (``where``: the dotted field, for messages; ``expected``:
    what the field takes, in words, when its type alone says too little) and converted where JSON/TOML cannot say
    it: a list becomes a tuple, a table a nested dataclass, a whole number a float where a float is expected.

    bool takes only true/false; int a whole number (not a bool); float a whole or decimal number (not a bool);
    str a string; ``Literal[...]`` one of its values; a tuple a list or tuple (never a string), checked item by
    item; ``X | None`` None or an X; ``Path`` a string or a Path; a dataclass a table (or an instance). ``Any``
    and other hints take anything. A mismatch is a :class:`ConfigError` naming ``where``, the type and the value."""
    if hint is Any or isinstance(hint, (str, typing.TypeVar)):
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(hint, value, where, expected)
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(hint)):
            return value
        raise _mismatch(hint, value, where, expected)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _mismatch(hint, value, where, expected)
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return value if type(value) is int else int(value)
        raise _mismatch(hint, value, where, expected)
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                raise ConfigError(f"{where}: {_show(value)} is too large for a number") from None
        raise _mismatch(hint, value, where, expected)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _mismatch(hint, value, where, expected)
    if isinstance(hint, type) and issubclass(hint, PurePath):
        if isinstance(value, (str, PurePath)):
            return value
        raise _mismatch(hint, value, where, expected)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, (hint, dict)):
            return from_dict(hint, value, where)
        raise _mismatch(hint, value, where, expected)
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise _mismatch(hint, value, where, expected)
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis or not args:
            inner = args[0] if args else Any
            return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _mismatch(hint, value, where, expected)
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict or hint is dict:
        if isinstance(value, dict):
            return value
        raise _mismatch(hint, value, where, expected)
    return value


def _convert_union(hint: Any, value: Any, where: str, expected: str | None) -> Any:
    args = typing.get_args(hint)
    arms = [a for a in args if a is not type(None)]
    if value is None:
        if len(arms) < len(args):
            return None
        raise _mismatch(hint, value, where, expected)
    if len(arms) == 1:
        return _convert(arms[0], value, where, expected)
    if sum(1 for a in arms if dataclasses.is_dataclass(a)) > 1:
        # several dataclasses (e.g. the quantization recipes): the field's own code tells them apart (by "kind", by
        # a registered name, ...), so a table or a name is passed on as it is
        return value
    inside: list[ConfigError] = []
    for arm in arms:
        try:
            return _convert(arm, value, where)
        except ConfigError as exc:  # an arm that takes this kind of value but not what is inside it says what is wrong
            if getattr(exc, "edgecart_where", None) != where:
                inside.append(exc)
    if inside:
        raise inside[0]
    raise _mismatch(hint, value, where, expected)


def _mismatch(hint: Any, value: Any, where: str, expected: str | None) -> ConfigError:
    """The error for a value of the wrong type at ``where`` (marked with it, for unions to tell a value of another
    type from a bad value inside a table or list)."""
    msg = f"{where}: expected {expected or _describe(hint)}, got {_show(value)} ({type(value).__name__})"
    example = _example(hint, value, where)
    exc = ConfigError(f"{msg}; e.g. {example}" if example else msg)
    exc.edgecart_where = where  # type: ignore[attr-defined]
    return exc


def _describe(hint: Any, plural: bool = False) -> str:
    """``hint`` in words: "a whole number (an integer)", "a list of strings", "one of 'a', 'b'", ..."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(hint) if a is not type(None)]
        if sum(1 for a in arms if dataclasses.is_dataclass(a)) > 1:
            return "values" if plural else "a value"  # told apart by the field's own code (see _convert_union)
        return " or ".join(dict.fromkeys(_describe(a, plural) for a in arms))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if hint in _WORDS:
        return _WORDS[hint][plural]
    if isinstance(hint, type) and issubclass(hint, PurePath):
        return "paths" if plural else "a path (a string)"
    if dataclasses.is_dataclass(hint):
        return "tables" if plural else f"a table of keys ({hint.__name__})"
    if origin is tuple or hint is tuple:
        args = typing.get_args(hint)
        if not args or args[0] is Any:
            return "lists" if plural else "a list"
        if len(args) == 2 and args[1] is Ellipsis:
            items = _describe(args[0], True)
            return "lists" if plural else "a list" if items == "values" else f"a list of {items}"
        kinds = {_describe(a, True) for a in args}
        return "lists" if plural else f"a list of {len(args)} {kinds.pop() if len(kinds) == 1 else 'values'}"
    if origin is dict or hint is dict:
        return "tables" if plural else "a table"
    return "values" if plural else "a value"


def _example(hint: Any, value: Any, where: str) -> str | None:
    """How the value was probably meant, in TOML (``epochs = 3`` for ``epochs = "3"``), or None."""
    key = where.rpartition(".")[2]
    if not key.isidentifier():
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(hint) if a is not type(None)]
        return _example(arms[0], value, where) if len(arms) == 1 else None
    text = value.strip() if isinstance(value, str) else None
    args = typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] not in (bool, int, float) and text:
        return f"{key} = [{json.dumps(value)}]"  # formats = "onnx" meant formats = ["onnx"]
    if hint is bool and (text or "").lower() in ("true", "false"):
        return f"{key} = {text.lower()}"  # type: ignore[union-attr]
    if hint is bool and type(value) is int and value in (0, 1):
        return f"{key} = {'true' if value else 'false'}"
    if hint is int and text is not None and text.lstrip("+-").isdigit():
        return f"{key} = {int(text)}"
    if hint is int and type(value) is float and value.is_integer():
        return f"{key} = {int(value)}"
    if hint is float and text is not None:
        try:
            number = float(text)
        except ValueError:
            return None
        return f"{key} = {text}" if math.isfinite(number) else None
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{key} = {json.dumps(str(value))}"
    if hint is str and isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return f"{key} = {json.dumps(value[0])}"
    return None


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a configuration file: ``.toml`` (tomllib) or ``.json``; anything else is refused."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such file")
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(p.read_text(encoding="utf-8"))
        if p.suffix.lower() == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ConfigError(f"{p}: the top level must be an object")
            return data
    except (ValueError, UnicodeDecodeError) as exc:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{p}: not valid {p.suffix[1:].upper()}: {exc}") from None
    raise ConfigError(f"{p}: configuration files are .toml or .json, not {p.suffix or 'extension-less'}")


__all__ = ["ConfigError", "from_dict", "load_file", "to_dict"]
