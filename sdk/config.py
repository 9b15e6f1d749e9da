"""One allowlist (de)serialiser for every frozen configuration dataclass: ``to_dict`` / ``from_dict``.

``from_dict(cls, data)`` accepts exactly the fields ``cls`` declares (an unknown key raises :class:`ConfigError`
listing the known ones), converts JSON lists back to tuples, and builds nested dataclasses from nested objects,
following the field's type hints. Nothing is ever unpickled or evaluated. Stdlib only: it imports without torch.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from pathlib import Path
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
    """Build the dataclass ``cls`` from ``data`` through an allowlist of its field names."""
    where = where or cls.__name__
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table/object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; known: {sorted(fields)}")
    hints = _hints(cls)
    kw = {k: _convert(hints.get(k, Any), v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kw)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        classes = [a for a in args if dataclasses.is_dataclass(a)]
        if len(classes) == 1 and isinstance(value, dict):
            return from_dict(classes[0], value, where)
        for a in args:  # several dataclasses: the class's own __post_init__ tells them apart (e.g. by "kind")
            if typing.get_origin(a) is tuple and isinstance(value, (list, tuple)):
                return _convert(a, value, where)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        inner = args[0] if args and (len(args) == 2 and args[1] is Ellipsis) else Any
        return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    return value


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
