"""Every manifest field wrong in type, range and shape — cases generated from the dataclasses' own fields and type
hints — and hostile JSON (deep nesting, huge numbers, NaN, duplicate keys, bad UTF-8). Each must be a ManifestError
(or UnsafePathError) that names the field; ``edgecart verify`` must exit 2 with a message, never a traceback.
Property-based: arbitrary JSON, arbitrary bytes and arbitrary edits of a real manifest never raise anything but an
EdgecartError."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from edgecart.runtime import EdgecartError, Manifest
from edgecart.runtime.errors import BundleError
from edgecart.runtime.manifest import (
    Artifact,
    FileEntry,
    Golden,
    ImagePreprocessing,
    Parity,
    SequencePreprocessing,
    Signature,
    TensorSpec,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: where each dataclass sits in the tiny bundle's manifest (a signed copy carries the signature)
LOCATIONS: dict[type, tuple[Any, ...]] = {
    Manifest: (), TensorSpec: ("inputs", 0), Artifact: ("artifacts", 1), Parity: ("artifacts", 1, "parity"),
    FileEntry: ("files", 0), Golden: ("golden",), ImagePreprocessing: ("preprocessing",),
    SequencePreprocessing: ("preprocessing",), Signature: ("signature",),
}
PATHS = ["", "../x", "/etc/passwd", "a/../../x", "models/./x", "a//b", "C:x", "a\\b", "x\x00y", "models/"]
FREE_TEXT = {"description", "created_at", "reference", "delegate", "layout"}
ENUMS = {"dtype", "format", "precision", "role", "task", "color", "layout", "resize", "padding", "algorithm", "kind",
         "schema_version"}
PATH_FIELDS = {"path"}


def _unwrap(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        inner = tuple(a for a in args if a is not type(None))
        return (inner[0] if len(inner) == 1 else inner), type(None) in args
    return hint, False


def _wrong_values(cls: type, name: str, hint: Any) -> dict[str, Any]:
    """Values that are wrong for this field: type, range and shape; each with a readable id."""
    hint, optional = _unwrap(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    cases: dict[str, Any] = {} if optional else {"null": None}
    if isinstance(hint, tuple) or dataclasses.is_dataclass(hint):  # a nested record, or a union of records
        cases.update({"string": "x", "list": [], "number": 1, "bool": True})
        if isinstance(hint, tuple):
            cases["unknown-kind"] = {"kind": "audio"}
        return cases
    if hint is str:
        cases.update({"int": 123, "bool": True, "list": ["x"], "object": {"a": "b"}, "float": 1.5})
        if name in PATH_FIELDS:
            cases.update({f"path:{p!r}": p for p in PATHS})
        elif name == "layout" and cls is TensorSpec:
            cases["rank-mismatch"] = "NC"
        elif name in ENUMS:
            cases.update({"unknown-name": "nope", "empty": ""})
        elif name == "sha256":
            cases.update({"short": "ab" * 10, "upper": "AB" * 32, "non-hex": "zz" * 32})
        elif name == "key_id":
            cases.update({"short": "ab", "upper": "AB" * 32})
        elif name == "value":
            cases.update({"short": "AAAA", "non-base64": "!" * 88})
        elif name not in FREE_TEXT:
            cases["empty"] = ""
    elif hint is int:
        cases.update({"string": "1", "bool": True, "float": 1.5, "float-whole": 2.0, "list": [1], "negative": -1,
                      "beyond-int64": 2**63})
        if name in ("max_len", "pad_index"):
            cases["beyond-int32"] = 2**31
    elif hint is float:
        cases.update({"string": "0.5", "bool": True, "list": [0.5], "object": {}})
        if name in ("max_abs_diff", "max_abs_tolerance"):
            cases["negative"] = -1.0
    elif origin is tuple:
        elem = args[0]
        cases.update({"string": "1,2", "number": 1, "object": {}, "nested": [[1]]})
        if elem is int:
            cases.update({"float-dim": [1.7], "bool-dim": [True], "string-dim": ["1"], "zero-dim": [0],
                          "negative-dim": [-1], "huge-dim": [2**40], "empty": []})
            if name == "size":
                cases.update({"one-value": [28], "three-values": [28, 28, 28], "float-pair": [28.0, 28]})
        elif elem is float:
            cases.update({"string-item": ["a"], "bool-item": [True], "null-item": [None], "wrong-length": [0.5] * 2})
        elif elem is str:
            cases.update({"int-item": [1], "traversal-item": ["../x"], "absolute-item": ["/x"]})
        else:  # records
            cases.update({"string-item": ["x"], "number-item": [1], "empty-list-item": [[]]})
    elif origin is dict:
        cases.update({"list": [1, 2], "string": "x", "number": 3, "bool": True})
        if args[1] is str:
            cases.update({"int-value": {"a": 1}, "null-value": {"a": None}, "list-value": {"a": ["b"]}})
    return cases


def _cases() -> list[Any]:
    out = []
    for cls in LOCATIONS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            for label, value in _wrong_values(cls, f.name, hints[f.name]).items():
                out.append(pytest.param(cls, f.name, value, id=f"{cls.__name__}.{f.name}:{label}"))
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and f.name != "kind":
                out.append(pytest.param(cls, f.name, KeyError, id=f"{cls.__name__}.{f.name}:missing"))
        out.append(pytest.param(cls, "run_this", "rm -rf /", id=f"{cls.__name__}:unknown-key"))
    return out


CASES = _cases()


@pytest.fixture(scope="module")
def base_docs(tiny_bundle, tmp_path_factory):
    """The tiny manifest as data: plain, with a sequence preprocessing, and signed."""
    from edgecart.runtime.signing import generate_keypair, sign_manifest

    m = Manifest.from_json((tiny_bundle / "manifest.json").read_bytes())
    priv, _ = generate_keypair(tmp_path_factory.mktemp("keys"))
    return {
        "plain": m.to_dict(),
        "sequence": m.replace(preprocessing=SequencePreprocessing(8),
                              inputs=(TensorSpec(m.inputs[0].name, "int64", (1, 8)),)).to_dict(),
        "signed": sign_manifest(m, priv).to_dict(),
    }


def _doc_for(cls: type, docs: dict[str, Any]) -> dict[str, Any]:
    key = {SequencePreprocessing: "sequence", Signature: "signed"}.get(cls, "plain")
    return copy.deepcopy(docs[key])


def _set(doc: dict[str, Any], where: tuple[Any, ...], name: str, value: Any) -> None:
    node = doc
    for k in where:
        node = node[k]
    if value is KeyError:
        del node[name]
    else:
        node[name] = value


def test_cases_cover_every_field():
    named = {(p.values[0], p.values[1]) for p in CASES}
    for cls in LOCATIONS:
        for f in dataclasses.fields(cls):
            assert (cls, f.name) in named, f"{cls.__name__}.{f.name} has no wrong-value case"
    assert len(CASES) > 200


@pytest.mark.parametrize("cls,name,value", CASES)
def test_wrong_field_is_a_typed_error_naming_it(base_docs, cls, name, value):
    doc = _doc_for(cls, base_docs)
    _set(doc, LOCATIONS[cls], name, value)
    with pytest.raises(BundleError) as exc:
        Manifest.from_json(json.dumps(doc))
    msg = str(exc.value)
    field_word = "path" if name in PATH_FIELDS else name
    assert field_word in msg or (name == "run_this" and "unknown keys" in msg), msg


# --- the issue's cases, through the library and the command line ----------------------------------------------------

ISSUE_CASES = {
    "bytes-true": lambda d: d["files"][0].__setitem__("bytes", True),
    "shape-1.7": lambda d: d["inputs"][0].__setitem__("shape", [1.7]),
    "name-123": lambda d: d["artifacts"][0].__setitem__("name", 123),
    "quantization-list": lambda d: d["artifacts"][1].__setitem__("quantization", [1, 2]),
}
RAW_CASES = {
    "5000-digit-integer": lambda text: text.replace('"samples": 4', '"samples": ' + "9" * 5000, 1),
    "deep-nesting-list": lambda text: "[" * 100000 + "]" * 100000,
    "deep-nesting-in-field": lambda text: text.replace('"quality": {}', '"quality": {"a": ' + "[" * 5000 + "]" * 5000
                                                       + "}", 1),
    "nan": lambda text: text.replace('"samples": 4', '"samples": NaN', 1),
    "infinity-overflow": lambda text: text.replace('"samples": 4', '"samples": 1e999', 1),
    "duplicate-key": lambda text: text.replace('"name": "tiny"', '"name": "tiny", "name": "evil"', 1),
    "invalid-utf8": lambda text: text.replace('"tiny"', '"ti\udcffny"', 1),
    "bom": lambda text: "\ufeff" + text,
    "empty": lambda text: "",
    "lone-surrogate": lambda text: text.replace('"tiny"', '"\\ud800"', 1),
}


def _write(bundle: Path, text: str) -> None:
    (bundle / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("case", ISSUE_CASES)
def test_issue_cases_exit_2_with_a_message(bundle_copy, capsys, case):
    from edgecart.cli import main

    doc = json.loads((bundle_copy / "manifest.json").read_text())
    ISSUE_CASES[case](doc)
    (bundle_copy / "manifest.json").write_text(json.dumps(doc))
    assert main(["verify", str(bundle_copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgecart: error:") and "Traceback" not in err


@pytest.mark.parametrize("case", RAW_CASES)
def test_hostile_json_exits_2_with_a_message(bundle_copy, capsys, case):
    from edgecart.cli import main

    text = (bundle_copy / "manifest.json").read_text()
    bad = RAW_CASES[case](text)
    assert bad != text
    _write(bundle_copy, bad)
    assert main(["verify", str(bundle_copy), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["error"]["type"] == "ManifestError" and out["error"]["message"]


def test_verify_command_never_prints_a_traceback(bundle_copy):
    """The whole command in a fresh process, on the 5000-digit case: exit 2, one line of error, no traceback."""
    _write(bundle_copy, RAW_CASES["5000-digit-integer"]((bundle_copy / "manifest.json").read_text()))
    exe = Path(sys.executable).parent / "edgecart"
    r = subprocess.run([str(exe), "verify", str(bundle_copy)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "5000 digits" in r.stderr, r.stderr


# --- property-based ---------------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _only_typed(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except EdgecartError:
        pass


@SETTINGS
@given(JSON)
def test_arbitrary_json_values_raise_only_typed_errors(value):
    _only_typed(Manifest.from_dict, value)
    _only_typed(Manifest.from_json, json.dumps(value))


@SETTINGS
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_raise_only_typed_errors(data):
    _only_typed(Manifest.from_json, data)


def _nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _nodes(v, (*path, i))
    return out


@SETTINGS
@given(data=st.data())
def test_arbitrary_edits_of_a_real_manifest_raise_only_typed_errors(base_docs, data):
    doc = copy.deepcopy(base_docs[data.draw(st.sampled_from(sorted(base_docs)))])
    for _ in range(data.draw(st.integers(1, 3))):
        nodes = _nodes(doc)[1:]
        where = data.draw(st.sampled_from(nodes))
        node = doc
        for k in where[:-1]:
            node = node[k]
        if data.draw(st.booleans()) and isinstance(node, dict):
            del node[where[-1]]
        else:
            node[where[-1]] = data.draw(JSON)
    _only_typed(Manifest.from_dict, doc)
