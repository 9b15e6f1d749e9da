"""A small, schema-driven FlatBuffers verifier (pure Python, numpy-free) for checking model files before an engine
sees them.

ExecuTorch's loader logs parts of a program (its file identifier, backend ids, operator names) through a Python
callback that decodes them as UTF-8; a corrupted byte there makes the callback throw inside C++ and the whole process
aborts (``terminate called after throwing pybind11::error_already_set``). Its own verifier does not look at string
contents. This module walks every table, vector, string and union a schema describes and checks that each offset and
size lies inside the buffer, that alignment holds, that strings are NUL-terminated valid UTF-8 and that union types are
known, so a malformed program is refused with a message instead of reaching the engine.

A schema is a dict ``table name -> tuple of slot types`` in field-id order. Slot types: ``"u8"``/``"i8"``/``"bool"``,
``"u16"``, ``"u32"``/``"i32"``, ``"u64"``/``"i64"``/``"f64"`` (scalars), ``"str"``, ``("vec", elem)`` with ``elem`` a
scalar type, ``"str"`` or a table name, a table name, and for a union the two slots FlatBuffers gives it:
``"utype"`` followed by ``("union", {type code: table name})``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

_SCALAR = {"u8": 1, "i8": 1, "bool": 1, "u16": 2, "i16": 2, "u32": 4, "i32": 4, "f32": 4, "u64": 8, "i64": 8,
           "f64": 8, "utype": 1}
MAX_DEPTH = 64
MAX_TABLES = 1_000_000


class FlatbufferError(ValueError):
    """The buffer does not hold a well-formed FlatBuffer of the expected schema; the message says where."""


class Verifier:
    """Verify ``buf[:end]`` against ``schema`` starting from the root table ``root``."""

    def __init__(self, buf: bytes | memoryview, schema: Mapping[str, tuple[Any, ...]], end: int | None = None) -> None:
        self.buf = memoryview(buf)
        self.end = len(self.buf) if end is None else end
        if not 0 <= self.end <= len(self.buf):
            raise FlatbufferError(f"declared size {end} exceeds the {len(self.buf)}-byte buffer")
        self.schema = schema
        self.tables = 0

    # -- primitive reads with bounds checks -------------------------------------------------------------------
    def _check(self, off: int, size: int, what: str, align: int = 1) -> None:
        if off < 0 or off + size > self.end:
            raise FlatbufferError(f"{what}: offset {off} + {size} bytes lies outside the {self.end}-byte buffer")
        if align > 1 and off % align:
            raise FlatbufferError(f"{what}: offset {off} is not {align}-byte aligned")

    def u16(self, off: int, what: str) -> int:
        self._check(off, 2, what, 2)
        return int(struct.unpack_from("<H", self.buf, off)[0])

    def u32(self, off: int, what: str) -> int:
        self._check(off, 4, what, 4)
        return int(struct.unpack_from("<I", self.buf, off)[0])

    def i32(self, off: int, what: str) -> int:
        self._check(off, 4, what, 4)
        return int(struct.unpack_from("<i", self.buf, off)[0])

    def _deref(self, pos: int, what: str) -> int:
        """The absolute position an unsigned 32-bit offset stored at ``pos`` points to."""
        target = pos + self.u32(pos, what)
        self._check(target, 4, what)
        return target

    # -- structure ----------------------------------------------------------------------------------------------
    def verify(self, root: str, identifier: bytes | None = None) -> None:
        if self.end < 8:
            raise FlatbufferError(f"{self.end} bytes is too short for a FlatBuffer (at least 8)")
        if identifier is not None and bytes(self.buf[4:8]) != identifier:
            raise FlatbufferError(f"file identifier {bytes(self.buf[4:8])!r} is not {identifier!r}")
        self.table(self._deref(0, "root offset"), root, 0)

    def table(self, off: int, name: str, depth: int) -> None:
        where = f"table {name} at {off}"
        if depth > MAX_DEPTH:
            raise FlatbufferError(f"{where}: nested deeper than {MAX_DEPTH}")
        self.tables += 1
        if self.tables > MAX_TABLES:
            raise FlatbufferError(f"more than {MAX_TABLES} tables")
        vt = off - self.i32(off, where)
        vsize = self.u16(vt, f"{where}: vtable")
        tsize = self.u16(vt + 2, f"{where}: vtable")
        if vsize < 4 or vsize % 2:
            raise FlatbufferError(f"{where}: vtable size {vsize} is malformed")
        self._check(vt, vsize, f"{where}: vtable")
        self._check(off, tsize, f"{where}: object")
        slots = self.schema[name]
        utype = None
        for i, kind in enumerate(slots):
            fo = self.u16(vt + 4 + 2 * i, where) if 4 + 2 * i < vsize else 0
            pos = off + fo
            if kind == "utype":  # the next slot is the union's value; remember its type code
                if fo and (fo < 4 or fo + 1 > tsize):
                    raise FlatbufferError(f"{where}: field {i} lies outside its object")
                utype = self.buf[pos] if fo else 0
                continue
            if not fo:
                if isinstance(kind, tuple) and kind[0] == "union" and utype:
                    raise FlatbufferError(f"{where}: union field {i} has type {utype} but no value")
                continue
            size = _SCALAR.get(kind, 4) if isinstance(kind, str) else 4
            if fo < 4 or fo + size > tsize:
                raise FlatbufferError(f"{where}: field {i} lies outside its object")
            self._check(pos, size, f"{where}: field {i}", size)
            self.value(pos, kind, utype, f"{name}.{i}", depth)

    def value(self, pos: int, kind: Any, utype: int | None, where: str, depth: int) -> None:
        if isinstance(kind, str):
            if kind in _SCALAR:
                return
            if kind == "str":
                self.string(self._deref(pos, where), where)
                return
            self.table(self._deref(pos, where), kind, depth + 1)
            return
        if kind[0] == "union":
            if utype not in kind[1]:
                raise FlatbufferError(f"{where}: union type {utype} is not one of {sorted(kind[1])}")
            self.table(self._deref(pos, where), kind[1][utype], depth + 1)
            return
        if kind[0] == "vec":
            self.vector(self._deref(pos, where), kind[1], where, depth)
            return
        raise AssertionError(f"bad schema entry {kind!r}")  # a bug in the schema tables, never in user data

    def vector(self, start: int, elem: Any, where: str, depth: int) -> None:
        n = self.u32(start, f"{where}: vector length")
        size = _SCALAR.get(elem, 4) if isinstance(elem, str) else 4
        self._check(start + 4, n * size, f"{where}: vector of {n}")
        if elem in _SCALAR:
            return
        for k in range(n):
            self.value(start + 4 + 4 * k, elem, None, f"{where}[{k}]", depth)

    def string(self, start: int, where: str) -> None:
        n = self.u32(start, f"{where}: string length")
        self._check(start + 4, n + 1, f"{where}: string of {n} bytes")
        if self.buf[start + 4 + n] != 0:
            raise FlatbufferError(f"{where}: string is not NUL-terminated")
        try:
            bytes(self.buf[start + 4:start + 4 + n]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FlatbufferError(f"{where}: string is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def read_scalar(buf: bytes | memoryview, table_off: int, slot: int, fmt: str, default: int = 0) -> int:
    """Read scalar field ``slot`` of the (already verified) table at ``table_off``."""
    vt = table_off - struct.unpack_from("<i", buf, table_off)[0]
    vsize = struct.unpack_from("<H", buf, vt)[0]
    if 4 + 2 * slot >= vsize:
        return default
    fo = struct.unpack_from("<H", buf, vt + 4 + 2 * slot)[0]
    return int(struct.unpack_from("<" + fmt, buf, table_off + fo)[0]) if fo else default


def field_target(buf: bytes | memoryview, table_off: int, slot: int) -> int | None:
    """Absolute position an offset field ``slot`` of a verified table points to, or None when absent."""
    vt = table_off - struct.unpack_from("<i", buf, table_off)[0]
    vsize = struct.unpack_from("<H", buf, vt)[0]
    if 4 + 2 * slot >= vsize:
        return None
    fo = struct.unpack_from("<H", buf, vt + 4 + 2 * slot)[0]
    if not fo:
        return None
    pos = table_off + fo
    return pos + struct.unpack_from("<I", buf, pos)[0]


def vector_items(buf: bytes | memoryview, start: int | None) -> list[int]:
    """Absolute positions the offsets in a verified vector of tables point to."""
    if start is None:
        return []
    n = struct.unpack_from("<I", buf, start)[0]
    out = []
    for k in range(n):
        pos = start + 4 + 4 * k
        out.append(pos + struct.unpack_from("<I", buf, pos)[0])
    return out
